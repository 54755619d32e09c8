"""Sandboxed kernels forked from a process that has imported TensorFlow once (a zygote).

Importing TensorFlow and Keras is most of a graded kernel's CPU time (about 6 s of 8 on the
course's machines), and every kernel paid it again. A grading process (a ``classgrade`` worker,
one ``nbgrader autograde``) now starts one *zygote*: a fresh interpreter, with the environment
a kernel gets and the working folder ``/``, that imports NumPy, TensorFlow, Keras and ipykernel,
runs nothing else, and forks on request. Each kernel still gets its own bubblewrap sandbox
(:class:`~rnncourse.grader.sandbox.SandboxedKernelManager` starts it exactly as before, with
:func:`~rnncourse.grader.sandbox._sandbox_stub` as the sandbox's process 1 instead of the kernel):

1. the zygote forks a helper, which enters the sandbox's namespaces (``setns``: user when there
   is one, IPC, UTS, network, cgroup, PID, mount, so it sees the sandbox's root and nothing
   else of the machine's file system);
2. the helper forks the kernel, which is therefore process 2 of the sandbox's PID namespace
   (it cannot see the zygote, the helper or any other kernel), and then only waits: when the
   kernel ends, it kills the sandbox's process 1, which ends the sandbox and all left in it;
3. the kernel takes the sandbox's standard streams, closes every other descriptor (the
   zygote's pipes among them), starts a new session, replaces its environment with the one the
   sandbox was given, and runs the same :func:`~rnncourse.grader.sandbox._sandbox_main` as an
   exec'd kernel does (copy of the submission, resource limits, its own uid as root; with a
   user namespace, every capability dropped), then starts ipykernel in place of ``exec``.

No student code runs in the zygote or the helper; a kernel is a copy of a process that has
only imported libraries, reseeds NumPy's global generator (Python's ``random`` reseeds itself
after a fork), and serves one student. ``RNNCOURSE_ZYGOTE=0`` turns the zygote off (every kernel
is exec'd in its sandbox, as before), and so does any failure of its self-test.
"""

from __future__ import annotations

import atexit
import inspect
import json
import os
import subprocess
import sys
import threading
import time

from rnncourse.kernel_fork import is_ipykernel, preload_modules, run_ipykernel, take_environment  # noqa: F401 (is_ipykernel: sandbox.py)

SWITCH = "RNNCOURSE_ZYGOTE"  # "0": no zygote
PRELOAD = ("numpy", "tensorflow", "keras", "ipykernel.kernelapp")
READY_TIMEOUT, FORK_TIMEOUT = 180, 60  # seconds: its imports on a loaded machine; one fork
NAMESPACES = ("ipc", "uts", "net", "cgroup", "pid", "mnt")  # after the user namespaces, mount last


def _zygote_main(sandbox_main, run_ipykernel, preload, namespaces, stdout):
    """The zygote (run by ``python -c``; standard library only until ``preload``). Its standard
    input and output are the pipes of its requests; ``stdout`` is the descriptor of the grading
    process's standard output, which the kernels get (as an exec'd kernel inherits it)."""
    import ctypes
    import fcntl
    import json as _json
    import os as _os
    import signal as _signal
    import sys as _sys

    imported = preload_modules(preload)  # kernel_fork's, in this program
    libc = ctypes.CDLL(None, use_errno=True)
    ns_get_parent = 0xB702  # ioctl _IO(0xb7, 0x2): the parent of a user namespace
    control_in, control_out = _sys.stdin.buffer, _sys.stdout.buffer
    control_out.write(b"ready\n")
    control_out.flush()

    def kernel(request):
        # the helper's fork: process 2 of the sandbox, still root (or capable in its user namespace)
        _os.setsid()
        _os.dup2(_os.open("/dev/null", _os.O_RDONLY), 0)
        _os.dup2(stdout, 1)  # the grading process's stdout; stderr is its stderr already
        _os.closerange(3, 1 << 16)  # the zygote's pipes, the helper's process handle
        take_environment(request["env"], imported)
        _os.chdir(request["cwd"])

        sandbox_main([_json.dumps(request["options"]), *request["command"]], launch=run_ipykernel)

    def helper(request, report):
        target = request["pid"]
        handle = _os.pidfd_open(target)  # the sandbox's process 1, safe from pid reuse

        def enter(fd, name):
            if libc.setns(fd, 0) != 0:
                raise OSError(ctypes.get_errno(), f"setns({name})")
            _os.close(fd)

        # Its user namespaces, outermost first: bwrap's --disable-userns nests one in another, and
        # the other namespaces belong to the outer one, so they are entered from there.
        users, mine = [], _os.stat("/proc/self/ns/user").st_ino
        fd = _os.open(f"/proc/{target}/ns/user", _os.O_RDONLY)
        while _os.fstat(fd).st_ino != mine:
            users.insert(0, fd)
            fd = fcntl.ioctl(fd, ns_get_parent)
        _os.close(fd)
        if users:
            enter(users.pop(0), "user")
        for name in namespaces:
            theirs = f"/proc/{target}/ns/{name}"
            if _os.path.exists(theirs) and _os.stat(theirs).st_ino != _os.stat(f"/proc/self/ns/{name}").st_ino:
                enter(_os.open(theirs, _os.O_RDONLY), name)
        for fd in users:
            enter(fd, "user")
        _os.chdir("/")
        child = _os.fork()
        if child == 0:
            try:
                kernel(request)
            except SystemExit:  # the kernel's end: the interpreter exits as any kernel's does
                raise
            except BaseException as error:  # noqa: BLE001 (say why on the sandbox's stderr)
                _os.write(2, f"rnncourse zygote: the kernel did not start: {error!r}\n".encode())
                _os._exit(1)
        _os.write(report, b"ok")
        _os.close(report)
        _os.waitpid(child, 0)
        _signal.pidfd_send_signal(handle, _signal.SIGKILL)  # the kernel ended: end its sandbox

    for line in control_in:  # until the grading process closes the pipe or dies
        request = _json.loads(line)
        try:
            while _os.waitpid(-1, _os.WNOHANG)[0]:  # helpers whose kernel ended
                pass
        except ChildProcessError:
            pass
        read_end, write_end = _os.pipe()
        pid = _os.fork()
        if pid == 0:
            code = 0
            try:
                _os.close(read_end)
                null = _os.open("/dev/null", _os.O_RDWR)
                for fd in (0, 1):  # not the zygote's pipes: the grader sees it end when it ends
                    _os.dup2(null, fd)
                helper(request, write_end)
            except SystemExit:  # the kernel's end (see helper)
                raise
            except BaseException as error:  # noqa: BLE001
                code = 1
                try:
                    _os.write(write_end, f"error {error!r}".encode())
                except OSError:
                    pass
            _os._exit(code)
        _os.close(write_end)
        with _os.fdopen(read_end, "rb") as answer:
            reply = answer.read() or b"error: the helper ended without a word"
        control_out.write(reply.replace(b"\n", b" ") + b"\n")
        control_out.flush()


