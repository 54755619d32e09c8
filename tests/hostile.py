"""Hostile submissions of ``rnn_forward`` (issue 7), and the score each one must get.

Each builder takes the student release and the instructor source (both parsed notebooks)
and returns what the student hands in: a notebook (dict), raw bytes (a file that is not
JSON), or ``None`` (no notebook at all). ``HOSTILE[name] = (builder, expected)``, where
``expected`` maps every grade cell to the points it must score; ``REASON[name]`` is a
fragment the status file written by ``python -m rnncourse.classgrade`` must contain.

rnn_forward's grade cells: rnn_step_correct (2), rnn_forward_shapes (1),
rnn_forward_matches_keras (3), rnn_forward_initial_state (2).
"""

from __future__ import annotations

import copy
from pathlib import Path

from submissions import TF_LOG_ON, fill_in

from rnncourse import course

FULL = {"rnn_step_correct": 2.0, "rnn_forward_shapes": 1.0, "rnn_forward_matches_keras": 3.0,
        "rnn_forward_initial_state": 2.0}
ZERO = {cell: 0.0 for cell in FULL}


def hand_in(root: Path, assignment: str, student: str, handed_in) -> None:
    """Put what a builder returned in ``submitted/<student>/<assignment>/``, as a student would."""
    folder = root / "submitted" / student / assignment
    folder.mkdir(parents=True)
    if handed_in is None:
        (folder / "my_answers.py").write_text("def rnn_step(x_t, h_prev, K, U, b): ...\n")
    elif isinstance(handed_in, bytes):
        (folder / f"{assignment}.ipynb").write_bytes(handed_in)
    else:
        course.submit(root, assignment, student, handed_in)


def scores(**lost) -> dict[str, float]:
    """Full marks except the grade cells named (``rnn_step_correct=0``)."""
    return {**FULL, **{cell: float(points) for cell, points in lost.items()}}


#: A wrong answer that loses 7 of the 8 points (keeps rnn_forward_shapes): the base of the
#: cheating attempts, so that a cheat that worked would show as extra points.
BIAS_LEFT_OUT = [("rnn_step_answer", "h_prev @ U + b)", "h_prev @ U)")]
WRONG = scores(rnn_step_correct=0, rnn_forward_matches_keras=0, rnn_forward_initial_state=0)

#: rnn_forward misbehaves only when an initial state is given: the hidden part of
#: rnn_forward_shapes and rnn_forward_initial_state are hit, the other tests are not.
WHEN_H0 = ("rnn_forward_answer", "B, T, _ = x.shape", "B, T, _ = x.shape\n    if h0 is not None:\n{code}")
HIT_BY_H0 = scores(rnn_forward_shapes=0, rnn_forward_initial_state=0)


def _when_h0(code: str) -> list[tuple[str, str, str]]:
    body = "\n".join("        " + line for line in code.splitlines())
    return [(WHEN_H0[0], WHEN_H0[1], WHEN_H0[2].format(code=body))]


def _id(cell) -> str | None:
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")


def _cell(notebook, grade_id):
    return next(c for c in notebook["cells"] if _id(c) == grade_id)


def _extra_cell(notebook: dict, after: str, code: str) -> dict:
    """A cell the student added (no nbgrader metadata) right after cell ``after``."""
    notebook = copy.deepcopy(notebook)
    index = next(i for i, c in enumerate(notebook["cells"]) if _id(c) == after)
    notebook["cells"].insert(index + 1, {"cell_type": "code", "execution_count": None, "metadata": {},
                                         "outputs": [], "source": code})
    return notebook


def _prepend(answer: str, code: str) -> list[tuple[str, str, str]]:
    start = {"rnn_step_answer": "def rnn_step(", "rnn_forward_answer": "def rnn_forward("}[answer]
    return [(answer, start, code + "\n" + start)]


def correct(release, source):
    return fill_in(release, source, [])


def tf_logs(release, source):
    return fill_in(release, source, [("rnn_step_answer", "def rnn_step(", TF_LOG_ON + "def rnn_step(")])


def invalid_json(release, source):
    return b'{"cells": [{"cell_type": "code", "source": "def rnn_step(x'


def missing_notebook(release, source):
    return None


