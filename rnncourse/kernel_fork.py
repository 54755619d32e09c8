"""What a kernel forked from a zygote runs: shared by the grading kernels
(:mod:`rnncourse.grader.zygote`) and the book's page kernels (``_ext/page_kernels.py``).

Standard library only, and light to import: the book's build imports it in Sphinx's process.
"""

from __future__ import annotations

import os
import sys


def is_ipykernel(command: list[str]) -> bool:
    """Whether ``command`` is ``<this python> -m ipykernel_launcher ...`` (what a zygote can run)."""
    return (len(command) >= 3 and os.path.realpath(command[0]) == os.path.realpath(sys.executable)
            and command[1:3] == ["-m", "ipykernel_launcher"])


def preload_modules(names):
    """In a zygote: import ``names``; return what the imports put in the environment
    (TensorFlow: ``KMP_*``, ...), which :func:`take_environment` gives each kernel. Standard
    library only."""
    import os

    before = dict(os.environ)
    for name in names:
        __import__(name)
    return {key: value for key, value in os.environ.items() if before.get(key) != value}


def take_environment(env, imported):
    """In a forked kernel: the environment ``env`` of the kernel it replaces, with what the
    zygote's imports added (as an exec'd kernel has it once it imports them)."""
    import os

    os.environ.clear()
    os.environ.update(env)
    for key, value in imported.items():
        os.environ.setdefault(key, value)


def run_ipykernel(command):
    """In a process forked from a zygote: start ``command`` (``python -m ipykernel_launcher ...``)
    in this interpreter, as it would start in a new one. Standard library only: the zygotes'
    programs include its source."""
    import os
    import runpy
    import sys

    numpy = sys.modules.get("numpy")
    if numpy is not None:
        numpy.random.seed()  # each kernel its own global generator, as a new process would
    matplotlib = sys.modules.get("matplotlib")  # TensorFlow imports it
    if matplotlib is not None:
        # matplotlib reads MPLBACKEND when it is imported, which ipykernel sets (when it is not
        # set) only as it starts: without this, plots would go to the Agg backend, not inline
        os.environ.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
        matplotlib.rcParams["backend"] = os.environ["MPLBACKEND"]
    sys.argv = [command[2], *command[3:]]
    sys.path[0] = os.getcwd()  # what `python -m` puts first
    runpy.run_module(command[2], run_name="__main__", alter_sys=True)
    sys.exit(0)
