"""Two nbgrader preprocessors that ``nbgrader_config.py`` plugs into the pipeline.

* :class:`DropTensorFlowLogs` runs in ``autograde`` after the notebook executes.
  nbgrader gives 0 to a grade cell with *any* stderr output; TensorFlow and absl
  write start-up and kernel log lines to stderr at moments no student controls.
  This removes exactly those lines (and nothing else) before the grades are saved.
* :class:`HideTestTracebacks` runs in ``generate_feedback``. nbgrader's feedback
  quotes a failing grade cell's source in the traceback, hidden tests included.
  This drops the frames that belong to the grade cell itself and keeps the
  exception and its message (written for the student) and the frames of the
  student's own cells.

For hostile submissions (issue 7; the guide's *Grading a real class* section):

* :class:`RepairNotebookStructure` and :class:`ReportSuspiciousCode` run in autograde's
  sanitize step: instructor cells put back in place, tampering lines listed;
* :class:`GuardedExecute` replaces nbgrader's ``Execute``: kernels started by
  :class:`SandboxedKernelManager` (memory/CPU caps, no network, hidden solutions), a
  :class:`KernelGuard` around every test, dead or stuck kernels replaced;
* :class:`LimitOutputSize` cuts every output to a bounded size.

Each logs what it did on a line with ``RNNCOURSE-NOTE``, which
``python -m rnncourse.classgrade`` copies into the submission's status file.
"""

from __future__ import annotations

import os
import re

from nbgrader.preprocessors import NbGraderPreprocessor

_TF_LOG_LINE = re.compile(
    r"""^(?:
        WARNING:\ All\ log\ messages\ before\ absl::InitializeLog\(\)\ is\ called.*
      | [IWEF]\d{4}\ [\d:.]+\s+\d+\ [\w./-]+:\d+\]\ .*           # absl C++ log line
      | \d{4}-\d\d-\d\d\ [\d:.]+:\ [IWEF]\ (?:tensorflow|external|xla)/.*  # TF 2.x log line
      | To\ enable\ the\ following\ instructions:.*rebuild\ TensorFlow.*
      | (?:WARNING|INFO):absl:.*
    )$""",
    re.VERBOSE,
)
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def strip_tensorflow_log_lines(text: str) -> str:
    """Return ``text`` without the lines TensorFlow/absl log on their own."""
    kept = [line for line in text.splitlines(keepends=True) if not _TF_LOG_LINE.match(line.rstrip("\n"))]
    return "".join(kept)


def _is_grade_cell(cell) -> bool:
    return bool(cell.get("metadata", {}).get("nbgrader", {}).get("grade", False))


class DropTensorFlowLogs(NbGraderPreprocessor):
    """Remove TensorFlow/absl log lines from stderr outputs, so they cannot zero a grade."""

    def preprocess_cell(self, cell, resources, cell_index):
        if cell.cell_type != "code":
            return cell, resources
        outputs = []
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream" and output.get("name") == "stderr":
                output.text = strip_tensorflow_log_lines(output.text)
                if not output.text.strip():
                    continue
            outputs.append(output)
        cell.outputs = outputs
        return cell, resources


class HideTestTracebacks(NbGraderPreprocessor):
    """Cut the test code (the grade cell's own frames, the course's checks) out of tracebacks.

    What stays: the header, the frames of the student's own cells and of libraries
    their code called, and the final ``Error: message`` line.
    """

    note = "(the test's own code is not shown)"

    def _is_test_frame(self, frame: str, own_cell: str) -> bool:
        first_line = _ANSI.sub("", frame).lstrip().split("\n", 1)[0]
        return first_line.startswith(f"Cell {own_cell},") or (
            first_line.startswith("File ") and f"{_PACKAGE_DIR}" in first_line
        )

    def preprocess_cell(self, cell, resources, cell_index):
        if cell.cell_type != "code" or not _is_grade_cell(cell):
            return cell, resources
        own_cell = f"In[{cell.get('execution_count')}]"
        for output in cell.get("outputs", []):
            if output.get("output_type") != "error":
                continue
            frames = []
            for frame in output.get("traceback", []):
                if not self._is_test_frame(frame, own_cell):
                    frames.append(frame)
                elif not frames or frames[-1] != self.note:
                    frames.append(self.note)
            output.traceback = frames
        return cell, resources


# ---------------------------------------------------------------------------------------------
# Hostile submissions (issue 7). Everything below runs inside `nbgrader autograde`; each
# preprocessor logs what it did on a line starting with NOTE_MARKER, which
# `python -m rnncourse.classgrade` collects into the submission's status file.
# ---------------------------------------------------------------------------------------------

import ast  # noqa: E402
import builtins  # noqa: E402
import copy  # noqa: E402
import inspect  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402

from nbformat.notebooknode import NotebookNode, from_dict  # noqa: E402
from traitlets import Bool, Integer, List, Unicode  # noqa: E402

NOTE_MARKER = "RNNCOURSE-NOTE"
REPO = os.path.dirname(_PACKAGE_DIR)


