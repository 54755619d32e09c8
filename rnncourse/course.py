"""Drive nbgrader on a course directory: one place for how the course calls it.

Used by ``python -m rnncourse.release`` (regenerates ``exercises/``) and by the
tests, which build throw-away course directories and grade real submissions.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def nbgrader(*args: str, root: Path, timeout: float = 1800) -> subprocess.CompletedProcess:
    """Run ``nbgrader ARGS`` in course directory ``root`` with this environment's tools.

    ``alembic`` (called by nbgrader when it creates a gradebook) and the Jupyter
    kernel are taken from the same environment as this Python.
    """
    bin_dir = str(Path(sys.executable).parent)
    env = dict(os.environ)
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    env["TF_ENABLE_ONEDNN_OPTS"] = "0"
    result = subprocess.run(
        [sys.executable, "-m", "nbgrader", *args],
        cwd=root, env=env, capture_output=True, text=True, timeout=timeout,
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


def autograde(root: Path, assignment: str, *extra: str,
              workers: int = 1) -> list[subprocess.CompletedProcess]:
    """``nbgrader autograde`` every submission of ``assignment``.

    With ``workers`` > 1 the class is split into that many groups, each graded by its own
    ``nbgrader autograde`` process (``student_id_exclude`` leaves out the other groups), all
    at once; they share the gradebook that ``generate_assignment`` created.
    """
    students = submitted_students(root, assignment)
    groups = [students[k::workers] for k in range(max(1, min(workers, len(students))))]
    if len(groups) == 1:
        return [nbgrader("autograde", assignment, "--force", *extra, root=root)]

    def run(group: list[str]) -> subprocess.CompletedProcess:
        others = ",".join(s for s in students if s not in group)
        return nbgrader("autograde", assignment, "--force", *extra,
                        f"--CourseDirectory.student_id_exclude={others}", root=root)

    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(len(groups)) as pool:
        return list(pool.map(run, groups))


def scores(root: Path, assignment: str, student: str) -> dict[str, float]:
    """Points per grade cell (``grade_id`` → score) of one autograded submission."""
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gradebook:
        submission = gradebook.find_submission_notebook(assignment, assignment, student)
        return {grade.name: float(grade.score) for grade in submission.grades}


def max_scores(root: Path, assignment: str) -> dict[str, float]:
    """Points available per grade cell, from the gradebook."""
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gradebook:
        notebook = gradebook.find_notebook(assignment, assignment)
        return {cell.name: float(cell.max_score) for cell in notebook.grade_cells}
