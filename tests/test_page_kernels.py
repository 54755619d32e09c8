"""_ext/page_kernels.py: the book's page kernels, forked from a zygote, behave as exec'd ones.

Each test runs a small notebook with nbclient (as myst-nb does through jupyter-cache), once with
:class:`ZygoteKernelManager` and the zygote, once with jupyter_client's own manager, and compares
what the kernels report of themselves.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import types
from pathlib import Path

import nbformat
import pytest
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "_ext"))
import page_kernels

pytestmark = pytest.mark.skipif(not page_kernels.enabled(), reason="Linux with pidfds")

LOOK = """
import json, os, sys, subprocess
import numpy as np
import tensorflow as tf
import matplotlib.pyplot as plt
tf.reduce_sum(tf.ones((64, 64)) @ tf.ones((64, 64))).numpy()   # TensorFlow starts its thread pools
plt.plot([0, 1], [1, 0])
plt.show()
print('LOOK ' + json.dumps({
    'pid': os.getpid(), 'ppid': os.getppid(), 'cwd': os.getcwd(), 'argv0': sys.argv[0],
    'environ': dict(os.environ), 'random': np.random.rand(),
    'backend': __import__('matplotlib').get_backend(),
    'threads': len(os.listdir('/proc/self/task')),
    'subprocess': subprocess.run(['true']).returncode,
    'streams': [os.readlink(f'/proc/self/fd/{fd}').split(':')[0] for fd in (0, 1, 2)],
    'fds': sorted(int(fd) for fd in os.listdir('/proc/self/fd')),
}))
"""


def run(source: str, cwd: Path, manager=None, **options) -> tuple[dict, nbformat.NotebookNode]:
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source)])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    client = NotebookClient(notebook, timeout=120, kernel_name="python3",
                            kernel_manager_class=manager or AsyncKernelManager,
                            resources={"metadata": {"path": str(cwd)}}, **options)
    client.execute()
    text = "".join(output.get("text", "") for output in notebook.cells[0].outputs if output.output_type == "stream")
    seen = json.loads(text.split("LOOK ", 1)[1]) if "LOOK " in text else {}
    return seen, notebook


@pytest.fixture
def zygote(tmp_path, monkeypatch):
    monkeypatch.setenv("TF_NUM_INTRAOP_THREADS", "1")
    monkeypatch.setenv("TF_NUM_INTEROP_THREADS", "1")
    env = types.SimpleNamespace(mystnb_config=types.SimpleNamespace(execution_mode="cache"))
    page_kernels.start_zygote(None, env, ["chapters/page"])
    yield page_kernels._ZYGOTE["process"]
    page_kernels.stop_zygote()


def test_a_forked_page_kernel_sees_what_an_execd_one_sees(zygote, tmp_path, monkeypatch):
    forked, notebook = run(LOOK, tmp_path, page_kernels.ZygoteKernelManager)
    again, _ = run(LOOK, tmp_path, page_kernels.ZygoteKernelManager)
    execd, execd_notebook = run(LOOK, tmp_path)
    assert forked["ppid"] == again["ppid"] == zygote.pid          # forked, not exec'd
    assert execd["ppid"] != zygote.pid
    for key in ("cwd", "argv0", "backend", "subprocess", "streams"):
        assert forked[key] == execd[key], key
    assert len(forked["fds"]) == len(execd["fds"]) + 1   # and its stub's pidfd: none of the zygote's
    assert forked["environ"] == execd["environ"]
    assert forked["random"] != again["random"]
    # the plot is an inline image, as from an exec'd kernel (TensorFlow imported matplotlib early)
    kinds = [sorted(output.get("data", {})) for output in notebook.cells[0].outputs]
    assert kinds == [sorted(output.get("data", {})) for output in execd_notebook.cells[0].outputs]
    assert ["image/png", "text/plain"] in kinds

    monkeypatch.setenv("TF_NUM_INTRAOP_THREADS", "3")   # read when the kernel starts TensorFlow
    more, _ = run(LOOK, tmp_path, page_kernels.ZygoteKernelManager)
    assert more["threads"] > forked["threads"]


def test_an_interrupt_reaches_the_kernel_and_a_killed_stub_takes_the_kernel_with_it(zygote, tmp_path):
    manager = page_kernels.ZygoteKernelManager(kernel_name="python3")
    from jupyter_core.utils import run_sync

    run_sync(manager.start_kernel)(cwd=str(tmp_path))
    client = manager.blocking_client()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=120)
        lines = []
        hook = (lambda message: lines.append(message["content"].get("text", ""))
                if message["msg_type"] == "stream" else None)
        client.execute_interactive("import os; print('PID', os.getpid())", timeout=60, output_hook=hook)
        kernel = int("".join(lines).split("PID", 1)[1])
        message = client.execute("import time; time.sleep(60)")
        time.sleep(2)
        run_sync(manager.interrupt_kernel)()
        reply = client.get_shell_msg(timeout=30)
        assert reply["parent_header"]["msg_id"] == message
        assert reply["content"]["status"] == "error" and reply["content"]["ename"] == "KeyboardInterrupt"
        stub = manager.provisioner.process.pid
        assert stub != kernel
        os.kill(stub, signal.SIGKILL)
        for _ in range(100):   # the zygote reaps it
            if not os.path.exists(f"/proc/{kernel}"):
                break
            time.sleep(0.1)
        assert not os.path.exists(f"/proc/{kernel}")
    finally:
        client.stop_channels()
        run_sync(manager.shutdown_kernel)(now=True)


def test_without_a_zygote_the_stub_starts_the_kernel_itself(tmp_path, monkeypatch):
    monkeypatch.setitem(page_kernels._ZYGOTE, "path", str(tmp_path / "no-socket"))
    seen, _ = run(LOOK, tmp_path, page_kernels.ZygoteKernelManager)
    assert seen["cwd"] == str(tmp_path)
    assert seen["ppid"] == os.getpid()   # the stub this process started became the kernel


def test_the_build_uses_the_zygote_s_kernel_manager(zygote, monkeypatch):
    import myst_nb.core.execute.cache as cache_mode
    from jupyter_cache.executors import utils

    managers = []
    monkeypatch.setattr(utils, "executenb", lambda notebook, **kwargs: managers.append(
        kwargs["kernel_manager_class"]))
    cache_mode.single_nb_execution(nbformat.v4.new_notebook(), cwd=None, timeout=10, allow_errors=False)
    assert managers == [page_kernels.ZygoteKernelManager]


ORPHAN = """
import sys
sys.path.insert(0, {ext!r})
import page_kernels
from jupyter_core.utils import run_sync
page_kernels._ZYGOTE["path"] = {path!r}
manager = page_kernels.ZygoteKernelManager(kernel_name="python3")
run_sync(manager.start_kernel)()
client = manager.blocking_client()
client.start_channels()
client.wait_for_ready(timeout=120)
client.execute_interactive("import os; print('PID', os.getpid())", timeout=60)
import os
os._exit(0)   # gone without shutting its kernel down (a reader that Sphinx terminated)
"""


def test_a_kernel_ends_when_the_process_that_started_it_ends(zygote, tmp_path):
    import subprocess

    done = subprocess.run([sys.executable, "-c", ORPHAN.format(ext=str(Path(page_kernels.__file__).parent),
                                                              path=page_kernels._ZYGOTE["path"])],
                          capture_output=True, text=True, timeout=180, check=True)
    kernel = int(done.stdout.split("PID", 1)[1].split()[0])
    for _ in range(100):
        if not os.path.exists(f"/proc/{kernel}"):
            break
        time.sleep(0.1)
    assert not os.path.exists(f"/proc/{kernel}")


def test_a_kernel_that_cannot_start_fails_alone_and_the_zygote_goes_on(zygote, tmp_path):
    import select
    import socket

    request = {"stub": os.getpid(), "env": dict(os.environ), "cwd": str(tmp_path / "gone"),
               "command": [sys.executable, "-m", "ipykernel_launcher", "-f", str(tmp_path / "k.json")]}
    with open(os.devnull, "rb") as null, socket.socket(socket.AF_UNIX) as client:
        client.connect(page_kernels._ZYGOTE["path"])
        socket.send_fds(client, [json.dumps(request).encode() + b"\n"], [null.fileno()] * 3)
        reply, fds, _, _ = socket.recv_fds(client, 4096, 1)
    assert reply.startswith(b"ok") and len(fds) == 1
    assert select.select([fds[0]], [], [], 60)[0], "the child that could not start did not end"
    os.close(fds[0])
    children = [int(p) for p in os.listdir("/proc") if p.isdigit() and _parent(int(p)) == zygote.pid]
    assert children == []   # it ended: it did not go on serving the zygote's socket
    seen, _ = run(LOOK, tmp_path, page_kernels.ZygoteKernelManager)
    assert seen["ppid"] == zygote.pid


def _parent(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return int(stat.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None
