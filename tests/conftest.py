"""Shared fixtures. tests/submissions.py is imported by the grading tests as a plain module."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from rnncourse import TF_ENV

sys.path.insert(0, str(Path(__file__).parent))

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def built_book():
    """`jupyter-book build . -n -W --keep-going`, as `make book` runs it (cached pages reused).

    Returns the finished process; the site is in _build/html.
    """
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""), **TF_ENV}
    return subprocess.run(
        [os.path.join(bin_dir, "jupyter-book"), "build", ".", "-n", "-W", "--keep-going"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=1800, check=False,
    )
