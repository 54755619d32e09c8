"""The guard that runs inside the student's kernel, around every test.

``GuardedExecute`` sends :func:`kernel_guard_source` into the kernel before any student code
runs and calls the guard between cells through ``user_expressions`` of an empty execute
request, which IPython evaluates without the student's input transformers or cell hooks.
Everything here must therefore be self-contained (standard library only).
"""

from __future__ import annotations

import inspect


class KernelGuard:
    """Keeps what the tests rely on as the instructor's cells left it (runs in the kernel).

    * at creation (before any student code): snapshots the modules the checks use (NumPy,
      ``numpy.testing``, ``math``, ``builtins``, Keras's layers and ops, ``rnncourse``),
      the code and defaults of their Python functions, the recurrent layer classes, the
      small dicts/lists of ``rnncourse`` (tolerances), and IPython's hooks;
    * ``locked_start()``/``locked_end()`` around an instructor cell: remember the names it
      binds (``np``, ``check_array``, a helper an older-style later test uses);
    * ``before_test()``: undoes any change to the above, hides top-level names that
      shadow builtins for the duration of the test, and says what it found;
    * ``after_test()``: says whether anything changed *while the test ran* (a student
      function that patches ``np.allclose`` when called) and puts the hidden names back.

    Everything it finds is returned as a JSON string. It is best effort: code in the same
    process can always find and defeat it; ``ReportSuspiciousCode`` flags such code.
    """

    MODULES = ("builtins", "math", "numpy", "numpy.testing", "numpy.linalg", "numpy.random",
               "rnncourse", "rnncourse.grading", "keras", "keras.layers", "keras.ops", "keras.random",
               "tensorflow")

    def __init__(self):
        import sys

        self.sys = sys
        self.shell = get_ipython()  # noqa: F821 (defined in the kernel)
        self.modules, self.functions, self.classes, self.data = {}, [], [], []
        self._snapshot_modules()
        self._snapshot_classes()
        shell = self.shell
        self.shell_lists = {k: list(getattr(shell, k)) for k in
                            ("input_transformers_cleanup", "input_transformers_post", "ast_transformers")}
        self.events = {k: list(v) for k, v in shell.events.callbacks.items()}
        self.shell_dict = set(vars(shell))
        self.hooks = {k: getattr(sys, k) for k in ("stdout", "stderr", "excepthook", "displayhook")}
        self.initial_ns = dict(shell.user_ns)
        self.locked, self.hidden, self._before = {}, {}, None

    @classmethod
    def module_names(cls):
        """MODULES, and every module of rnncourse.checks (the harness the grade cells import)."""
        import pkgutil

        try:
            from rnncourse import checks
        except Exception:  # noqa: BLE001 (no checks package: nothing more to guard)
            return cls.MODULES
        return cls.MODULES + tuple(f"rnncourse.checks.{m.name}"
                                   for m in pkgutil.iter_modules(checks.__path__))

    # Keras imports these only to offer optional features (DataFrames in fit, scikit-learn
    # wrappers, an image-gallery plot) and skips them when they are missing; together they are
    # about 1 of the 6 CPU seconds TensorFlow and Keras take to import. While the guard
    # imports TensorFlow and Keras they are reported missing; a cell that imports one of them
    # afterwards gets it as usual.
    NOT_FOR_KERAS = ("sklearn", "pandas", "matplotlib")

    def _import_keras_without_its_optional_extras(self):
        import importlib

        skipped = self.NOT_FOR_KERAS

        class _NotNow:
            @staticmethod
            def find_spec(name, path=None, target=None):
                if name.split(".")[0] in skipped:
                    raise ModuleNotFoundError(f"{name} is not imported while Keras loads", name=name)

        finder = _NotNow()
        self.sys.meta_path.insert(0, finder)
        try:
            for name in ("tensorflow", "keras"):
                try:
                    importlib.import_module(name)
                except Exception:  # noqa: BLE001, S112 (not installed: not guarded, as below)
                    continue
        finally:
            self.sys.meta_path.remove(finder)

    def _snapshot_modules(self):
        import importlib

        self._import_keras_without_its_optional_extras()
        for name in self.module_names():
            try:
                module = importlib.import_module(name)
            except Exception:  # noqa: BLE001, S112 (a missing optional module is simply not guarded)
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

    def _snapshot_classes(self):
        layers = self.modules.get("keras.layers", (None, {}))[1]
        for attr, value in layers.items():
            if isinstance(value, type) and (any(s in attr for s in ("RNN", "LSTM", "GRU")) or attr == "Layer"):
                for klass in value.__mro__[:-1]:
                    if klass not in [c for c, _ in self.classes]:
                        self.classes.append((klass, dict(vars(klass))))
        for klass in type(self.shell).__mro__[:-1]:
            self.classes.append((klass, dict(vars(klass))))

    # -- what changed (each returns the changes and undoes them when fix is true)
    def _changed_modules(self, fix):
        import types

        changes = []
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
        return changes

    def _changed_functions_and_data(self, fix):
        changes = []
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
        return changes

    def _changed_classes(self, fix):
        changes = []
        for klass, attrs in self.classes:
            current = dict(vars(klass))
            label = f"{klass.__module__}.{klass.__qualname__}"
            for attr, value in attrs.items():
                if current.get(attr, _MISSING) is not value:
                    changes.append(f"{label}.{attr}")
                    if fix:
                        try:
                            setattr(klass, attr, value)
                        except (AttributeError, TypeError):
                            pass
            for attr in set(current) - set(attrs):
                if callable(current[attr]) or isinstance(current[attr], (property, staticmethod, classmethod)):
                    changes.append(f"{label}.{attr} (added)")
                    if fix:
                        try:
                            delattr(klass, attr)
                        except (AttributeError, TypeError):
                            pass
        return changes

    def _changed_shell(self, fix):
        sys, shell, changes = self.sys, self.shell, []
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
        return changes

    def _changed_namespace(self, fix):
        ns, changes = self.shell.user_ns, []
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

    def _modified(self, fix: bool, namespace: bool = True) -> list[str]:
        changes = (self._changed_modules(fix) + self._changed_functions_and_data(fix)
                   + self._changed_classes(fix) + self._changed_shell(fix))
        if namespace:  # a test cell may rebind names (its own loop variables)
            changes += self._changed_namespace(fix)
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
        import builtins as real_builtins
        import json

        changes = self._modified(fix=True)
        ns = self.shell.user_ns
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
             ("import sys as _sys, types as _types\n"
              "_module = _types.ModuleType('_rnncourse_guard')\n"
              "_module.guard = KernelGuard()\n"
              "_sys.modules['_rnncourse_guard'] = _module\n")]
    return "\n\n".join(parts)