def note(log, kind: str, message: str, **details) -> None:
    """Log one finding where `classgrade` (and an instructor reading the log) finds it."""
    log.warning("%s %s", NOTE_MARKER, json.dumps({"kind": kind, "message": message, **details}))


def _nbgrader_meta(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {}) or {}


def _text(source) -> str:
    return "".join(source) if isinstance(source, list) else source


def _is_locked(cell) -> bool:
    """An instructor cell: known to nbgrader (a grade_id) and locked or a test, not an answer."""
    meta = _nbgrader_meta(cell)
    return bool(meta.get("grade_id")) and bool(meta.get("locked") or meta.get("grade")) \
        and not meta.get("solution")


class RepairNotebookStructure(NbGraderPreprocessor):
    """Put the instructor's cells back where the release has them (sanitize step).

    Runs before nbgrader's ``DeduplicateIds`` and ``OverwriteCells``. Uses the release
    notebook (``exercises/<id>/<id>.ipynb``) as the reference order:

    * a locked cell (test, setup, instructions) that was deleted, or lost its nbgrader
      metadata, is put back (``OverwriteCells`` then restores its source from the
      gradebook); a deleted *answer* cell is not: the student's code may live elsewhere;
    * extra copies of a locked cell are dropped (the first copy is kept);
    * nbgrader cells are put back in the release's order; a cell the student added stays
      right after the nbgrader cell it followed;
    * a cell whose type was changed (test turned into markdown) keeps its grade_id, and
      ``OverwriteCells`` turns it back into code.

    So every test in the release runs, in order, on whatever the student wrote.
    """

    def _release(self, resources) -> dict | None:
        from nbgrader.coursedir import CourseDirectory

        info = resources.get("nbgrader", {})
        coursedir = CourseDirectory(config=self.config)
        for folder in (coursedir.release_directory, coursedir.source_directory):
            path = os.path.join(coursedir.root, folder, info.get("assignment", ""),
                                f"{info.get('notebook', '')}.ipynb")
            if os.path.isfile(path):
                with open(path, encoding="utf-8") as handle:
                    release = json.load(handle)
                if folder == coursedir.source_directory:  # never insert solutions
                    release["cells"] = [c for c in release["cells"] if not _nbgrader_meta(c).get("solution")]
                return release
        return None

    def preprocess(self, nb, resources):
        release = self._release(resources)
        if release is None:
            note(self.log, "structure", "no release notebook to compare the structure with")
            return nb, resources
        order = [_nbgrader_meta(c).get("grade_id") for c in release["cells"]]
        order = [g for g in order if g]
        reference = {_nbgrader_meta(c)["grade_id"]: c for c in release["cells"] if _nbgrader_meta(c).get("grade_id")}
        locked_ids = {g for g, c in reference.items() if _is_locked(c)}

        # group the student's cells: each nbgrader cell with the unknown cells that follow it
        head: list = []          # student cells before any known nbgrader cell
        groups: dict[str, list] = {}
        attached = head
        dropped, seen_order = [], []
        for cell in nb.cells:
            grade_id = _nbgrader_meta(cell).get("grade_id")
            if grade_id in reference:
                if grade_id in groups:
                    if grade_id in locked_ids:
                        dropped.append(grade_id)
                        continue  # a duplicate instructor cell: not the student's work
                    attached.append(cell)  # DeduplicateIds strips its metadata
                    continue
                groups[grade_id] = [cell]
                attached = groups[grade_id]
                seen_order.append(grade_id)
            else:
                attached.append(cell)

        restored = []
        cells = list(head)
        for grade_id in order:
            if grade_id in groups:
                cells.extend(groups[grade_id])
            elif grade_id in locked_ids:
                cell = from_dict(copy.deepcopy(reference[grade_id]))
                cell.source = _text(cell.source)
                if cell.cell_type == "code":
                    cell.outputs, cell.execution_count = [], None
                cells.append(cell)
                restored.append(grade_id)
        for grade_id in groups:
            if grade_id not in order:  # cannot happen (grade_id in reference), kept for safety
                cells.extend(groups[grade_id])

        retyped = [g for g in groups if groups[g][0].cell_type != reference[g]["cell_type"]]
        edited = [g for g in groups if g in locked_ids and g not in retyped
                  and _text(groups[g][0].source) != _text(reference[g]["source"])]
        if edited:
            note(self.log, "structure", f"instructor cells were edited; the originals are used: "
                 f"{', '.join(edited)}", cells=edited)
        moved = [g for g in seen_order if g in order]
        reordered = moved != sorted(moved, key=order.index)
        if restored:
            note(self.log, "structure", f"instructor cells missing from the submission were put back: "
                 f"{', '.join(restored)}", cells=restored)
        if dropped:
            note(self.log, "structure", f"duplicated instructor cells were removed: {', '.join(dropped)}",
                 cells=dropped)
        if retyped:
            note(self.log, "structure", f"cells whose type was changed were turned back: {', '.join(retyped)}",
                 cells=retyped)
        if reordered:
            note(self.log, "structure", "instructor cells were out of order and were put back in the "
                 "release's order")
        if not any(_nbgrader_meta(c).get("solution") for c in nb.cells):
            note(self.log, "structure", "the submission has none of the answer cells (empty or a "
                 "different notebook): graded as given")
        nb.cells = cells
        return nb, resources