def empty_notebook(release, source):
    return {"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


def deleted_grade_cell(release, source):
    notebook = fill_in(release, source, [])
    notebook["cells"] = [c for c in notebook["cells"] if _id(c) != "rnn_forward_matches_keras"]
    return notebook


def duplicated_grade_cell(release, source):
    notebook = fill_in(release, source, BIAS_LEFT_OUT)
    test = _cell(notebook, "rnn_step_correct")
    copy_ = copy.deepcopy(test)
    copy_["source"] = "pass  # a copy of the test, emptied"
    notebook["cells"].insert(0, copy_)  # the emptied copy comes first
    notebook["cells"].append(copy.deepcopy(test))
    return notebook


def retyped_grade_cell(release, source):
    notebook = fill_in(release, source, BIAS_LEFT_OUT)
    test = _cell(notebook, "rnn_step_correct")
    test["cell_type"] = "markdown"
    test.pop("outputs", None)
    test.pop("execution_count", None)
    return notebook


def reordered_grade_cell(release, source):
    notebook = fill_in(release, source, [])
    test = _cell(notebook, "rnn_step_correct")
    notebook["cells"].remove(test)
    notebook["cells"].insert(0, test)  # before the setup cell and the answer
    return notebook


def edited_locked_cell(release, source):
    notebook = fill_in(release, source, BIAS_LEFT_OUT)
    _cell(notebook, "rnn_step_correct")["source"] = "print('the test passed')"
    return notebook


def infinite_loop(release, source):
    return fill_in(release, source, _when_h0("while True:\n    pass"))


def stuck_kernel(release, source):
    """A loop that swallows the interrupt: the kernel must be replaced, not waited for."""
    return _extra_cell(fill_in(release, source, []), "rnn_forward_answer",
                       "import time\nwhile True:\n    try:\n        time.sleep(0.05)\n"
                       "    except KeyboardInterrupt:\n        pass")


def kernel_dies(release, source):
    return fill_in(release, source, _when_h0("import os\nos._exit(1)"))


def memory_hog(release, source):
    return fill_in(release, source, _when_h0("hog = [np.ones(10**8) for _ in range(1000)]  # 800 GB"))


def prints_megabytes(release, source):
    notebook = fill_in(release, source, _prepend("rnn_step_answer", "print('x' * 10_000_000)"))
    return notebook


def allclose_override(release, source):
    return fill_in(release, source, BIAS_LEFT_OUT + _prepend(
        "rnn_step_answer", "np.allclose = lambda *args, **kwargs: True"))


def allclose_patched_by_the_function(release, source):
    return fill_in(release, source, [(
        "rnn_step_answer", "return np.tanh(x_t @ K + h_prev @ U + b)",
        "np.allclose = lambda *args, **kwargs: True\n    return np.tanh(x_t @ K + h_prev @ U)")])


def testing_and_builtins_override(release, source):
    return fill_in(release, source, BIAS_LEFT_OUT + _prepend("rnn_step_answer", (
        "import builtins\n"
        "np.testing.assert_allclose = lambda *args, **kwargs: None\n"
        "np.isfinite = lambda x: np.ones(np.shape(x), dtype=bool)\n"
        "builtins.abs = lambda x: 0\n"
        "def isinstance(obj, kinds):\n    return True\n")))


def tolerance_widened(release, source):
    return fill_in(release, source, BIAS_LEFT_OUT + _prepend(
        "rnn_step_answer", "import rnncourse.grading\nrnncourse.grading.FLOAT64_TOL.update(atol=10.0, rtol=10.0)"))


def reference_replaced(release, source):
    """The Keras reference replaced by the student's own function: wrong answers compare equal."""
    return fill_in(release, source, BIAS_LEFT_OUT + _prepend("rnn_forward_answer", (
        "import rnncourse.grading\n"
        "def _mine(kind, x, weights, initial_state=None, **kwargs):\n"
        "    h = rnn_forward(x, *weights, *(initial_state or []))\n"
        "    return [h, h[:, -1]]\n"
        "rnncourse.grading.keras_rnn = _mine")))


def every_other_cheat(release, source):
    """The other ways to make a wrong answer pass, all at once (each is restored and named):
    np.testing / np.isfinite / builtins replaced, a builtin shadowed, the tolerance widened,
    the Keras reference replaced by the student's own function (in rnncourse.grading and in the
    checks module the grade cells import), and an IPython input
    transformer that turns every later cell, tests included, into `pass`."""
    return fill_in(release, source, BIAS_LEFT_OUT + _prepend("rnn_step_answer", (
        "import builtins\n"
        "import rnncourse.grading\n"
        "np.testing.assert_allclose = lambda *args, **kwargs: None\n"
        "np.isfinite = lambda x: np.ones(np.shape(x), dtype=bool)\n"
        "builtins.abs = lambda x: 0\n"
        "def isinstance(obj, kinds):\n    return True\n"
        "rnncourse.grading.FLOAT64_TOL.update(atol=10.0, rtol=10.0)\n")) + _prepend("rnn_forward_answer", (
        "def _mine(kind, x, weights, initial_state=None, **kwargs):\n"
        "    h = rnn_forward(x, *weights, *(initial_state or []))\n"
        "    return [h, h[:, -1]]\n"
        "rnncourse.grading.keras_rnn = _mine\n"
        "import rnncourse.checks.rnn_forward\n"
        "rnncourse.checks.rnn_forward.keras_rnn = _mine\n"
        "get_ipython().input_transformers_cleanup.append(lambda lines: ['pass\\n'])")))


def tests_turned_off(release, source):
    """An IPython input transformer that turns every later cell, tests included, into `pass`."""
    return fill_in(release, source, BIAS_LEFT_OUT + _prepend(
        "rnn_forward_answer",
        "get_ipython().input_transformers_cleanup.append(lambda lines: ['pass\\n'])"))


SNOOP = """import json, os, socket, tempfile
import rnncourse
repo_solutions = os.path.join(os.path.dirname(os.path.dirname(rnncourse.__file__)), 'solutions')
shipped = os.path.join(tempfile.gettempdir(), 'rnncourse-classgrade')  # classgrade --ship's copies
found = {}
for key, path in [('../../../solutions',) * 2, ('repo solutions', repo_solutions), ('shipped', shipped),
                  ('../../../submitted',) * 2, ('../../../gradebook.db',) * 2]:
    try:
        found[key] = sorted(os.listdir(path)) if os.path.isdir(path) else os.path.getsize(path)
    except OSError as error:
        found[key] = type(error).__name__
try:
    open('../../../planted.txt', 'w').write('x')
    found['write'] = 'written'
except OSError as error:
    found['write'] = type(error).__name__
try:
    found['network'] = socket.create_connection(('1.1.1.1', 53), timeout=3) and 'connected'
except OSError as error:
    found['network'] = type(error).__name__
import resource
found['memory_limit'] = resource.getrlimit(resource.RLIMIT_AS)[0]
found['cpu_limit'] = resource.getrlimit(resource.RLIMIT_CPU)[0]
print('SNOOP ' + json.dumps(found))
"""


#: A port the test module listens on, on the host's 127.0.0.1 (set before the class is built).
HOST_PORT = [0]

SEARCH = """import json, os, socket, sys, time
found = {'hidden_tests': [], 'gradebooks': [], 'course_hidden': []}
course_hidden = '(1, 1, 1, ' + '11), (4, 3, 5, 12)'  # a line of rnn_forward's hidden tests
start = time.monotonic()
for top, folders, files in os.walk('/'):
    folders[:] = [f for f in folders if os.path.join(top, f) not in ('/proc', '/sys', '/dev')]
    if time.monotonic() - start > 20:
        found['walk'] = 'cut at 20 s'
        break
    for name in files:
        path = os.path.join(top, name)
        if name == 'gradebook.db':
            found['gradebooks'].append(path)
        elif name.endswith('.ipynb') or (  # and other text where the packages are not (for time)
                name.endswith(('.py', '.json', '.txt', '.bak', '.md')) and '-packages/' not in top
                and not top.startswith(('/usr', sys.prefix, sys.base_prefix))):
            try:
                text = open(path, errors='replace').read()
            except OSError:
                continue
            if 'BEGIN HIDDEN TESTS' in text:
                found['hidden_tests'].append(path)
            if course_hidden in text:
                found['course_hidden'].append(path)
def attempt(key, action):
    try:
        found[key] = action()
    except Exception as error:
        found[key] = type(error).__name__
attempt('proc1_environ', lambda: open('/proc/1/environ', 'rb').read().decode(errors='replace'))
attempt('shadow', lambda: open('/etc/shadow').read()[:20])
attempt('home_ssh', lambda: os.listdir(os.path.expanduser('~/.ssh')))
attempt('root_ssh', lambda: os.listdir('/root/.ssh'))
attempt('loopback', lambda: socket.create_connection(('127.0.0.1', PORT), timeout=3) and 'connected')
found['uid'] = os.getuid()
found['ppid'] = os.getppid()
found['environ'] = dict(os.environ)
print('SEARCH ' + json.dumps(found))
"""


def search(release, source):
    """Correct answers, and a cell that searches the whole file system for hidden tests and
    gradebooks, reads the secrets of the machine and calls a port on the host's loopback."""
    return _extra_cell(fill_in(release, source, []), "rnn_forward_answer",
                       SEARCH.replace("PORT", str(HOST_PORT[0])))


def fork_bomb(release, source):
    """A fork bomb (every process forks for ever) when an initial state is given; the processes
    it made exit 2 s after the limit stops them, the first one raises."""
    return fill_in(release, source, _when_h0(
        "import os, time\nme = os.getpid()\ntry:\n    while True:\n        os.fork()\nexcept OSError:\n"
        "    if os.getpid() != me:\n        time.sleep(2)\n        os._exit(0)\n    time.sleep(3)\n    raise"))


def writes_5_gb(release, source):
    """Fifty files of 100 MB (5 GB) when an initial state is given; says how long it wrote."""
    return fill_in(release, source, _when_h0(
        "import time\nstart = time.monotonic()\ntry:\n    for i in range(50):\n"
        "        with open(f'big{i}', 'wb') as f:\n            for _ in range(100):\n"
        "                f.write(b'x' * 2**20)\nfinally:\n"
        "    print(f'WROTE for {time.monotonic() - start:.3f} s', flush=True)"))


def allclose_thread(release, source):
    """A thread that puts a permissive np.allclose back every millisecond, tests included."""
    return fill_in(release, source, BIAS_LEFT_OUT + _prepend("rnn_step_answer", (
        "import threading, time\n"
        "def _keep():\n    while True:\n        np.allclose = lambda *args, **kwargs: True\n"
        "        time.sleep(0.001)\n"
        "threading.Thread(target=_keep, daemon=True).start()")))


def showtraceback_replaced(release, source):
    """IPython's traceback display replaced: a failing test would show no error."""
    return fill_in(release, source, BIAS_LEFT_OUT + _prepend(
        "rnn_step_answer", "get_ipython().showtraceback = lambda *args, **kwargs: None"))


def snoop(release, source):
    """Correct answers, and a cell that looks for the solutions, the gradebook, the others'
    submissions and the network, and says what it found."""
    return _extra_cell(fill_in(release, source, []), "rnn_forward_answer", SNOOP)


HOSTILE = {
    "correct": (correct, FULL),
    "tf_logs": (tf_logs, FULL),
    "invalid_json": (invalid_json, ZERO),
    "missing_notebook": (missing_notebook, ZERO),
    "empty_notebook": (empty_notebook, ZERO),
    "deleted_grade_cell": (deleted_grade_cell, FULL),
    "duplicated_grade_cell": (duplicated_grade_cell, WRONG),
    "retyped_grade_cell": (retyped_grade_cell, WRONG),
    "reordered_grade_cell": (reordered_grade_cell, FULL),
    "edited_locked_cell": (edited_locked_cell, WRONG),
    "infinite_loop": (infinite_loop, HIT_BY_H0),
    "stuck_kernel": (stuck_kernel, FULL),
    "kernel_dies": (kernel_dies, HIT_BY_H0),
    "memory_hog": (memory_hog, HIT_BY_H0),
    "prints_megabytes": (prints_megabytes, FULL),
    "allclose_override": (allclose_override, WRONG),
    "allclose_patched_by_the_function": (allclose_patched_by_the_function, ZERO),
    "every_other_cheat": (every_other_cheat, WRONG),
    "snoop": (snoop, FULL),
    "search": (search, FULL),
    "allclose_thread": (allclose_thread, ZERO),
    "showtraceback_replaced": (showtraceback_replaced, WRONG),
}
#: Graded only where the sandbox holds them (its own uid for the process limit, a tmpfs for the
#: bytes written): without it they would hit the host itself.
SANDBOXED = {
    "fork_bomb": (fork_bomb, HIT_BY_H0),
    "writes_5_gb": (writes_5_gb, HIT_BY_H0),
}
#: The same cheats one at a time (not graded by the test module, to keep it short; the
#: benchmark uses them).
SEPARATE_CHEATS = {
    "testing_and_builtins_override": (testing_and_builtins_override, WRONG),
    "tolerance_widened": (tolerance_widened, WRONG),
    "reference_replaced": (reference_replaced, WRONG),
    "tests_turned_off": (tests_turned_off, WRONG),
}

#: What each status file must say (the instructor's reason), beside the state.
REASON = {
    "invalid_json": "not a valid notebook",
    "missing_notebook": "no rnn_forward.ipynb",
    "empty_notebook": "put back",
    "deleted_grade_cell": "rnn_forward_matches_keras",
    "duplicated_grade_cell": "duplicated",
    "retyped_grade_cell": "type was changed",
    "reordered_grade_cell": "out of order",
    "edited_locked_cell": "edited",
    "tf_logs": "graded 8/8",
    "correct": "graded 8/8",
    "infinite_loop": "stopped after",
    "stuck_kernel": "did not stop",
    "kernel_dies": "kernel died",
    "memory_hog": "MemoryError",
    "prints_megabytes": "was cut",
    "allclose_override": "numpy.allclose",
    "allclose_thread": "changed while the test ran",
    "fork_bomb": "Resource temporarily unavailable",
    "writes_5_gb": "No space left on device",
    "allclose_patched_by_the_function": "changed while the test ran",
    "every_other_cheat": ["numpy.testing.assert_allclose", "numpy.isfinite", "builtins.abs",
                          "shadow builtins", "FLOAT64_TOL", "rnncourse.grading.keras_rnn",
                          "rnncourse.checks.rnn_forward.keras_rnn",
                          "input_transformers_cleanup"],
}
