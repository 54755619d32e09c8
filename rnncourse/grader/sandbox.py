"""Kernels in an allow-list sandbox (bubblewrap) with resource limits.

:class:`SandboxedKernelManager` starts each kernel inside ``bwrap`` (bubblewrap, the sandbox
Flatpak uses) in front of :func:`_sandbox_main`, a standard-library wrapper that sets the
resource limits and the kernel's identity before the kernel runs a line of the student's code.
The kernel sees only what is added to an empty root: the Python environment and the course
package read-only, a private ``/tmp`` and a home folder (both size-capped tmpfs) holding a copy
of its own submission, its own socket folder; no network (not even the host's loopback), a
new PID namespace, an environment reduced to :data:`ENV_ALLOWED`. :func:`isolation_available`
says what this machine allows; ``RNNCOURSE_SANDBOX=limits`` forces resource limits only.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time

from traitlets import Bool, Integer, List, Unicode

from .. import TF_ENV, course
from . import zygote

REPO = str(course.REPO)
PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # rnncourse/
HOME = "/home/student"
WORK = HOME + "/work"  # the kernel's working folder: a copy of its submission
UID_BASE, UID_SLOTS = 820_000, 10_000  # root: each kernel runs as its own unused uid
ENV_ALLOWED = ("LANG", "LC_ALL", "PYTHONHASHSEED", "OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS",
               "TF_NUM_INTEROP_THREADS")  # kept from the grader's environment
FORCE = "RNNCOURSE_SANDBOX"  # "limits": no sandbox, resource limits only (also the test of that path)


def _sandbox_main(argv, launch=None):
    """Inside the sandbox, before the kernel: copy the submission into the working folder,
    set resource limits, become the kernel's own unprivileged user, then exec the kernel
    (run by ``python -c``, so it must only use the standard library). A kernel forked from a
    zygote (:mod:`.zygote`) runs it too, and calls ``launch`` instead of exec; it holds every
    capability until here, so it also gives them up (with ``no_new_privs`` and an empty bounding
    set, no program it runs can get one back)."""
    import ctypes as _ctypes
    import json as _json
    import os as _os
    import resource as _resource
    import shutil as _shutil

    options, command = _json.loads(argv[0]), argv[1:]
    inbox, uid = options.get("inbox"), options.get("uid")
    if inbox and _os.path.isdir(inbox):
        _shutil.copytree(inbox, ".", dirs_exist_ok=True)
    if uid is not None:
        for folder in ("/tmp", "/dev/shm"):
            _os.chown(folder, uid, uid)
        for folder, _, files in _os.walk(options["home"]):
            for name in [folder, *(_os.path.join(folder, f) for f in files)]:
                _os.lchown(name, uid, uid)
    limits = {"memory": _resource.RLIMIT_AS, "cpu": _resource.RLIMIT_CPU, "file_size": _resource.RLIMIT_FSIZE,
              "processes": _resource.RLIMIT_NPROC}
    for key, which in limits.items():
        if options.get(key):
            value = int(options[key])
            hard = value + 5 if key == "cpu" else value  # SIGXCPU first, SIGKILL 5 s later
            _resource.setrlimit(which, (value, hard))
    _resource.setrlimit(_resource.RLIMIT_CORE, (0, 0))
    if launch is not None:
        libc = _ctypes.CDLL(None, use_errno=True)
        pr_set_no_new_privs, pr_capbset_drop = 38, 24
        if libc.prctl(pr_set_no_new_privs, 1, 0, 0, 0) != 0:
            raise SystemExit("the sandbox could not set no_new_privs")
        for capability in range(64):  # EINVAL past the last one the running Linux knows
            libc.prctl(pr_capbset_drop, capability, 0, 0, 0)
    if uid is not None:  # root in the sandbox: become the kernel's own user, which drops every capability
        _os.setgroups([])
        _os.setgid(uid)
        _os.setuid(uid)
        if _os.getuid() != uid or _os.geteuid() != uid:
            raise SystemExit("the sandbox could not drop root")
    if launch is None:
        _os.execvp(command[0], command)
    pr_set_dumpable = 4  # as exec would: its /proc/self belongs to its own user again, not to root
    libc.prctl(pr_set_dumpable, 1, 0, 0, 0)
    if uid is None:  # in a user namespace: drop the capabilities that entering it gave
        header = (_ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
        data = (_ctypes.c_uint32 * 6)()  # effective, permitted, inheritable: none (two words each)
        if libc.capget(header, data) != 0 or any(data) and (
                libc.capset(header, (_ctypes.c_uint32 * 6)()) != 0):
            raise SystemExit("the sandbox could not drop its capabilities")
    with open("/proc/self/status") as status:  # nothing left, whichever way it was dropped
        held = [line.split()[1] for line in status if line.startswith(("CapEff:", "CapPrm:", "CapAmb:"))]
    if any(int(mask, 16) for mask in held):
        raise SystemExit("the sandbox could not drop its capabilities")
    launch(command)


def _sandbox_stub():
    """The sandbox's process 1 while its kernel is forked from a zygote (standard library only,
    run by ``python -c``): reaps what is orphaned in the sandbox and passes the signals the
    kernel's manager sends on to the kernel (process 2). It ends, and the sandbox with it, when
    the zygote's helper kills it after the kernel's end."""
    import os as _os
    import signal as _signal

    def forward(signum, frame):
        try:
            _os.kill(2, signum)
        except OSError:
            pass

    for signum in (_signal.SIGINT, _signal.SIGTERM, _signal.SIGHUP, _signal.SIGQUIT, _signal.SIGUSR1,
                   _signal.SIGUSR2):
        _signal.signal(signum, forward)
    _signal.pthread_sigmask(_signal.SIG_BLOCK, {_signal.SIGCHLD})  # kept pending: waited for below
    while True:
        try:
            while _os.waitpid(-1, _os.WNOHANG)[0]:
                pass
        except ChildProcessError:
            pass
        _signal.sigtimedwait({_signal.SIGCHLD}, 5.0)


_CHECKED: dict[str, bool] = {}
_WARNED: list[bool] = []
OWNER = "owner.pid"
log = logging.getLogger(__name__)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _kernels_folder() -> str:
    return os.path.join(tempfile.gettempdir(), f"rnncourse-kernels-{os.getuid()}")


def reap_orphan_kernels() -> int:
    """Stop sandboxed kernels whose grading process died without shutting them down.

    A grading process that is killed (a job past ``--job-timeout``, an interrupted class)
    cannot stop the kernel it started ahead for its next submission. Each kernel's private
    folder names its owner's process id; a kernel whose owner is gone is killed with its
    folder (and its user id is freed). Returns how many were stopped. Linux only (it reads /proc).
    """
    parent = _kernels_folder()
    if not os.path.isdir(parent) or not os.path.isdir("/proc"):
        return 0
    stopped = 0
    for name in os.listdir(parent):
        folder = os.path.join(parent, name)
        if name.startswith("uid-"):
            try:
                with open(folder) as handle:
                    holder = handle.read().strip()
            except OSError:
                continue
            if not os.path.isdir(holder):
                with _suppress():
                    os.unlink(folder)
            continue
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


class _suppress:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return exc[0] is not None and issubclass(exc[0], OSError)


def _root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def _bwrap_works() -> bool:
    """Whether bubblewrap runs here with the namespaces the sandbox uses (once per process)."""
    if "bwrap" not in _CHECKED:
        tool = shutil.which("bwrap")
        flags = ["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--die-with-parent"]
        if not _root():
            flags.append("--unshare-user")
        try:
            _CHECKED["bwrap"] = bool(tool) and sys.platform.startswith("linux") and subprocess.run(
                [tool, *flags, "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev", "true"],
                capture_output=True, timeout=20, check=False).returncode == 0
        except (OSError, subprocess.SubprocessError):
            _CHECKED["bwrap"] = False
    return _CHECKED["bwrap"]


def sandbox_mode() -> str:
    """``"root"``: bubblewrap, each kernel as its own unused uid; ``"user"``: bubblewrap in a
    user namespace, the kernel keeps the grading user's uid; ``"limits"``: resource limits only."""
    if os.environ.get(FORCE) == "limits" or not sys.platform.startswith("linux") or not _bwrap_works():
        return "limits"
    return "root" if _root() else "user"