# --- a static look at the student's own code --------------------------------------------------

_TAMPER_NAMES = {"get_ipython", "__builtins__", "builtins", "setattr", "delattr", "exec", "eval",
                 "compile", "__import__", "globals", "ctypes", "gc", "importlib", "inspect"}
_TAMPER_ATTRS = {"settrace", "setprofile", "modules", "__code__", "__defaults__", "__kwdefaults__",
                 "__globals__", "__dict__", "excepthook", "displayhook", "f_globals", "f_locals"}
_BUILTIN_NAMES = set(dir(builtins)) - {"__name__", "__doc__", "_"}


def suspicious_code(source: str) -> list[str]:
    """What in a student's cell could tamper with the tests (for a human to look at).

    Not a verdict: the runtime guard (GuardedExecute) decides the score; this tells the
    instructor where to look. Lines starting with % or ! (IPython magics) are skipped.
    """
    text = "\n".join(line for line in source.splitlines() if not line.lstrip().startswith(("%", "!")))
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return []
    found = []
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Delete)):
            targets = node.targets if isinstance(node, (ast.Assign, ast.Delete)) else [node.target]
        for target in targets:
            for sub in (target.elts if isinstance(target, (ast.Tuple, ast.List)) else [target]):
                if isinstance(sub, ast.Attribute) and isinstance(sub.value, (ast.Name, ast.Attribute)):
                    found.append(f"line {node.lineno}: assigns to an attribute of another object "
                                 f"({ast.unparse(sub)})")
        if isinstance(node, ast.Name) and node.id in _TAMPER_NAMES:
            found.append(f"line {node.lineno}: uses {node.id}")
        elif isinstance(node, ast.Attribute) and node.attr in _TAMPER_ATTRS:
            found.append(f"line {node.lineno}: uses .{node.attr}")
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] + ([node.module] if getattr(node, "module", None) else [])
            if any(n.split(".")[0] in {"builtins", "ctypes", "gc", "importlib", "inspect", "threading",
                                         "multiprocessing", "socket", "subprocess"} for n in names):
                found.append(f"line {node.lineno}: imports {', '.join(names)}")
    for node in tree.body:  # top-level names that shadow builtins the tests may use
        names = []
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names = [node.name]
        elif isinstance(node, ast.Assign):
            names = [t.id for t in node.targets if isinstance(t, ast.Name)]
        for name in names:
            if name in _BUILTIN_NAMES:
                found.append(f"line {node.lineno}: redefines the builtin {name}")
    return sorted(set(found), key=lambda s: int(s.split(":")[0].split()[1]))


class ReportSuspiciousCode(NbGraderPreprocessor):
    """Log the student's code that could tamper with the tests (sanitize step; no score change)."""

    def preprocess_cell(self, cell, resources, cell_index):
        if cell.cell_type == "code" and not _is_locked(cell):
            findings = suspicious_code(cell.source)
            if findings:
                name = _nbgrader_meta(cell).get("grade_id") or f"cell {cell_index + 1}"
                note(self.log, "suspicious", f"{name}: " + "; ".join(findings[:8]), cell=name)
        return cell, resources


# --- bounded output -------------------------------------------------------------------------

class LimitOutputSize(NbGraderPreprocessor):
    """Cut every output to ``max_chars`` characters (nbgrader's LimitOutput counts lines only,
    so one 10 MB line stays 10 MB in the graded notebook and the feedback page)."""

    max_chars = Integer(20000, help="Characters kept per output").tag(config=True)

    def _cut(self, text: str) -> str:
        if len(text) <= self.max_chars:
            return text
        return text[: self.max_chars] + f"\n... [output cut: {len(text) - self.max_chars} more characters]\n"

    def preprocess_cell(self, cell, resources, cell_index):
        if cell.cell_type != "code":
            return cell, resources
        cut = False
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream":
                text = output.text if isinstance(output.text, str) else "".join(output.text)
                output.text, cut = self._cut(text), cut or len(text) > self.max_chars
            elif output.get("output_type") in ("execute_result", "display_data"):
                for mime, value in list(output.get("data", {}).items()):
                    value = value if isinstance(value, str) else "".join(value)
                    if len(value) > self.max_chars:
                        output.data[mime] = self._cut(value) if mime.startswith("text/") else ""
                        cut = True
            elif output.get("output_type") == "error" and len(output.get("evalue", "")) > self.max_chars:
                output.evalue, cut = self._cut(output.evalue), True
        if cut:
            name = _nbgrader_meta(cell).get("grade_id") or f"cell {cell_index + 1}"
            note(self.log, "output", f"{name}: output longer than {self.max_chars} characters was cut",
                 cell=name)
        return cell, resources


