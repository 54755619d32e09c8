"""Shared fixtures. tests/submissions.py is imported by the grading tests as a plain module."""

import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from rnncourse import TF_ENV

sys.path.insert(0, str(Path(__file__).parent))

REPO = Path(__file__).resolve().parent.parent
BOOK_TIMEOUT = 2400  # seconds for the whole build, from the start of the session


# The book takes minutes and needs both cores for a moment only now and then (Sphinx's serial
# steps, its last pages): it starts in the background as soon as the tests are collected, and
# the modules that read it run last, while the other tests use the time.
_BOOK: dict = {}


def _start_book_build() -> None:
    if _BOOK:
        return
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""), **TF_ENV}
    # open for the whole session (read by the fixture, closed at the end)
    out, err = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")  # noqa: SIM115
    _BOOK.update(out=out, err=err, args=[os.path.join(bin_dir, "jupyter-book"), "build", ".", "-n", "-W",
                                          "--keep-going"])
    _BOOK["process"] = subprocess.Popen(_BOOK["args"], cwd=REPO, env=env, stdout=out, stderr=err, text=True,
                                        start_new_session=True)


def _uses_book(item) -> bool:
    return "built_book" in getattr(item, "fixturenames", ())


def pytest_collection_modifyitems(session, config, items):
    """Put the modules that read the book last (each module kept whole) and start the build."""
    def module(item):
        return getattr(getattr(item, "module", None), "__name__", None)

    readers = {module(item) for item in items if _uses_book(item)}
    if not readers:
        return
    items[:] = ([i for i in items if module(i) not in readers] + [i for i in items if module(i) in readers])
    if not config.getoption("collectonly"):
        _start_book_build()


def pytest_unconfigure(config):
    process = _BOOK.get("process")
    if process is not None and process.poll() is None:  # the session ended early (-x, Ctrl-C)
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=60)
    for key in ("out", "err"):
        if key in _BOOK:
            _BOOK[key].close()


@pytest.fixture(scope="session")
def built_book():
    """`jupyter-book build . -n -W --keep-going`, as `make book` runs it (cached pages reused).

    Returns the finished process (``returncode``, ``stdout``, ``stderr``); the site is in
    _build/html. The build was started when the tests were collected.
    """
    _start_book_build()
    process = _BOOK["process"]
    try:
        process.wait(timeout=BOOK_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    outputs = []
    for handle in (_BOOK["out"], _BOOK["err"]):
        handle.seek(0)
        outputs.append(handle.read())
    return subprocess.CompletedProcess(_BOOK["args"], process.returncode, *outputs)
