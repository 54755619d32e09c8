"""A newcomer's fresh virtual environment outside the repository (tests/test_outside.py).

Making it (``python -m venv``, then ``pip install <wheel>[lab]`` with every dependency from
pip's cache) takes about a minute, mostly on one core. When a session will need it, the
``built_book`` fixture starts it in the background as soon as the book is built, while the
book and browser tests run (:class:`BackgroundVenv`); test_outside's ``newcomer`` fixture
takes that environment only if the wheel it installed is, byte for byte, the file the set-up
page links, and otherwise makes its own.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def outside_python() -> str:
    """The interpreter the newcomer's venv is made with (COURSE_OUTSIDE_PYTHON: another one)."""
    return os.environ.get("COURSE_OUTSIDE_PYTHON", sys.executable)


def clean_env(tmp: Path, venv: Path) -> dict[str, str]:
    """A newcomer's environment: the venv first on PATH, nothing of the repository, and
    Jupyter's own folders fresh (pip keeps its cache)."""
    drop = {"PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME", "PYTHONSTARTUP"}
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("JUPYTER")}
    path = [p for p in env.get("PATH", "").split(os.pathsep)
            if p and not Path(p).resolve().is_relative_to(REPO)
            and Path(p).resolve() != Path(sys.executable).parent.resolve()]
    env["PATH"] = os.pathsep.join([str(venv / "bin"), *path])
    for name, folder in (("JUPYTER_CONFIG_DIR", "jupyter-config"), ("JUPYTER_DATA_DIR", "jupyter-data"),
                         ("IPYTHONDIR", "ipython")):
        env[name] = str(tmp / folder)
    return env


def make_venv(tmp: Path, wheel: Path) -> dict:
    """A fresh venv in ``tmp/venv`` with ``wheel[lab]`` pip-installed (the result is returned,
    not checked: ``install`` is pip's CompletedProcess)."""
    venv = tmp / "venv"
    subprocess.run([outside_python(), "-m", "venv", str(venv)], check=True, timeout=300)
    env = clean_env(tmp, venv)
    start = time.monotonic()
    install = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", f"{wheel}[lab]"],
        check=False, cwd=wheel.parent, env=env, capture_output=True, text=True, timeout=1800)
    return {"tmp": tmp, "venv": venv, "env": env, "install": install,
            "seconds": time.monotonic() - start}


class BackgroundVenv:
    """``make_venv`` for a copy of ``wheel``, in a thread started now."""

    def __init__(self, tmp: Path, wheel: Path):
        self.wheel_bytes = wheel.read_bytes()
        copy = tmp / "site-wheel" / wheel.name
        copy.parent.mkdir(parents=True)
        shutil.copyfile(wheel, copy)
        self.name, self.result, self.error = wheel.name, None, None
        self._thread = threading.Thread(target=self._run, args=(tmp, copy), daemon=True)
        self._thread.start()

    def _run(self, tmp: Path, wheel: Path) -> None:
        try:
            self.result = make_venv(tmp, wheel)
        except Exception as error:  # noqa: BLE001 - reported by for_wheel's caller
            self.error = error

    def for_wheel(self, name: str, data: bytes, timeout: float = 1900) -> dict | None:
        """The finished environment if it holds this very wheel, else ``None``."""
        if name != self.name or data != self.wheel_bytes:
            return None
        self._thread.join(timeout)
        return None if self._thread.is_alive() or self.error is not None else self.result