# --- the guard that runs inside the student's kernel -----------------------------------------

class KernelGuard:
    """Keeps what the tests rely on as the instructor's cells left it (runs in the kernel).

    ``GuardedExecute`` sends this class's source into the kernel before the first cell and
    calls it between cells through ``user_expressions`` of an empty execute request, which
    IPython evaluates without the student's input transformers or cell hooks.

    * ``setup()`` (before any student code): snapshots the modules the checks use (NumPy,
      ``numpy.testing``, ``math``, ``builtins``, Keras's layers and ops, ``rnncourse``),
      the code and defaults of their Python functions, the recurrent layer classes, the
      small dicts/lists of ``rnncourse`` (tolerances), and IPython's hooks;
    * ``locked_start()``/``locked_end()`` around an instructor cell: remember the names it
      binds (``np``, ``check_array``, ``FLOAT64_TOL``, a helper a later test uses);
    * ``before_test()``: undoes any change to the above, hides top-level names that
      shadow builtins for the duration of the test, and says what it found;
    * ``after_test()``: says whether anything changed *while the test ran* (a student
      function that patches ``np.allclose`` when called) and puts the hidden names back.

    Everything it finds is returned as a JSON string. It is best effort: code in the same
    process can always find and defeat it; `ReportSuspiciousCode` flags such code.
    """

    MODULES = ("builtins", "math", "numpy", "numpy.testing", "numpy.linalg", "numpy.random",
               "rnncourse", "rnncourse.grading", "keras", "keras.layers", "keras.ops", "keras.random",
               "tensorflow")

    def __init__(self):
        import importlib
        import sys

        self.sys = sys
        self.shell = get_ipython()  # noqa: F821 (defined in the kernel)
        self.modules, self.functions, self.classes, self.data = {}, [], [], []
        self.findings = []
        for name in self.MODULES:
            try:
                module = importlib.import_module(name)
            except Exception:  # noqa: BLE001 (a missing optional module is simply not guarded)
                continue
            self.modules[name] = (module, dict(vars(module)))
        seen = set()
        for name, (module, attrs) in self.modules.items():
            for attr, value in attrs.items():
                if type(value).__name__ == "function" and id(value) not in seen:
                    seen.add(id(value))
                    self.functions.append((f"{name}.{attr}", value, value.__code__, value.__defaults__,
                                           value.__kwdefaults__))
                if name.startswith("rnncourse") and isinstance(value, (dict, list)) and len(value) < 100:
                    self.data.append((f"{name}.{attr}", value, copy_of(value)))
        layers = self.modules.get("keras.layers", (None, {}))[1]
        for attr, value in layers.items():
            if isinstance(value, type) and (any(s in attr for s in ("RNN", "LSTM", "GRU")) or attr == "Layer"):
                for klass in value.__mro__[:-1]:
                    if klass not in [c for c, _ in self.classes]:
                        self.classes.append((klass, dict(vars(klass))))
        shell = self.shell
        self.shell_lists = {k: list(getattr(shell, k)) for k in
                            ("input_transformers_cleanup", "input_transformers_post", "ast_transformers")}
        self.events = {k: list(v) for k, v in shell.events.callbacks.items()}
        self.shell_dict = set(vars(shell))
        for klass in type(shell).__mro__[:-1]:
            self.classes.append((klass, dict(vars(klass))))
        self.hooks = {k: getattr(sys, k) for k in ("stdout", "stderr", "excepthook", "displayhook")}
        self.initial_ns = dict(shell.user_ns)
        self.locked = {}
        self.hidden = {}
        self._before = None

    # -- helpers
    def _modified(self, fix: bool, namespace: bool = True) -> list[str]:
        import types

        sys, shell, changes = self.sys, self.shell, []
        for name, (module, attrs) in self.modules.items():
            current = vars(module)
            for attr, value in attrs.items():
                now = current.get(attr, _MISSING)
                if now is value:
                    continue
                if isinstance(value, types.ModuleType) and isinstance(now, types.ModuleType):
                    attrs[attr] = now  # a lazily loaded submodule replacing its loader
                    continue
                changes.append(f"{name}.{attr}")
                if fix:
                    setattr(module, attr, value)
        for label, function, code, defaults, kwdefaults in self.functions:
            if (function.__code__ is not code or function.__defaults__ is not defaults
                    or function.__kwdefaults__ is not kwdefaults):
                changes.append(f"{label} (its code or defaults)")
                if fix:
                    function.__code__, function.__defaults__, function.__kwdefaults__ = code, defaults, kwdefaults
        for label, value, saved in self.data:
            if value != saved:
                changes.append(f"{label} (its contents)")
                if fix:
                    value.clear()
                    value.update(copy_of(saved)) if isinstance(value, dict) else value.extend(copy_of(saved))
        for klass, attrs in self.classes:
            current = dict(vars(klass))
            for attr, value in attrs.items():
                if current.get(attr, _MISSING) is not value:
                    changes.append(f"{klass.__module__}.{klass.__qualname__}.{attr}")
                    if fix:
                        try:
                            setattr(klass, attr, value)
                        except (AttributeError, TypeError):
                            pass
            for attr in set(current) - set(attrs):
                if callable(current[attr]) or isinstance(current[attr], (property, staticmethod, classmethod)):
                    changes.append(f"{klass.__module__}.{klass.__qualname__}.{attr} (added)")
                    if fix:
                        try:
                            delattr(klass, attr)
                        except (AttributeError, TypeError):
                            pass
        for key, saved in self.shell_lists.items():
            if list(getattr(shell, key)) != saved:
                changes.append(f"IPython {key}")
                if fix:
                    getattr(shell, key)[:] = saved
        for key in set(self.events) | set(shell.events.callbacks):
            if list(shell.events.callbacks.get(key, [])) != self.events.get(key, []):
                changes.append(f"IPython event callbacks ({key})")
                if fix:
                    shell.events.callbacks[key] = list(self.events.get(key, []))
        for key in set(vars(shell)) - self.shell_dict:
            if callable(vars(shell)[key]):
                changes.append(f"IPython shell.{key}")
                if fix:
                    delattr(shell, key)
        for key, value in self.hooks.items():
            if getattr(sys, key) is not value:
                changes.append(f"sys.{key}")
                if fix:
                    setattr(sys, key, value)
        if sys.gettrace() is not None or sys.getprofile() is not None:
            changes.append("sys.settrace/sys.setprofile")
            if fix:
                sys.settrace(None)
                sys.setprofile(None)
        ns = shell.user_ns
        if not namespace:  # a test cell may rebind names (its own loop variables)
            return changes
        for name in ("__builtins__", "__name__", "get_ipython"):
            if name in self.initial_ns and ns.get(name, _MISSING) is not self.initial_ns[name]:
                changes.append(f"the notebook's {name}")
                if fix:
                    ns[name] = self.initial_ns[name]
        for name, value in self.locked.items():
            if ns.get(name, _MISSING) is not value:
                changes.append(f"`{name}` (set by an instructor cell)")
                if fix:
                    ns[name] = value
        return changes

    # -- called by GuardedExecute
    def locked_start(self):
        self._before = dict(self.shell.user_ns)
        return "[]"

    def locked_end(self):
        before, ns = self._before or {}, self.shell.user_ns
        for name, value in ns.items():
            if not name.startswith("_") and before.get(name, _MISSING) is not value:
                self.locked[name] = value
        self._before = None
        return "[]"

    def before_test(self):
        import json

        changes = self._modified(fix=True)
        ns = self.shell.user_ns
        import builtins as real_builtins

        for name in list(ns):
            if (name in vars(real_builtins) and not name.startswith("_") and name not in self.locked
                    and ns[name] is not vars(real_builtins)[name]
                    and ns[name] is not self.initial_ns.get(name, _MISSING)):
                self.hidden[name] = ns.pop(name)
        if self.hidden:
            changes.append("top-level names that shadow builtins (hidden while the test runs): "
                           + ", ".join(sorted(self.hidden)))
        return json.dumps(changes)

    def after_test(self):
        import json

        changes = self._modified(fix=True, namespace=False)
        self.shell.user_ns.update(self.hidden)
        self.hidden = {}
        return json.dumps(changes)