class Zygote:
    """One zygote process and the pipe to it (used under a lock: one request at a time)."""

    def __init__(self, env: dict[str, str]):
        from .sandbox import _sandbox_main

        try:
            stdout = os.dup(sys.__stdout__.fileno())
        except (AttributeError, OSError, ValueError):  # no real standard output (io.UnsupportedOperation)
            stdout = os.open(os.devnull, os.O_WRONLY)
        program = "\n".join([inspect.getsource(_sandbox_main), inspect.getsource(run_ipykernel),
                             inspect.getsource(preload_modules), inspect.getsource(take_environment),
                             inspect.getsource(_zygote_main),
                             f"_zygote_main(_sandbox_main, run_ipykernel, {PRELOAD!r}, {NAMESPACES!r}, {stdout})"])
        self.env = dict(env)
        try:
            self.process = subprocess.Popen([sys.executable, "-c", program], stdin=subprocess.PIPE,
                                            stdout=subprocess.PIPE, env=self.env, cwd="/", pass_fds=(stdout,),
                                            bufsize=0)
        finally:
            os.close(stdout)
        self.ready = False

    def _line(self, timeout: float) -> bytes:
        """The zygote's next line ('' if it ended or said nothing in ``timeout`` seconds)."""
        import select

        line, end = b"", time.monotonic() + timeout
        while not line.endswith(b"\n"):
            left = end - time.monotonic()
            if left <= 0 or not select.select([self.process.stdout], [], [], left)[0]:
                return b""
            byte = self.process.stdout.read(1)
            if not byte:
                return b""
            line += byte
        return line

    def alive(self) -> bool:
        return self.process.poll() is None

    def fork_into(self, pid: int, request: dict) -> None:
        """Start a kernel inside the sandbox whose process 1 is host process ``pid``."""
        if not self.ready:
            if self._line(READY_TIMEOUT) != b"ready\n":
                raise RuntimeError(f"the zygote was not ready in {READY_TIMEOUT} s")
            self.ready = True
        self.process.stdin.write(json.dumps({**request, "pid": pid}).encode() + b"\n")
        self.process.stdin.flush()
        reply = self._line(FORK_TIMEOUT).strip()
        if reply != b"ok":
            raise RuntimeError(f"the zygote could not start a kernel: {reply.decode(errors='replace') or 'it ended'}")

    def close(self) -> None:
        if self.alive():
            self.process.kill()
        self.process.wait()


_LOCK = threading.Lock()
_ZYGOTES: dict[str, Zygote] = {}  # this process's zygote, by the environment its kernels get
_BROKEN: list[str] = []


def enabled() -> bool:
    """Whether kernels may be forked from a zygote here (Linux with ``setns`` and pidfds)."""
    return (os.environ.get(SWITCH, "1") != "0" and not _BROKEN and sys.platform.startswith("linux")
            and hasattr(os, "pidfd_open"))


def fork_kernel(pid: int, env: dict[str, str], cwd: str, options: dict, command: list[str]) -> None:
    """Fork this process's zygote (started on first use) into the sandbox whose process 1 is ``pid``."""
    key = json.dumps(env, sort_keys=True)
    with _LOCK:
        zygote = _ZYGOTES.get(key)
        if zygote is None or not zygote.alive():
            for old in _ZYGOTES.values():
                old.close()
            _ZYGOTES.clear()
            zygote = _ZYGOTES[key] = Zygote(env)
        try:
            zygote.fork_into(pid, {"env": env, "cwd": cwd, "options": options, "command": command})
        except (OSError, RuntimeError, ValueError) as error:
            _BROKEN.append(str(error))  # later kernels of this process are exec'd in their sandbox
            zygote.close()
            _ZYGOTES.pop(key, None)
            raise


@atexit.register
def close_all() -> None:
    with _LOCK:
        for zygote in _ZYGOTES.values():
            zygote.close()
        _ZYGOTES.clear()
