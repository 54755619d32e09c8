"""Execution that survives hostile code: nbgrader's ``Execute`` with a sandbox and a guard.

:class:`GuardedExecute` replaces nbgrader's ``Execute`` in ``autograde`` (same traits).
"""

from __future__ import annotations

import ast
import copy
import json
import os

from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbformat.notebooknode import NotebookNode, from_dict
from nbgrader.preprocessors import Execute
from traitlets import Bool, Integer

from .common import cell_name, is_grade, is_instructor, note
from .sandbox import SandboxedKernelManager
from .warm import guard_setup_expression, start_spare, take_spare


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
      and grading goes on, so the tests that do not depend on the dead cell keep their points;
    * with ``warm_kernels`` (a process that grades many notebooks), the kernel was started,
      sandboxed and given the guard while the previous notebook was graded (:mod:`.warm`).
    """

    guard = Bool(True, help="Run KernelGuard around test cells").tag(config=True)
    max_kernel_restarts = Integer(3, help="Kernels replaced per notebook before giving up").tag(config=True)
    responsive_timeout = Integer(10, help="Seconds a kernel has to answer after a timeout").tag(config=True)
    warm_kernels = Bool(False, help="Start the next notebook's kernel while this one is graded "
                        "(for a process that grades many notebooks)").tag(config=True)

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
        if self._warm_folder is not None:  # a warm kernel: the guard is set up, move to the notebook
            folder, self._warm_folder = self._warm_folder, None
            receive = getattr(self.km, "receive", None)
            move = receive(folder) if receive else f"__import__('os').chdir({folder!r}) or '[]'"
            if self._call(move) is None:
                note(self.log, "kernel", "the kernel could not move into the submission's folder")
            self._guard_ready = True
            return
        if self._call(guard_setup_expression(), timeout=max(60, self.timeout or 60)) is None:
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
        grade, locked = is_grade(cell), is_instructor(cell)
        before = during = None
        if self.guard and locked:
            self._guard("locked_start")
        if self.guard and grade:
            before = self._guard("before_test")
        super().preprocess_cell(cell, self.resources, index)
        if self.guard and grade:
            during = self._guard("after_test")
        if self.guard and locked:
            self._guard("locked_end")
        return before, during

    def preprocess(self, nb, resources=None, km=None):
        self._restarts, self._gave_up, self._bad_cells, self._guard_ready = 0, False, set(), False
        self._warm, self._warm_folder = None, None
        if self.warm_kernels and self.guard and km is None:
            self._use_warm_kernel(nb, resources or {})
        return super().preprocess(nb, resources, km)

    # -- warm kernels (see .warm)
    def _use_warm_kernel(self, nb, resources) -> None:
        """Take the spare kernel started for this notebook, and start the next one."""
        path = (resources.get("metadata") or {}).get("path")
        if not path:
            return
        path = os.path.abspath(path)
        parent = os.path.dirname(os.path.dirname(path))  # autograded/ for autograded/<student>/<assignment>
        name = self.kernel_name or nb.metadata.get("kernelspec", {}).get("name") or ""
        key = (name, parent, repr(sorted(self.config.get("SandboxedKernelManager", {}).items())),
               self.timeout)
        taken = take_spare(key, timeout=max(60, self.timeout or 60))
        if taken is not None:
            self._warm, self._warm_folder = taken[0], path
        manager = (self.kernel_manager_class(kernel_name=name, config=self.config) if name
                   else self.kernel_manager_class(config=self.config))
        arguments = list(self.extra_arguments)
        if self.ipython_hist_file and not any(a.startswith("--HistoryManager.hist_file") for a in arguments):
            arguments.append(f"--HistoryManager.hist_file={self.ipython_hist_file}")
        try:
            start_spare(key, manager, parent, arguments)
        except Exception as error:  # noqa: BLE001 (grading goes on with cold kernels)
            self.log.warning("could not start a spare kernel: %s", error)

    def create_kernel_manager(self):
        if getattr(self, "_warm", None) is not None:  # the warm kernel (already started) for this notebook
            self.km, self._warm = self._warm, None
            return self.km
        return super().create_kernel_manager()

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type != "code" or not cell.source.strip():
            return cell, resources
        name = cell_name(cell, index)
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
        if is_grade(cell) and self.guard:
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