class _Missing:
    def __repr__(self):
        return "<missing>"


_MISSING = _Missing()


def copy_of(value):
    import copy as _copy

    return _copy.deepcopy(value)


def kernel_guard_source() -> str:
    """The code that defines the guard in a kernel and registers it in ``sys.modules``."""
    parts = [inspect.getsource(_Missing), "_MISSING = _Missing()", inspect.getsource(copy_of),
             inspect.getsource(KernelGuard),
             "import sys as _sys, types as _types\n"
             "_module = _types.ModuleType('_rnncourse_guard')\n"
             "_module.guard = KernelGuard()\n"
             "_sys.modules['_rnncourse_guard'] = _module\n"]
    return "\n\n".join(parts)


# --- kernels with limits ---------------------------------------------------------------------

def _sandbox_main(argv):
    """Inside the kernel's new namespaces: make the course read-only, hide paths, set
    resource limits, drop every capability, then become the kernel (run by ``python -c``
    in front of the kernel's command, so it must only use the standard library)."""
    import json as _json
    import os as _os
    import resource as _resource
    import subprocess as _subprocess

    def mount(*args):
        _subprocess.run(["mount", *args], check=True)

    options, command = _json.loads(argv[0]), argv[1:]
    if options.get("hide") is not None:
        cwd = _os.open(".", _os.O_RDONLY | _os.O_DIRECTORY)
        private = _os.open(options["private"], _os.O_RDONLY | _os.O_DIRECTORY)
        mount("--make-rprivate", "/")
        for path in options.get("read_only", []):
            mount("--bind", path, path)
            mount("-o", "remount,bind,ro", path)
        for path in options["hide"]:
            if _os.path.isdir(path):
                mount("-t", "tmpfs", "-o", "size=4k,mode=0711", "tmpfs", path)
            elif _os.path.isfile(path):
                mount("--bind", "/dev/null", path)
        # other kernels' folders (connection files, sockets) are hidden too; this one comes back
        parent, name = _os.path.split(options["private"])
        mount("-t", "tmpfs", "-o", "size=4k,mode=0711", "tmpfs", parent)
        _os.mkdir(options["private"], 0o700)
        mount("--no-canonicalize", "--bind", f"/proc/{_os.getpid()}/fd/{private}", options["private"])
        _os.fchdir(cwd)
    limits = {"memory": _resource.RLIMIT_AS, "cpu": _resource.RLIMIT_CPU, "file_size": _resource.RLIMIT_FSIZE}
    for key, which in limits.items():
        if options.get(key):
            value = int(options[key])
            hard = value + 5 if key == "cpu" else value  # SIGXCPU first, SIGKILL 5 s later
            _resource.setrlimit(which, (value, hard))
    _resource.setrlimit(_resource.RLIMIT_CORE, (0, 0))
    if options.get("drop_capabilities"):  # root without capabilities cannot undo the mounts
        command = ["setpriv", "--no-new-privs", "--bounding-set=-all", "--inh-caps=-all", "--", *command]
    _os.execvp(command[0], command)