def isolation_available() -> dict[str, bool]:
    """What ``SandboxedKernelManager`` uses on this machine."""
    mode = sandbox_mode()
    return {
        "rlimits": sys.platform.startswith("linux"),
        "allow_list": mode != "limits",
        "no_network": mode != "limits",
        "hidden_paths": mode != "limits",
        "own_user": mode == "root",
        "drop_capabilities": mode != "limits",
    }


def warn_if_unsandboxed(printer=None) -> bool:
    """Say loudly, once per process, that kernels run with resource limits only; True if so."""
    if sandbox_mode() != "limits":
        return False
    if not _WARNED:
        _WARNED.append(True)
        why = ("RNNCOURSE_SANDBOX=limits" if os.environ.get(FORCE) == "limits"
               else "bubblewrap (bwrap) or user namespaces are missing" if sys.platform.startswith("linux")
               else f"{sys.platform} has no bubblewrap")
        message = (f"WARNING: NO SANDBOX ({why}): student code runs with resource limits only and can read "
                   "and write everything the grading user can, the solutions and the gradebook included; "
                   "see the instructors' guide, Isolation")
        (printer or log.warning)(message)
    return True


def _read_only_system() -> list[str]:
    """bwrap arguments for the operating system's programs and libraries, read-only."""
    args = []
    for path in ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    files = [p for p in ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime",
                         "/etc/alternatives", "/etc/ssl/certs", "/etc/mime.types", "/etc/fonts") if os.path.exists(p)]
    args += _parents(files)
    for path in files:
        args += ["--ro-bind", path, path]
    return args


