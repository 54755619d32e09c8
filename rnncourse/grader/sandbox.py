"""Kernels with limits: memory, CPU time, file size, no network, hidden paths.

:class:`SandboxedKernelManager` starts each kernel behind :func:`_sandbox_main`, a
standard-library wrapper that runs in front of the kernel's command, so the limits are in
place before the kernel runs a line of the student's code. :func:`isolation_available`
says which of them this machine allows.
"""

from __future__ import annotations

import inspect
import json
import os
import shutil
import subprocess
import sys
import tempfile

from traitlets import Bool, Integer, List, Unicode

from .. import course

REPO = str(course.REPO)


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
        parent = _os.path.dirname(options["private"])
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


OWNER = "owner.pid"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def reap_orphan_kernels() -> int:
    """Stop sandboxed kernels whose grading process died without shutting them down.

    A grading process that is killed (a job past ``--job-timeout``, an interrupted class)
    cannot stop the kernel it started ahead for its next submission. Each kernel's private
    folder names its owner's process id; a kernel whose owner is gone is killed with its
    folder. Returns how many were stopped. Linux only (it reads /proc).
    """
    parent = os.path.join(tempfile.gettempdir(), f"rnncourse-kernels-{os.getuid()}")
    if not os.path.isdir(parent) or not os.path.isdir("/proc"):
        return 0
    stopped = 0
    for name in os.listdir(parent):
        folder = os.path.join(parent, name)
        try:
            with open(os.path.join(folder, OWNER)) as handle:
                owner = int(handle.read().strip())
        except (OSError, ValueError):
            continue
        if _alive(owner):
            continue
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as handle:
                    command = handle.read().decode(errors="replace")
            except OSError:
                continue
            if folder in command:
                try:
                    os.kill(int(pid), 9)
                    stopped += 1
                except OSError:
                    pass
        shutil.rmtree(folder, ignore_errors=True)
    return stopped


def _unshare_works(flags: tuple[str, ...]) -> bool:
    """Whether ``unshare FLAGS true`` works here (root, or user namespaces allowed)."""
    if flags not in _UNSHARE_OK:
        tool = shutil.which("unshare")
        try:
            _UNSHARE_OK[flags] = bool(tool) and subprocess.run(
                [tool, *flags, "true"], capture_output=True, timeout=10, check=False).returncode == 0
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
            with open(os.path.join(self._private, OWNER), "w") as handle:
                handle.write(str(os.getpid()))  # reap_orphan_kernels: whose kernel this is
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
