"""The grading pipeline, end to end, with the real nbgrader commands.

One throw-away course directory gets the course's ``nbgrader_config.py`` and every
assignment of ``solutions/``. One ``generate_assignment`` makes every student release; for
each assignment the submissions of ``tests/submissions.py`` (the solution, the untouched release, realistic
wrong answers) are autograded in one run by ``classgrade``, the function instructors run
(``course.autograde`` calls it), on one local Dask cluster shared by all assignments;
scores are read back from the gradebook, per grade cell.
"""

from __future__ import annotations

import copy
import csv
import html
import os
import re

import pytest
from submissions import EXPECTED, MESSAGES, fill_in

import rnncourse
from rnncourse import course
from rnncourse.grader.version import submission_version, version_warning

pytestmark = pytest.mark.slow

ASSIGNMENTS = sorted(EXPECTED)


def test_every_assignment_has_grading_scenarios():
    assert course.assignments() == ASSIGNMENTS, (
        "each assignment in solutions/ needs its wrong answers in tests/submissions.py"
    )


class Graded:
    """One assignment graded for a class of test submissions."""

    def __init__(self, root, assignment, students, statuses):
        self.root, self.assignment, self.students, self.statuses = root, assignment, students, statuses
        self.max = course.max_scores(root, assignment)

    def scores(self, scenario: str) -> dict[str, float]:
        return course.scores(self.root, self.assignment, self.students[scenario])


def _grade_class(root, assignment, scheduler) -> Graded:
    """Generate the release, submit every scenario of the assignment, autograde them all."""
    release = course.read_notebook(root / "exercises" / assignment / f"{assignment}.ipynb")  # by _grading
    source = course.read_notebook(root / "solutions" / assignment / f"{assignment}.ipynb")
    students = {"blank release": "blank"}
    course.submit(root, assignment, "blank", release)
    for number, (scenario, (edits, _)) in enumerate(EXPECTED[assignment].items()):
        students[scenario] = f"student{number:02d}"
        course.submit(root, assignment, students[scenario], fill_in(release, source, edits))
    if assignment == VERSIONED:  # the solution, handed in from a notebook of another course version
        students["other course version"] = "oldversion"
        course.submit(root, assignment, "oldversion", with_version_cell(fill_in(release, source, []), "0.0.1"))
    statuses = course.autograde(root, assignment, scheduler=scheduler)
    return Graded(root, assignment, students, statuses)


VERSIONED = "rnn_forward"


def with_version_cell(notebook: dict, version: str) -> dict:
    """``notebook`` with the first cell a student notebook of course ``version`` begins with."""
    notebook = copy.deepcopy(notebook)
    notebook["cells"].insert(0, {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
                                 "source": f'# the course version this notebook was made for\nCOURSE_VERSION = "{version}"\n'})
    return notebook


@pytest.fixture(scope="session")
def _grading(tmp_path_factory):
    """One course holding every assignment, and one local Dask cluster that grades them all
    (its workers start once for the session instead of once per assignment)."""
    from rnncourse.classgrade import _client

    root = course.new_course(tmp_path_factory.mktemp("grading") / "course", ASSIGNMENTS)
    course.generate_all(root)  # every student release, by one nbgrader process
    client, cluster = _client(None, os.cpu_count() or 1)
    client.close()
    try:
        yield {"root": root, "scheduler": cluster.scheduler_address, "graded": {}}
    finally:
        cluster.close()


@pytest.fixture
def graded(request, _grading) -> Graded:
    """The assignment's class, graded once per test session whatever order the tests run in.

    (A module-scoped fixture parametrized indirectly would be set up again for every
    scenario, because pytest tells parameters apart by position: a whole class each time.)
    """
    assignment = request.param
    if assignment not in _grading["graded"]:
        _grading["graded"][assignment] = _grade_class(_grading["root"], assignment, _grading["scheduler"])
    return _grading["graded"][assignment]


per_assignment = pytest.mark.parametrize("graded", ASSIGNMENTS, indirect=True)


@per_assignment
def test_solution_scores_full_marks(graded):
    assert graded.scores("correct") == graded.max
    assert sum(graded.max.values()) > 0


@per_assignment
def test_blank_release_scores_zero(graded):
    scores = graded.scores("blank release")
    assert set(scores) == set(graded.max)
    assert sum(scores.values()) == 0, scores


def scenarios():
    return [(a, s) for a in ASSIGNMENTS for s in EXPECTED[a] if s != "correct"]