def _parents(paths: list[str]) -> list[str]:
    """bwrap arguments that make the folders above ``paths`` traversable (mode 0755)."""
    args, seen = [], set()
    for path in paths:
        parts = path.strip(os.sep).split(os.sep)[:-1]
        for depth in range(1, len(parts) + 1):
            folder = os.sep + os.sep.join(parts[:depth])
            if folder not in seen and not os.path.islink(folder):
                seen.add(folder)
                args += ["--perms", "0755", "--dir", folder]
    return args


def _allocate_uid(private: str) -> int:
    """An unused uid for one kernel (a file per uid in the kernels' folder, freed at clean-up)."""
    parent = os.path.dirname(private)
    start = (os.getpid() * 7919 + int.from_bytes(os.urandom(2), "little")) % UID_SLOTS
    for step in range(UID_SLOTS):
        uid = UID_BASE + (start + step) % UID_SLOTS
        try:
            handle = os.open(os.path.join(parent, f"uid-{uid}"), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        except FileExistsError:
            continue
        os.write(handle, private.encode())
        os.close(handle)
        return uid
    raise RuntimeError("no free uid for a sandboxed kernel")


try:
    from jupyter_client.manager import AsyncKernelManager as _AsyncKernelManager
except ImportError:  # pragma: no cover
    _AsyncKernelManager = object


class SandboxedKernelManager(_AsyncKernelManager):
    """A kernel that sees only what it needs, with memory, CPU, process and write limits.

    What is used depends on the machine (see :func:`sandbox_mode`):

    * always on Linux: ``RLIMIT_AS`` (memory), ``RLIMIT_CPU`` (CPU seconds, the kernel is
      killed past it), ``RLIMIT_FSIZE`` (largest file), ``RLIMIT_NPROC`` (processes and
      threads), no core dumps;
    * with bubblewrap (root, or unprivileged user namespaces): an empty root to which are
      added read-only the system's libraries, the Python environment and the course package
      (``rnncourse/`` only, not the repository around it) and ``read_only_paths``; a private
      ``/tmp`` and home (tmpfs capped at ``tmp_size``) holding a copy of the submission's
      folder as the working folder (without its notebooks: the one being graded holds the hidden
      tests once nbgrader has put them back); the kernel's own socket folder (ZeroMQ ``ipc``, as there
      is no network, not even loopback); new PID, IPC, UTS and network namespaces; the
      environment reduced to PATH, HOME, TMPDIR, :data:`ENV_ALLOWED` and ``rnncourse.TF_ENV``.
      ``hidden_paths`` inside what is added are covered by empty file systems.
    * as root, the kernel runs as a uid of its own (``UID_BASE`` + n, no capabilities), so
      ``RLIMIT_NPROC`` counts its processes alone and holds; without root it keeps the
      grading user's uid inside a user namespace.
    """

    memory_limit = Integer(4 * 1024 ** 3, help="Bytes of address space (RLIMIT_AS); 0: none").tag(config=True)
    cpu_limit = Integer(600, help="CPU seconds for the whole notebook (RLIMIT_CPU); 0: none").tag(config=True)
    file_size_limit = Integer(100 * 1024 ** 2, help="Largest file the kernel may write").tag(config=True)
    process_limit = Integer(512, help="Processes and threads of the kernel's user (RLIMIT_NPROC); 0: none"
                            ).tag(config=True)
    tmp_size = Integer(256 * 1024 ** 2, help="Bytes the kernel may write in /tmp and in its home "
                       "(each a tmpfs of this size)").tag(config=True)
    isolate_network = Bool(True, help="Sandbox the kernel when the machine allows it").tag(config=True)
    hidden_paths = List(Unicode(), help="Paths the kernel must not see even inside what it is given").tag(
        config=True)
    read_only_paths = List(Unicode(), help="Folders the kernel may read besides the Python environment "
                           "and the course package (none by default)").tag(config=True)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._mode = sandbox_mode() if self.isolate_network else "limits"
        self._private = self._uid = None
        self.ahead = False  # started before its submission is known (a warm kernel): nothing to copy yet
        warn_if_unsandboxed()
        if self._mode != "limits":
            parent = _kernels_folder()
            os.makedirs(parent, mode=0o711, exist_ok=True)
            os.chmod(parent, 0o711)  # others may enter a kernel's folder, not list them
            self._private = tempfile.mkdtemp(prefix="k-", dir=parent)
            with open(os.path.join(self._private, OWNER), "w") as handle:
                handle.write(str(os.getpid()))  # reap_orphan_kernels: whose kernel this is
            os.mkdir(os.path.join(self._private, "inbox"), 0o755)
            if self._mode == "root":
                self._uid = _allocate_uid(self._private)
            self.transport = "ipc"
            self.ip = os.path.join(self._private, "kernel")
            self.connection_file = os.path.join(self._private, "kernel.json")

    @property
    def inbox(self) -> str | None:
        return os.path.join(self._private, "inbox") if self._private else None

    def receive(self, folder: str) -> str:
        """Hand the submission's ``folder`` to this (already started) kernel; returns the
        expression the kernel evaluates to move into it ('[]' when done)."""
        if not self._private:
            return f"__import__('os').chdir({folder!r}) or '[]'"
        self._fill_inbox(folder)
        return (f"__import__('shutil').copytree({self.inbox!r}, {WORK!r}, dirs_exist_ok=True) and "
                f"__import__('os').chdir({WORK!r}) or '[]'")

    def _fill_inbox(self, folder: str) -> None:
        # not its notebooks: nbgrader's sanitized copy of the one being graded holds the hidden tests
        shutil.copytree(folder, self.inbox, dirs_exist_ok=True, symlinks=False,
                        ignore=shutil.ignore_patterns("*.ipynb", ".ipynb_checkpoints"))
        for top, folders, files in os.walk(self.inbox):  # readable by the kernel's user, not writable
            os.chmod(top, 0o755)
            for name in files:
                os.chmod(os.path.join(top, name), 0o644)

    def format_kernel_cmd(self, extra_arguments=None):
        command = super().format_kernel_cmd(extra_arguments)
        if not sys.platform.startswith("linux"):
            return command
        options = {"memory": self.memory_limit, "cpu": self.cpu_limit, "file_size": self.file_size_limit,
                   "processes": self.process_limit if self._mode != "limits" else 0}
        wrapper = inspect.getsource(_sandbox_main) + "\nimport sys\n_sandbox_main(sys.argv[1:])\n"
        if self._mode == "limits":
            return [sys.executable, "-c", wrapper, json.dumps(options), *command]
        options.update(inbox=self.inbox, home=HOME, uid=self._uid)
        exec_command = [*self._bwrap(), sys.executable, "-c", wrapper, json.dumps(options), *command]
        self._fork = None
        if zygote.enabled() and zygote.is_ipykernel(command):  # the same sandbox, its kernel forked
            self._fork = {"env": {**self._kernel_env(), "PWD": WORK}, "cwd": WORK, "options": options,
                          "command": command, "fallback": exec_command}
            stub = inspect.getsource(_sandbox_stub) + "\n_sandbox_stub()\n"
            return [*self._bwrap(as_pid_1=True), sys.executable, "-c", stub]
        return exec_command

    async def _async_launch_kernel(self, kernel_cmd, **kw):
        request, self._fork = getattr(self, "_fork", None), None
        await super()._async_launch_kernel(kernel_cmd, **kw)
        if request:
            fallback = request.pop("fallback")
            process = self.provisioner.process
            try:
                await asyncio.to_thread(self._fork_kernel, process, request)
            except Exception as error:  # noqa: BLE001 (the kernel is started the other way instead)
                log.warning("the kernel could not be forked from the zygote (%s): exec'd in its sandbox instead",
                            error)
                with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                    process.kill()  # the sandbox, waiting for a kernel that will not come
                    process.wait(10)
                await super()._async_launch_kernel(fallback, **kw)

    @staticmethod
    def _fork_kernel(process, request: dict) -> None:
        """Wait for the sandbox's process 1 (the stub, once bwrap has exec'd it), then have the
        zygote fork the kernel into it."""
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the kernel's sandbox ended (exit code {process.returncode}) before its kernel started")
            with _suppress():
                with open(f"/proc/{process.pid}/task/{process.pid}/children") as handle:
                    children = handle.read().split()
                if children:
                    with open(f"/proc/{children[0]}/cmdline", "rb") as handle:
                        if handle.read().split(b"\0")[0] == sys.executable.encode():
                            break
            if time.monotonic() > deadline:
                raise RuntimeError("the kernel's sandbox did not start in 60 s")
            time.sleep(0.005)
        zygote.fork_kernel(int(children[0]), **request)

    def _kernel_env(self) -> dict[str, str]:
        """The kernel's whole environment."""
        return {"PATH": os.pathsep.join([os.path.dirname(sys.executable), "/usr/local/bin", "/usr/bin", "/bin"]),
                "HOME": HOME, "TMPDIR": "/tmp", "LANG": "C.UTF-8", "MPLCONFIGDIR": HOME + "/.matplotlib",
                **{k: os.environ[k] for k in ENV_ALLOWED if k in os.environ}, **TF_ENV}

    def _bwrap(self, as_pid_1: bool = False) -> list[str]:
        args = [shutil.which("bwrap"), "--die-with-parent", "--unshare-ipc", "--unshare-pid", "--unshare-net",
                "--unshare-uts", "--unshare-cgroup-try", "--hostname", "sandbox"]
        if as_pid_1:  # the stub is process 1 (no bwrap init), so the kernel forked in is process 2
            args.append("--as-pid-1")
        if self._mode == "root":  # to chown the copy, then become the kernel's uid (drops them all)
            args += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID", "--cap-add", "CAP_CHOWN"]
        else:
            args += ["--unshare-user", "--disable-userns"]
        args += _read_only_system()
        # the private folders first: a mount hides what was mounted below it before, so the
        # Python environment of a course kept under /tmp must be bound after /tmp's tmpfs
        args += ["--proc", "/proc", "--dev", "/dev", "--size", str(self.tmp_size), "--tmpfs", "/dev/shm",
                 "--size", str(self.tmp_size), "--tmpfs", "/tmp",
                 "--size", str(self.tmp_size), "--tmpfs", HOME, "--dir", WORK]
        given = [sys.base_prefix, sys.prefix, os.path.dirname(os.path.realpath(sys.executable)), PACKAGE,
                 *self.read_only_paths]
        paths = list(dict.fromkeys(os.path.realpath(p) for p in given if os.path.exists(p)))
        args += _parents(paths)  # bwrap would copy the host's modes (/root: 0700) to the folders above
        for path in paths:
            args += ["--ro-bind", path, path]
        args += [*_parents([self._private]), "--bind", self._private, self._private,
                 "--ro-bind", self.inbox, self.inbox]
        for path in sorted(self.hidden_paths):
            inside = any(os.path.realpath(path).startswith(os.path.realpath(p) + os.sep) for p in given)
            if inside and os.path.isdir(path):
                args += ["--tmpfs", os.path.realpath(path)]
            elif inside and os.path.isfile(path):
                args += ["--ro-bind", "/dev/null", os.path.realpath(path)]
        env = self._kernel_env()
        args += ["--clearenv", *[a for k, v in sorted(env.items()) for a in ("--setenv", k, v)], "--chdir", WORK,
                 "--"]
        return args

    async def _async_pre_start_kernel(self, **kwargs):
        if self._private and not self.ahead and kwargs.get("cwd"):
            self._fill_inbox(kwargs["cwd"])  # a cold kernel: its submission is copied in before it starts
        command, kwargs = await super()._async_pre_start_kernel(**kwargs)
        if self._private:  # bwrap itself (the sandbox's process 1) holds nothing of the grader's environment
            kwargs["env"] = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", **TF_ENV}
        if self._uid is not None:  # its sockets folder and connection file belong to the kernel's uid
            os.chown(self._private, self._uid, self._uid)
            os.chown(self.connection_file, self._uid, self._uid)
        return command, kwargs

    async def _async_cleanup_resources(self, restart=False):
        await super()._async_cleanup_resources(restart=restart)
        if self._private and not restart:
            shutil.rmtree(self._private, ignore_errors=True)
            if self._uid is not None:
                with _suppress():
                    os.unlink(os.path.join(os.path.dirname(self._private), f"uid-{self._uid}"))

    cleanup_resources = _async_cleanup_resources  # AsyncKernelManager binds the base one by name
