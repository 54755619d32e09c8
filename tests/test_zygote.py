"""Kernels forked from the zygote (``rnncourse.grader.zygote``) are as isolated as exec'd ones.

Each test starts real sandboxed kernels with ``SandboxedKernelManager`` and asks them what they
see: the zygote's kernels are process 2 of a sandbox of their own with no capability left, see
none of another kernel's files or processes, get a fresh NumPy generator, and the environment an
exec'd kernel gets. A zygote that cannot fork a kernel costs nothing but time: the kernel is
exec'd in its sandbox instead.
"""

from __future__ import annotations

import json
import os
import sys

import pytest
from jupyter_core.utils import run_sync

from rnncourse.grader import isolation_available, zygote
from rnncourse.grader import sandbox as sandbox_module

pytestmark = [
    pytest.mark.skipif(not isolation_available()["allow_list"], reason="no bubblewrap sandbox on this machine"),
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux namespaces"),
]

LOOK = """
import json, os, sys
preloaded = 'tensorflow' in sys.modules
import numpy as np
import tensorflow  # it adds to the environment
status = dict(line.split(':', 1) for line in open('/proc/self/status').read().splitlines())
import ctypes
child = os.fork()  # can it make a user namespace of its own (where it would hold capabilities)?
if child == 0:
    os._exit(1 if ctypes.CDLL(None, use_errno=True).unshare(0x10000000) == 0 else 0)
new_user_namespace = os.waitstatus_to_exitcode(os.waitpid(child, 0)[1]) == 1
tmp, home = sorted(os.listdir('/tmp')), sorted(os.listdir(os.path.expanduser('~')))
for folder in ('/tmp', os.path.expanduser('~')):  # for the next kernel to find (it must not)
    open(os.path.join(folder, f'left-by-{os.urandom(4).hex()}'), 'w').close()
print('LOOK ' + json.dumps({
    'pid': os.getpid(), 'ppid': os.getppid(), 'uid': os.getuid(),
    'processes': sorted(int(p) for p in os.listdir('/proc') if p.isdigit()),
    'caps': {k: int(status[k], 16) for k in ('CapEff', 'CapPrm', 'CapAmb', 'CapInh')},
    'no_new_privs': int(status['NoNewPrivs']),
    'tmp': tmp, 'home': home,
    'cwd': os.getcwd(), 'environ': {k: v for k, v in os.environ.items()},
    'initial_environ': open('/proc/self/environ', 'rb').read().decode(errors='replace'),
    'random': np.random.rand(), 'tensorflow_loaded': preloaded,
    'new_user_namespace': new_user_namespace,
    'matplotlib_backend': __import__('matplotlib').get_backend(),
}))
"""


def look(**manager_options) -> dict:
    """What a new sandboxed kernel reports of itself (the code above, run as a cell)."""
    manager = sandbox_module.SandboxedKernelManager(kernel_name="python3", **manager_options)
    run_sync(manager.start_kernel)()
    client = manager.blocking_client()
    client.start_channels()
    lines = []
    try:
        client.wait_for_ready(timeout=180)
        reply = client.execute_interactive(LOOK, timeout=60, output_hook=lambda message: lines.append(
            message["content"].get("text", "")) if message["msg_type"] == "stream" else None)
        assert reply["content"]["status"] == "ok", reply["content"]
    finally:
        client.stop_channels()
        run_sync(manager.shutdown_kernel)(now=True)
    return json.loads("".join(lines).split("LOOK ", 1)[1])


@pytest.fixture(scope="module")
def kernels():
    """Two kernels forked from this process's zygote, one after the other, and one exec'd."""
    assert zygote.enabled()
    forked = [look(), look()]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(zygote.SWITCH, "0")
        execd = look()
    return forked, execd


def test_a_forked_kernel_is_process_2_of_its_own_sandbox_and_sees_nothing_else(kernels):
    forked, execd = kernels
    for seen in forked:
        assert seen["pid"] == 2 and seen["processes"] == [1, 2], seen["processes"]
        assert seen["ppid"] == 0  # its parent (the zygote's helper) is outside the sandbox's PID namespace
        assert seen["tensorflow_loaded"]  # imported before the kernel was forked
        assert seen["cwd"] == sandbox_module.WORK
    assert execd["ppid"] == 1 and execd["processes"] == [1, 2]  # bwrap's process 1, the kernel


def test_a_forked_kernel_holds_no_capability(kernels):
    forked, execd = kernels
    for seen in [*forked, execd]:
        assert {k: seen["caps"][k] for k in ("CapEff", "CapPrm", "CapAmb")} == {"CapEff": 0, "CapPrm": 0,
                                                                                "CapAmb": 0}, seen["caps"]
    for seen in forked:
        assert seen["new_user_namespace"] == execd["new_user_namespace"]  # (bwrap's --disable-userns without root)
        assert seen["caps"]["CapInh"] == 0
        assert seen["no_new_privs"] == 1  # no setuid program in /usr can give one back
        if sandbox_module.sandbox_mode() == "root":
            assert seen["uid"] >= sandbox_module.UID_BASE
    if sandbox_module.sandbox_mode() == "root":
        assert forked[0]["uid"] != forked[1]["uid"]


def test_the_next_kernel_finds_nothing_the_last_one_left(kernels):
    forked, _ = kernels
    # a private /tmp and home each: the second finds no file the first left (in /tmp, only the way
    # to its own sockets; in its home, its working folder and IPython's)
    sockets = os.path.basename(sandbox_module._kernels_folder())
    for seen in forked:
        assert set(seen["tmp"]) <= {sockets}, seen["tmp"]
        assert set(seen["home"]) <= {os.path.basename(sandbox_module.WORK), ".ipython"}, seen["home"]
    assert forked[0]["random"] != forked[1]["random"]  # NumPy reseeded after the fork


def test_a_forked_kernel_gets_the_environment_an_execd_one_gets(kernels):
    forked, execd = kernels
    for seen in forked:
        assert seen["environ"] == execd["environ"]
        assert seen["matplotlib_backend"] == execd["matplotlib_backend"]   # TensorFlow imported it early
        assert "RNNCOURSE" not in seen["initial_environ"] and "PYTEST" not in seen["initial_environ"]


def test_a_zygote_that_cannot_fork_costs_only_time(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("no zygote today")

    monkeypatch.setattr(zygote, "fork_kernel", broken)
    seen = look()
    assert seen["ppid"] == 1 and seen["pid"] == 2  # exec'd in its sandbox instead

