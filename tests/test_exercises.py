"""exercises/ is exactly what nbgrader generates from solutions/, and gives nothing away."""

from __future__ import annotations

import json
import re

import pytest

from rnncourse import course

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    root = course.new_course(tmp_path_factory.mktemp("release") / "course")
    return course.generate_all(root)


def test_every_solution_has_a_committed_release(generated):
    released = sorted(p.name for p in (course.REPO / "exercises").iterdir() if p.is_dir())
    assert released == sorted(generated), "run `make exercises` and commit exercises/"


@pytest.mark.parametrize("assignment", course.assignments())
def test_release_equals_what_nbgrader_generates(generated, assignment):
    committed = course.REPO / "exercises" / assignment / f"{assignment}.ipynb"
    assert committed.read_text(encoding="utf-8") == generated[assignment].read_text(encoding="utf-8"), (
        f"exercises/{assignment}/ differs from what nbgrader generates from solutions/: "
        "run `make exercises` and commit the result (never edit exercises/ by hand)"
    )


@pytest.mark.parametrize("assignment", course.assignments())
def test_release_holds_no_solution_and_no_hidden_test(assignment):
    text = (course.REPO / "exercises" / assignment / f"{assignment}.ipynb").read_text(encoding="utf-8")
    for marker in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS"):
        assert marker not in text
    source = course.read_notebook(course.REPO / "solutions" / assignment / f"{assignment}.ipynb")
    release = json.loads(text)
    # every line written between the solution markers is gone from the student's version,
    # unless the instructor's notebook also writes it outside the solutions (a visible check
    # may well contain `H = U.shape[0]` too)
    student_code = "\n".join("".join(c["source"]) for c in release["cells"])
    blocks = re.compile(r"### BEGIN SOLUTION\n(.*?)### END SOLUTION", re.DOTALL)
    hidden = re.compile(r"### BEGIN HIDDEN TESTS\n.*?### END HIDDEN TESTS", re.DOTALL)
    codes = ["".join(cell["source"]) for cell in source["cells"]]
    outside = "\n".join(hidden.sub("", blocks.sub("", code)) for code in codes)
    solution_lines = [line.strip() for code in codes for body in blocks.findall(code)
                      for line in body.splitlines()]
    assert solution_lines, "the instructor notebook has no solution blocks"
    for line in solution_lines:
        if len(line) > 12 and line not in outside:
            assert line not in student_code, f"solution line in release: {line}"
    assert "raise NotImplementedError()" in student_code


@pytest.mark.parametrize("folder", ["solutions", "exercises"])
def test_notebooks_are_committed_without_outputs(folder):
    for path in (course.REPO / folder).rglob("*.ipynb"):
        for cell in course.read_notebook(path)["cells"]:
            assert not cell.get("outputs"), f"{path} has stored outputs"
            assert cell.get("execution_count") is None, f"{path} has execution counts"
