"""The book's page kernels, forked from a process that imported TensorFlow once.

Every page's kernel imported NumPy, TensorFlow and Keras anew, about 6 s of CPU each, 12 times
a clean build. When the build reads pages, the main Sphinx process now starts one *zygote*, a
fresh interpreter with the build's environment and the working folder ``/``. The zygote listens
on a Unix socket in a private temporary folder; on its first request it imports
:data:`PRELOAD`, runs nothing else, and then forks one kernel per request.

Each page's kernel manager (:class:`ZygoteKernelManager`, which myst-nb gets through
jupyter-cache's ``single_nb_execution``) starts a standard-library *stub* in the kernel's place,
with the kernel's command line, environment and folder, exactly as jupyter_client starts a
kernel. The stub sends all three to the zygote and receives the kernel's pidfd. It forwards
every signal jupyter_client sends (interrupt, terminate) to the kernel, and ends when the kernel
ends; when the process that started it ends, it kills the kernel (an exec'd ipykernel ends
itself when its parent ends). The kernel (:func:`_kernel`) takes the stub's standard streams
and starts a new session. It closes every descriptor of the zygote, takes the stub's
environment and folder, and runs ``ipykernel_launcher`` as a new interpreter would (:func:`rnncourse.kernel_fork.run_ipykernel`,
shared with the grading kernels). It kills itself when its stub is killed, so jupyter_client's
``kill`` still ends it. Each kernel reads its own TensorFlow thread settings, as TensorFlow reads
them when a kernel first runs an operation, not when it is imported.

When anything fails (no zygote, a refused connection, an import error), the stub execs the
kernel command itself: the page runs as before, only slower. ``BOOK_ZYGOTE=0`` turns the zygote
off. Pages execute the same code with the same seeds either way; only the time differs.
"""

from __future__ import annotations

import inspect
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from typing import Any

from jupyter_client.manager import AsyncKernelManager
from sphinx.application import Sphinx
from sphinx.util import logging

from rnncourse.kernel_fork import is_ipykernel, preload_modules, run_ipykernel, take_environment

logger = logging.getLogger(__name__)
SWITCH = "BOOK_ZYGOTE"  # "0": every page's kernel is exec'd
# Not ipykernel: it reads JPY_PARENT_PID when it is imported (0.06 s once TensorFlow is in)
PRELOAD = ("numpy", "tensorflow", "keras")
SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2")


def _kernel(request, stub, streams, run_ipykernel):
    """In the zygote's fork: become the kernel ``request`` describes (its stub's pidfd: ``stub``,
    the stub's standard input, output and error: ``streams``)."""
    import os
    import select
    import signal
    import threading

    signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # the zygote's choice, not a kernel's
    os.setsid()
    for fd, stream in enumerate(streams):  # the stub's: what jupyter_client gave the kernel
        os.dup2(stream, fd)
    os.dup2(stub, 3)  # every other descriptor of the zygote is closed (its socket, its pipe)
    os.closerange(4, 1 << 16)

    def end_with_the_stub():  # the stub ends when the kernel ends, or when it is killed
        select.select([3], [], [])
        os.write(2, f"page_kernels: kernel {os.getpid()} ends: its stub ended\n".encode())
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=end_with_the_stub, daemon=True).start()
    take_environment(request["env"], request["imported"])  # kernel_fork's, in this program
    os.chdir(request["cwd"])
    run_ipykernel(request["command"])


def _zygote_main(listening, preload, kernel, run_ipykernel):
    """The zygote (``python -c``; standard library only until its first request), serving the
    socket ``listening`` (a descriptor: the build bound it, so no stub comes too early). It ends
    when the build closes its standard input, or dies."""
    import json
    import os
    import signal
    import socket
    import threading
    import traceback

    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # its kernels are reaped as they end
    server = socket.socket(fileno=listening)
    def end_with_the_build():  # os.read: a kernel must not inherit a lock held by this thread
        while os.read(0, 1 << 16):
            pass
        os._exit(0)

    threading.Thread(target=end_with_the_build, daemon=True).start()
    loaded = False
    while True:
        connection, _ = server.accept()
        try:
            message, streams, _, _ = socket.recv_fds(connection, 1 << 16, 3)
            while not message.endswith(b"\n"):
                more = connection.recv(1 << 16)
                if not more:
                    raise EOFError("the request ended early")
                message += more
            request = json.loads(message)
            if not loaded:
                imported = preload_modules(preload)  # kernel_fork's, in this program
                loaded = True
            request["imported"] = imported
            stub = os.pidfd_open(request["stub"])
            pid = os.fork()
            if pid == 0:
                try:
                    server.close()
                    connection.close()
                    kernel(request, stub, streams, run_ipykernel)  # ends the process (SystemExit)
                except SystemExit:
                    raise
                except BaseException:  # noqa: BLE001 (never back into this loop: say why, end)
                    traceback.print_exc()
                    os._exit(1)
            handle = os.pidfd_open(pid)
            socket.send_fds(connection, [b"ok\n"], [handle])
            for fd in (handle, stub, *streams):
                os.close(fd)
        except Exception as error:  # noqa: BLE001 (the stub execs the kernel instead)
            try:
                connection.sendall(f"error {error!r}\n".encode())
            except OSError:
                pass
        finally:
            connection.close()