@pytest.mark.parametrize(
    "graded, scenario", scenarios(), indirect=["graded"], ids=[f"{a}: {s}" for a, s in scenarios()]
)
def test_each_answer_loses_exactly_the_right_grade_cells(graded, scenario):
    assignment = graded.assignment
    _, expected_lost = EXPECTED[assignment][scenario]
    scores = graded.scores(scenario)
    lost = {cell for cell, points in scores.items() if points < graded.max[cell]}
    assert lost == expected_lost, f"{scenario}: scores {scores}"
    for cell in expected_lost:
        assert scores[cell] == 0, f"{scenario}: {cell} should score 0, scored {scores[cell]}"


def _hidden_test_lines(source_notebook: dict, release_notebook: dict) -> list[str]:
    """The lines of the hidden-test blocks that the student's release does not also hold."""
    visible = "\n".join("".join(cell["source"]) for cell in release_notebook["cells"])
    lines = []
    for cell in source_notebook["cells"]:
        text = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        for block in re.findall(r"### BEGIN HIDDEN TESTS\n(.*?)### END HIDDEN TESTS", text, re.DOTALL):
            lines += [line.strip() for line in block.splitlines()
                      if len(line.strip()) > 25 and line.strip() not in visible]
    return lines


@per_assignment
def test_feedback_teaches_and_shows_no_hidden_test_source(graded):
    """Feedback names each mistake in the student's terms and quotes no hidden test."""
    wrong = [s for s, (_, lost) in EXPECTED[graded.assignment].items() if lost]
    students = [graded.students[s] for s in wrong]
    course.nbgrader("generate_feedback", graded.assignment, "--force", root=graded.root)
    source = course.read_notebook(
        graded.root / "solutions" / graded.assignment / f"{graded.assignment}.ipynb")
    release = course.read_notebook(
        graded.root / "exercises" / graded.assignment / f"{graded.assignment}.ipynb")
    hidden = _hidden_test_lines(source, release)
    assert hidden, "the assignment has no hidden tests"
    for student in students:
        page = graded.root / "feedback" / student / graded.assignment / f"{graded.assignment}.html"
        text = html.unescape(re.sub(r"<[^>]+>", "", page.read_text(encoding="utf-8")))
        leaked = [line for line in hidden if line in text]
        assert not leaked, f"feedback for {student} quotes hidden tests: {leaked[:3]}"
        assert "AssertionError" in text, f"feedback for {student} shows no failure message"
    for scenario, fragment in MESSAGES.get(graded.assignment, {}).items():
        page = (graded.root / "feedback" / graded.students[scenario] / graded.assignment
                / f"{graded.assignment}.html")
        text = html.unescape(re.sub(r"<[^>]+>", "", page.read_text(encoding="utf-8")))
        assert fragment in text, f"{scenario}: feedback does not say {fragment!r}"


@per_assignment
def test_export_writes_the_expected_scores(graded):
    course.nbgrader("export", root=graded.root)
    with open(graded.root / "grades.csv", newline="") as handle:
        rows = {row["student_id"]: float(row["score"]) for row in csv.DictReader(handle)
                if row["assignment"] == graded.assignment}
    total = sum(graded.max.values())
    for scenario, student in graded.students.items():
        expected = sum(graded.scores(scenario).values())
        assert rows[student] == pytest.approx(expected), scenario
    assert rows[graded.students["correct"]] == pytest.approx(total)
    assert rows["blank"] == 0


@pytest.mark.parametrize("graded", [VERSIONED], indirect=True)
def test_a_submission_of_another_course_version_is_flagged(graded):
    """The instructor is told (status file) when a notebook names another course version; full marks
    still count, and a submission without the version cell gets no warning."""
    status = graded.statuses[graded.students["other course version"]]
    assert status["state"] == "graded" and status["score"] == sum(graded.max.values())
    assert "0.0.1" in status["warning"] and rnncourse.__version__ in status["warning"]
    assert status["warning"] in status["reason"]
    assert "warning" not in graded.statuses[graded.students["correct"]]


def test_the_course_version_is_read_from_the_first_cell_that_names_it():
    cell = {"cell_type": "code", "source": ["import sys\n", "COURSE_VERSION = '1.2.3'  # built with\n"]}
    assert submission_version({"cells": [{"cell_type": "markdown", "source": 'COURSE_VERSION = "9"'}, cell]}) == "1.2.3"
    assert submission_version({"cells": [{"cell_type": "code", "source": "x = 1"}]}) is None
    assert version_warning({"cells": [cell]}, "1.2.3") is None
    assert version_warning({"cells": []}, "1.2.3") is None
    assert "1.2.3" in version_warning({"cells": [cell]}, "2.0.0")
