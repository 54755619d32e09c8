"""Drive nbgrader on a course directory: one place for how the course calls it.

Used by ``python -m rnncourse.release`` (regenerates ``exercises/``), by
``python -m rnncourse.classgrade`` and by the tests, which build throw-away course
directories and grade real submissions through ``classgrade`` as instructors do.
Also the one place for the repository root (:data:`REPO`) and for TensorFlow's
environment variables (``rnncourse.TF_ENV``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from rnncourse import TF_ENV

REPO = Path(__file__).resolve().parent.parent



def tool_env() -> dict[str, str]:
    """This process's environment with this Python's tools first on PATH and TensorFlow quiet.

    ``alembic`` (called by nbgrader when it creates a gradebook), ``nbgrader`` and the
    Jupyter kernel are then taken from the same environment as this Python.
    """
    env = {**os.environ, **TF_ENV}
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    return env


def nbgrader(*args: str, root: Path, timeout: float = 1800) -> subprocess.CompletedProcess:
    """Run ``nbgrader ARGS`` in course directory ``root`` with this environment's tools."""
    result = subprocess.run(
        [sys.executable, "-m", "nbgrader", *args],
        cwd=root, env=tool_env(), capture_output=True, text=True, timeout=timeout, check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"nbgrader {' '.join(args)} failed (exit {result.returncode}):\n"
            f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
        )
    return result


def assignments(root: Path = REPO) -> list[str]:
    """The assignment ids: one folder per assignment in ``solutions/``."""
    return sorted(p.name for p in (root / "solutions").iterdir() if (p / f"{p.name}.ipynb").is_file())


def new_course(into: Path, assignment_ids: list[str] | None = None) -> Path:
    """Make a course directory at ``into`` with the config and the instructor sources."""
    into.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "nbgrader_config.py", into / "nbgrader_config.py")
    for assignment in assignment_ids or assignments():
        shutil.copytree(REPO / "solutions" / assignment, into / "solutions" / assignment)
    return into


def generate(root: Path, assignment: str) -> Path:
    """``nbgrader generate_assignment``: write the student version into ``root/exercises``."""
    nbgrader("generate_assignment", assignment, "--force", root=root)
    return root / "exercises" / assignment / f"{assignment}.ipynb"


def read_notebook(path: Path) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def write_notebook(path: Path, notebook: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(notebook, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def submit(root: Path, assignment: str, student: str, notebook: dict) -> None:
    """Place a student's notebook where ``nbgrader autograde`` looks for it."""
    write_notebook(root / "submitted" / student / assignment / f"{assignment}.ipynb", notebook)


def submitted_students(root: Path, assignment: str) -> list[str]:
    """The students with a submission of ``assignment`` in ``root/submitted``."""
    folder = root / "submitted"
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if (p / assignment).is_dir())


def autograde(root: Path, assignment: str, *, workers: int | None = None,
              scheduler: str | None = None) -> dict[str, dict]:
    """Grade every submission of ``assignment`` the way instructors do (``classgrade``), on
    ``workers`` local processes or on the Dask cluster at ``scheduler``."""
    from .classgrade import grade_class

    return grade_class(Path(root), assignment, workers=workers, scheduler=scheduler, quiet=True)


def nbgrader_config(root: Path):
    """The course's nbgrader configuration (``root/nbgrader_config.py``), rooted at ``root``."""
    from traitlets.config.loader import PyFileConfigLoader

    config = PyFileConfigLoader("nbgrader_config.py", path=str(root)).load_config()
    config.CourseDirectory.root = str(Path(root).resolve())
    return config


def gradebook(root: Path):
    """nbgrader's gradebook of the course at ``root``, opened through its configured ``db_url``."""
    from nbgrader.api import Gradebook
    from nbgrader.coursedir import CourseDirectory

    return Gradebook(CourseDirectory(config=nbgrader_config(root)).db_url)


def scores(root: Path, assignment: str, student: str) -> dict[str, float]:
    """Points per grade cell (``grade_id`` → score) of one autograded submission."""
    with gradebook(root) as book:
        submission = book.find_submission_notebook(assignment, assignment, student)
        return {grade.name: float(grade.score) for grade in submission.grades}


def max_scores(root: Path, assignment: str) -> dict[str, float]:
    """Points available per grade cell, from the gradebook."""
    with gradebook(root) as book:
        notebook = book.find_notebook(assignment, assignment)
        return {cell.name: float(cell.max_score) for cell in notebook.grade_cells}