def _stub_main(path, signals):
    """In the kernel's place (``python -S -c``, argv: the kernel's command): ask the zygote for
    the kernel, pass signals on to it, end when it ends. Exec the command on any failure."""
    import json
    import os
    import select
    import signal
    import socket
    import sys

    command = sys.argv[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.connect(path)
            request = {"stub": os.getpid(), "env": dict(os.environ), "cwd": os.getcwd(), "command": command}
            socket.send_fds(client, [json.dumps(request).encode() + b"\n"], [0, 1, 2])
            reply, fds, _, _ = socket.recv_fds(client, 4096, 1)
        if not reply.startswith(b"ok") or len(fds) != 1:
            raise OSError(reply.decode(errors="replace").strip() or "the zygote ended")
    except OSError as error:
        os.write(2, f"page_kernels: no kernel from the zygote ({error}); starting one\n".encode())
        os.execv(command[0], command)
    kernel, parent = fds[0], os.getppid()
    for name in signals:
        signal.signal(getattr(signal, name), lambda number, frame: signal.pidfd_send_signal(kernel, number))
    while not select.select([kernel], [], [], 1.0)[0]:
        if os.getppid() != parent:  # what started the kernel is gone: an exec'd ipykernel would end
            os.write(2, f"page_kernels: process {parent} that started a kernel ended; the kernel ends\n".encode())
            signal.pidfd_send_signal(kernel, signal.SIGKILL)
            break
    os._exit(0)


class ZygoteKernelManager(AsyncKernelManager):
    """jupyter_client's kernel manager, with the stub in place of an ipykernel command."""

    def format_kernel_cmd(self, extra_arguments: list[str] | None = None) -> list[str]:
        command = super().format_kernel_cmd(extra_arguments)
        path = _ZYGOTE.get("path")
        if path and is_ipykernel(command):
            program = f"{inspect.getsource(_stub_main)}\n_stub_main({path!r}, {SIGNALS!r})"
            return [sys.executable, "-S", "-c", program, *command]
        return command


_ZYGOTE: dict[str, Any] = {}


def enabled() -> bool:
    return (os.environ.get(SWITCH, "1") != "0" and sys.platform.startswith("linux")
            and hasattr(os, "pidfd_open") and hasattr(socket, "send_fds"))


def start_zygote(app: Sphinx, env: Any, docnames: list[str]) -> None:
    """Before the pages are read (and the readers fork): the zygote, if a page may execute."""
    config = getattr(env, "mystnb_config", None)
    if (_ZYGOTE or not docnames or not enabled() or config is None
            or config.execution_mode not in ("cache", "force")):
        return
    folder = tempfile.mkdtemp(prefix="book-zygote-")
    path = os.path.join(folder, "socket")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(path)
        server.listen(64)
        program = "\n".join([inspect.getsource(run_ipykernel), inspect.getsource(preload_modules),
                             inspect.getsource(take_environment), inspect.getsource(_kernel),
                             inspect.getsource(_zygote_main),
                             f"_zygote_main({server.fileno()}, {PRELOAD!r}, _kernel, run_ipykernel)"])
        process = subprocess.Popen([sys.executable, "-c", program], stdin=subprocess.PIPE, cwd="/",
                                   pass_fds=(server.fileno(),))
    _ZYGOTE.update(process=process, folder=folder, path=path)
    _use_zygote_kernels()


def _use_zygote_kernels() -> None:
    """myst-nb's cache mode executes with jupyter-cache's ``single_nb_execution``; give it ours."""
    import myst_nb.core.execute.cache as cache_mode

    plain = cache_mode.single_nb_execution
    if getattr(plain, "_zygote", False):
        return

    def single_nb_execution(*args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("kernel_manager_class", ZygoteKernelManager)
        return plain(*args, **kwargs)

    single_nb_execution._zygote = True
    cache_mode.single_nb_execution = single_nb_execution


def stop_zygote(app: Sphinx | None = None, exception: BaseException | None = None) -> None:
    process = _ZYGOTE.pop("process", None)
    if process is not None:
        process.stdin.close()  # it exits; its kernels have ended with their pages
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    folder = _ZYGOTE.pop("folder", None)
    if folder:
        shutil.rmtree(folder, ignore_errors=True)
    _ZYGOTE.clear()


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("env-before-read-docs", start_zygote, priority=900)  # after the cache's set-up
    app.connect("build-finished", stop_zygote)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
