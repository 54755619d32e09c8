"""Shared fixtures. tests/submissions.py is imported by the grading tests as a plain module."""

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from rnncourse import TF_ENV

sys.path.insert(0, str(Path(__file__).parent))
from newcomer import BackgroundVenv

REPO = Path(__file__).resolve().parent.parent
BOOK_TIMEOUT = 2400  # seconds for the whole build, from the start of the session


# The book takes minutes and needs both cores for a moment only now and then (Sphinx's serial
# steps, its last pages): it starts in the background as soon as the tests are collected, and
# the modules that read it run last, while the other tests use the time.
_BOOK: dict = {}


def _start_book_build() -> None:
    if "process" in _BOOK:
        return
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""), **TF_ENV}
    # open for the whole session (read by the fixture, closed at the end)
    out, err = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")  # noqa: SIM115
    _BOOK.update(out=out, err=err, args=[os.path.join(bin_dir, "jupyter-book"), "build", ".", "-n", "-W",
                                          "--keep-going"])
    _BOOK["started"] = time.time()
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
    _BOOK["newcomer"] = any("newcomer" in getattr(item, "fixturenames", ()) for item in items)
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


def _start_newcomer_venv(tmp_path_factory) -> None:
    """Begin the newcomer's venv (tests/newcomer.py) with the wheel the book just built, so
    that the minute pip takes overlaps the book and browser tests instead of following them."""
    wheels = sorted((REPO / "_build" / "html" / "packages").glob("rnncourse-*.whl"))
    if _BOOK.get("newcomer") and "newcomer_venv" not in _BOOK and len(wheels) == 1:
        _BOOK["newcomer_venv"] = BackgroundVenv(tmp_path_factory.mktemp("newcomer"), wheels[0])


@pytest.fixture(scope="session")
def book_started(built_book) -> float:
    """When (``time.time()``) the session's book build began."""
    return _BOOK["started"]


@pytest.fixture(scope="session")
def newcomer_venv(built_book):
    """The venv begun when the book was built, or ``None`` (test_outside then makes one)."""
    return _BOOK.get("newcomer_venv")


@pytest.fixture(scope="session")
def built_book(tmp_path_factory):
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
    if process.returncode == 0:
        _start_newcomer_venv(tmp_path_factory)
    outputs = []
    for handle in (_BOOK["out"], _BOOK["err"]):
        handle.seek(0)
        outputs.append(handle.read())
    return subprocess.CompletedProcess(_BOOK["args"], process.returncode, *outputs)