_UNSHARE_OK: dict[tuple, bool] = {}


def _unshare_works(flags: tuple[str, ...]) -> bool:
    """Whether ``unshare FLAGS true`` works here (root, or user namespaces allowed)."""
    if flags not in _UNSHARE_OK:
        tool = shutil.which("unshare")
        try:
            _UNSHARE_OK[flags] = bool(tool) and subprocess.run(
                [tool, *flags, "true"], capture_output=True, timeout=10).returncode == 0
        except (OSError, subprocess.SubprocessError):
            _UNSHARE_OK[flags] = False
    return _UNSHARE_OK[flags]


def isolation_available() -> dict[str, bool]:
    """What ``SandboxedKernelManager`` can use on this machine."""
    root = hasattr(os, "geteuid") and os.geteuid() == 0
    return {
        "rlimits": sys.platform.startswith("linux"),
        "no_network": _unshare_works(("--net",)),
        "hidden_paths": root and _unshare_works(("--net", "--mount", "--pid", "--fork", "--kill-child",
                                                 "--mount-proc")),
        "drop_capabilities": root and shutil.which("setpriv") is not None,
    }


try:
    from jupyter_client.manager import AsyncKernelManager as _AsyncKernelManager
except ImportError:  # pragma: no cover
    _AsyncKernelManager = object


class SandboxedKernelManager(_AsyncKernelManager):
    """A kernel with a memory cap, a CPU-time cap, no network and a restricted view of files.

    What is used depends on what the machine allows (see :func:`isolation_available`):

    * always on Linux: ``RLIMIT_AS`` (memory), ``RLIMIT_CPU`` (CPU seconds, the kernel is
      killed past it), ``RLIMIT_FSIZE`` (largest file it may write), no core dumps;
    * with ``unshare --net`` (root, or unprivileged user namespaces): a network namespace
      with no interface but a downed loopback; the kernel talks to nbgrader over Unix
      sockets (ZeroMQ ``ipc`` transport) in a private folder instead of TCP;
    * as root: also a mount and PID namespace in which ``hidden_paths`` (the solutions,
      the gradebook, every submission and feedback folder) are covered by an empty tmpfs
      and the repository, the course and the Python environment are read-only; ``/proc``
      shows only the kernel's own processes and other kernels' folders are hidden; the
      kernel then runs without any capability (``setpriv --bounding-set=-all``), so it
      cannot undo the mounts. It still runs as uid 0 (the interpreter here lives under
      ``/root``, which another user cannot reach), so root-owned files that are not hidden
      stay readable.
    """

    memory_limit = Integer(4 * 1024 ** 3, help="Bytes of address space (RLIMIT_AS); 0: none").tag(config=True)
    cpu_limit = Integer(600, help="CPU seconds for the whole notebook (RLIMIT_CPU); 0: none").tag(config=True)
    file_size_limit = Integer(100 * 1024 ** 2, help="Largest file the kernel may write").tag(config=True)
    isolate_network = Bool(True, help="Run the kernel without network when the OS allows").tag(config=True)
    hidden_paths = List(Unicode(), help="Paths the kernel must not see (root only)").tag(config=True)
    read_only_paths = List(Unicode(), help="Folders the kernel may read but not write (root only); "
                           "the repository and the Python environment always are").tag(config=True)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._available = isolation_available()
        self._private = None
        if self.isolate_network and self._available["no_network"]:
            parent = os.path.join(tempfile.gettempdir(), f"rnncourse-kernels-{os.getuid()}")
            os.makedirs(parent, mode=0o711, exist_ok=True)
            os.chmod(parent, 0o711)  # others may enter a kernel's folder, not list them
            self._private = tempfile.mkdtemp(prefix="k-", dir=parent)
            self.transport = "ipc"
            self.ip = os.path.join(self._private, "kernel")
            self.connection_file = os.path.join(self._private, "kernel.json")

    def format_kernel_cmd(self, extra_arguments=None):
        command = super().format_kernel_cmd(extra_arguments)
        if not sys.platform.startswith("linux"):
            return command
        options = {"memory": self.memory_limit, "cpu": self.cpu_limit, "file_size": self.file_size_limit}
        prefix = []
        if self._private:
            if self._available["hidden_paths"] and shutil.which("setpriv"):
                prefix = [shutil.which("unshare"), "--net", "--mount", "--pid", "--fork", "--kill-child",
                          "--mount-proc"]
                hide = [p for p in [*self.hidden_paths, os.path.join(REPO, "solutions")] if os.path.exists(p)]
                # deepest first: a folder hidden after the paths inside it cannot uncover them
                hide = sorted(set(hide), key=lambda p: (-p.rstrip(os.sep).count(os.sep), p))
                options.update(hide=hide, private=self._private, drop_capabilities=True,
                               read_only=sorted({p for p in (REPO, sys.prefix, *self.read_only_paths)
                                                 if os.path.isdir(p)}))
            else:
                prefix = [shutil.which("unshare"), "--net"]
        wrapper = inspect.getsource(_sandbox_main) + "\nimport sys\n_sandbox_main(sys.argv[1:])\n"
        return [*prefix, sys.executable, "-c", wrapper, json.dumps(options), *command]

    async def _async_pre_start_kernel(self, **kwargs):
        command, kwargs = await super()._async_pre_start_kernel(**kwargs)
        if self._private:
            env = dict(kwargs.get("env") or os.environ)
            env.update(HOME=self._private, MPLCONFIGDIR=os.path.join(self._private, "mpl"),
                       IPYTHONDIR=os.path.join(self._private, "ipython"),
                       JUPYTER_RUNTIME_DIR=self._private)
            kwargs["env"] = env
        return command, kwargs

    async def _async_cleanup_resources(self, restart=False):
        await super()._async_cleanup_resources(restart=restart)
        if self._private and not restart:
            shutil.rmtree(self._private, ignore_errors=True)

    cleanup_resources = _async_cleanup_resources  # AsyncKernelManager binds the base one by name


