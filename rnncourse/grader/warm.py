"""Kernels started ahead of time in a process that grades many submissions.

Starting a kernel and importing TensorFlow in it is most of a submission's grading time.
When :class:`~rnncourse.grader.execute.GuardedExecute` has ``warm_kernels`` on (``classgrade``
turns it on in its worker processes), each notebook it grades is run by a kernel that was
started while the *previous* notebook was graded: a new process per student, started by
:class:`~rnncourse.grader.sandbox.SandboxedKernelManager` (its sandbox and limits are in
place before the kernel's first line), that has run nothing but the guard's set-up
(which imports NumPy, Keras and TensorFlow and snapshots them). No student code ever runs in a
kernel before it is handed to that student, and each kernel serves one student only.

The spare kernel starts with an empty working folder in its sandbox; before the first cell the
student's folder is copied into it (:meth:`~rnncourse.grader.sandbox.SandboxedKernelManager.receive`)
and the kernel moves there. Without a sandbox it starts in the course's ``autograded`` folder and
moves into the student's folder.
"""

from __future__ import annotations

import ast
import atexit
import contextlib
import json
import os

from jupyter_core.utils import run_sync

from .guard import kernel_guard_source

_SPARE: dict = {}  # the one spare kernel of this process: key, manager, client, message id, cwd


def guard_setup_expression() -> str:
    """What a kernel evaluates (as a user expression) to set the guard up; '[]' when done."""
    return (f"exec(compile({kernel_guard_source()!r}, '<rnncourse-guard>', 'exec'), "
            f"{{'__name__': '_rnncourse_guard_setup', 'get_ipython': get_ipython}}) or '[]'")


def start_spare(key: tuple, manager, cwd: str, extra_arguments: list[str]) -> None:
    """Start a kernel with ``manager`` in ``cwd`` and ask it to set the guard up (no waiting)."""
    discard_spare()
    os.makedirs(cwd, exist_ok=True)
    manager.ahead = True  # no submission to copy in yet (SandboxedKernelManager.receive does it later)
    run_sync(manager.start_kernel)(cwd=cwd, extra_arguments=list(extra_arguments))
    client = manager.blocking_client()
    client.start_channels()
    msg_id = client.execute("", silent=True, store_history=False,
                            user_expressions={"value": guard_setup_expression()})
    _SPARE.update(key=key, manager=manager, client=client, msg_id=msg_id, cwd=cwd)


def take_spare(key: tuple, timeout: float):
    """The spare kernel's manager if it was started for ``key`` and its guard is ready, else None."""
    if not _SPARE:
        return None
    spare = dict(_SPARE)
    _SPARE.clear()
    ready = spare["key"] == key and _wait_for_guard(spare["client"], spare["msg_id"], timeout, spare["manager"])
    spare["client"].stop_channels()
    if not ready:
        _shutdown(spare["manager"])
        return None
    return spare["manager"], spare["cwd"]


def _wait_for_guard(client, msg_id: str, timeout: float, manager) -> bool:
    import queue
    import time

    end = time.monotonic() + timeout
    try:
        while True:
            try:
                reply = client.get_shell_msg(timeout=1)
            except queue.Empty:
                if time.monotonic() > end or not run_sync(manager.is_alive)():
                    return False  # a dead kernel is not waited for
                continue
            if reply["parent_header"].get("msg_id") == msg_id:
                break
    except Exception:  # noqa: BLE001 (no reply in time, a dead kernel: start a cold one instead)
        return False
    value = reply["content"].get("user_expressions", {}).get("value", {})
    try:
        return value.get("status") == "ok" and json.loads(ast.literal_eval(value["data"]["text/plain"])) == []
    except Exception:  # noqa: BLE001
        return False


def _shutdown(manager) -> None:
    with contextlib.suppress(Exception):  # already dead
        run_sync(manager.shutdown_kernel)(now=True)


def discard_spare() -> None:
    """Shut down this process's spare kernel, if any (also at exit)."""
    if _SPARE:
        spare = dict(_SPARE)
        _SPARE.clear()
        spare["client"].stop_channels()
        _shutdown(spare["manager"])


atexit.register(discard_spare)