# --- execution that survives hostile code ----------------------------------------------------

from nbclient.exceptions import CellTimeoutError, DeadKernelError  # noqa: E402
from nbgrader.preprocessors import Execute  # noqa: E402


def _error_output(ename: str, message: str) -> NotebookNode:
    return from_dict({"output_type": "error", "ename": ename, "evalue": message,
                      "traceback": [f"\x1b[0;31m{ename}\x1b[0m: {message}"]})


class GuardedExecute(Execute):
    """nbgrader's ``Execute`` for hostile notebooks (replaces it in ``autograde``).

    * kernels are started by :class:`SandboxedKernelManager` (memory, CPU, network, files);
    * :class:`KernelGuard` restores what the tests rely on before every test cell and
      zeroes a test during which the student's code changed it;
    * a kernel that dies (``os._exit``, a crash, the CPU cap) or stops answering after a
      timeout is replaced: the cell that killed it gets an error (0 points if it is a test),
      the cells before it are run again in the new kernel (outputs kept from the first run)
      and grading goes on, so the tests that do not depend on the dead cell keep their points.
    """

    guard = Bool(True, help="Run KernelGuard around test cells").tag(config=True)
    max_kernel_restarts = Integer(3, help="Kernels replaced per notebook before giving up").tag(config=True)
    responsive_timeout = Integer(10, help="Seconds a kernel has to answer after a timeout").tag(config=True)

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("kernel_manager_class", SandboxedKernelManager)
        super().__init__(*args, **kwargs)

    # -- the guard
    def _call(self, expression: str, timeout: int | None = None):
        """Evaluate ``expression`` in the kernel without running any cell code; None if it failed."""
        try:
            msg_id = self.kc.execute("", silent=True, store_history=False,
                                     user_expressions={"value": expression})
            saved, self.timeout = self.timeout, timeout or self.timeout
            try:
                reply = self.wait_for_reply(msg_id)
            finally:
                self.timeout = saved
        except DeadKernelError:
            raise
        except Exception as error:  # noqa: BLE001
            self.log.debug("guard call failed: %s", error)
            return None
        if not reply:
            return None
        value = reply["content"].get("user_expressions", {}).get("value", {})
        if value.get("status") != "ok":
            self.log.debug("guard call error: %s", value)
            return None
        try:
            return json.loads(ast.literal_eval(value["data"]["text/plain"]))
        except (ValueError, SyntaxError, KeyError, TypeError):
            return None

    def _guard(self, method: str):
        return self._call(f"__import__('sys').modules['_rnncourse_guard'].guard.{method}()")

    def _start_guard(self) -> None:
        if not self.guard:
            return
        source = kernel_guard_source()
        setup = (f"exec(compile({source!r}, '<rnncourse-guard>', 'exec'), {{'__name__': '_rnncourse_guard_setup',"
                 f" 'get_ipython': get_ipython}}) or '[]'")
        if self._call(setup, timeout=max(60, self.timeout or 60)) is None:
            note(self.log, "guard", "the test guard could not be set up in the kernel")
        self._guard_ready = True

    # -- kernels
    def _new_kernel(self) -> None:
        try:
            self._cleanup_kernel()
        except Exception as error:  # noqa: BLE001
            self.log.debug("cleanup after a dead kernel: %s", error)
        self.km = self.create_kernel_manager()
        self.start_new_kernel()
        self.start_new_kernel_client()
        self.wait_for_reply(self.kc.kernel_info())
        self._guard_ready = False
        self._start_guard()

    def _replace_kernel(self, upto: int, why: str) -> bool:
        """A new kernel with cells ``[0, upto)`` run again; False when giving up."""
        self._restarts += 1
        if self._restarts > self.max_kernel_restarts:
            note(self.log, "kernel", f"{why}; the kernel was replaced {self.max_kernel_restarts} times "
                 "already: the remaining cells are not run")
            self._gave_up = True
            return False
        note(self.log, "kernel", f"{why}; a new kernel re-runs the cells before it and grading goes on")
        self._new_kernel()
        for index in range(upto):
            cell = self.nb.cells[index]
            if cell.cell_type != "code" or index in self._bad_cells:
                continue
            try:
                self._run(copy.deepcopy(cell), index)
            except DeadKernelError:
                note(self.log, "kernel", "the kernel died again while re-running the earlier cells")
                self._gave_up = True
                return False
        return True

    def _responsive(self) -> bool:
        try:
            saved, self.timeout = self.timeout, self.responsive_timeout
            try:
                return self.wait_for_reply(self.kc.kernel_info()) is not None
            finally:
                self.timeout = saved
        except DeadKernelError:
            return False

    # -- cells
    def _run(self, cell, index):
        """Run one cell with the guard around it; return the guard's findings during a test."""
        is_grade, locked = bool(_nbgrader_meta(cell).get("grade")), _is_locked(cell)
        before = during = None
        if self.guard and locked:
            self._guard("locked_start")
        if self.guard and is_grade:
            before = self._guard("before_test")
        super().preprocess_cell(cell, self.resources, index)
        if self.guard and is_grade:
            during = self._guard("after_test")
        if self.guard and locked:
            self._guard("locked_end")
        return before, during

    def preprocess(self, nb, resources=None, km=None):
        self._restarts, self._gave_up, self._bad_cells, self._guard_ready = 0, False, set(), False
        return super().preprocess(nb, resources, km)

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type != "code" or not cell.source.strip():
            return cell, resources
        name = _nbgrader_meta(cell).get("grade_id") or f"cell {index + 1}"
        if self._gave_up:
            cell.outputs = [_error_output("NotRun", "not run: the kernel died too many times in this notebook")]
            return cell, resources
        if not self._guard_ready:
            self._start_guard()
        try:
            before, during = self._run(cell, index)
        except DeadKernelError:
            self._bad_cells.add(index)
            cell.outputs = list(cell.get("outputs", [])) + [_error_output(
                "DeadKernelError", "the kernel died while running this cell (it exited, crashed, ran out "
                "of memory or used up its CPU time)")]
            self._replace_kernel(index, f"{name}: the kernel died")
            return cell, self.resources
        except CellTimeoutError:  # no reply and no output even after the interrupt
            self._bad_cells.add(index)
            cell.outputs = list(cell.get("outputs", [])) + [_error_output(
                "CellTimeoutError", f"stopped after {self.timeout} s; the kernel did not stop when "
                "interrupted")]
            note(self.log, "timeout", f"{name}: stopped after {self.timeout} s", cell=name)
            self._replace_kernel(index, f"{name}: the kernel did not stop after the time limit")
            return cell, self.resources
        if before:
            note(self.log, "guard", f"{name}: restored before the test: {'; '.join(before[:6])}", cell=name)
        if _nbgrader_meta(cell).get("grade") and self.guard:
            if during is None:
                cell.outputs.append(_error_output(
                    "GradingEnvironmentError", "the test's result cannot be trusted: the grader could not "
                    "check the kernel after the test (was the kernel tampered with?)"))
                note(self.log, "guard", f"{name}: the guard did not answer after the test: scored 0", cell=name)
            elif during:
                cell.outputs.append(_error_output(
                    "GradingEnvironmentError", "your code changed what the tests use while the test ran ("
                    + ", ".join(during[:4]) + "): the test's result cannot be trusted"))
                note(self.log, "guard", f"{name}: changed while the test ran: {'; '.join(during[:6])}: scored 0",
                     cell=name)
        if any(o.get("ename") == "CellTimeoutError" for o in cell.outputs if o.get("output_type") == "error"):
            self._bad_cells.add(index)
            note(self.log, "timeout", f"{name}: stopped after {self.timeout} s", cell=name)
            if not self._responsive():
                self._replace_kernel(index, f"{name}: the kernel did not stop after the time limit")
        return cell, self.resources
