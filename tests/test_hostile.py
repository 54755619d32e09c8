"""Hostile submissions (issue 7), graded beside a correct one in one class run.

One throw-away course for ``rnn_forward``; every submission of ``tests/hostile.py`` is
autograded by ``python -m rnncourse.classgrade`` (two Dask workers, each job nbgrader's
autograde of one submission in a warm worker process) with a short cell time limit (10 s), a 3 GB memory cap
and a 120 s CPU cap written into the course's ``nbgrader_config.py``. Then: each grade
cell's score in the gradebook, the reason in each status file, the correct student's
clean status, output bounded, isolation, a second run that skips what is done and,
forced, gives the same scores, and part of the class graded again with ``--ship``.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile

import hostile
import numpy as np
import pytest
from hostile import FULL, HOSTILE, REASON, SANDBOXED, hand_in

from rnncourse import TF_ONE_THREAD, course
from rnncourse.grader import isolation_available, suspicious_code, zygote
from rnncourse.grader import sandbox as sandbox_module
from rnncourse.grading import FLOAT64_TOL, check_array

ASSIGNMENT = "rnn_forward"
TEST_LIMITS = """
# tests/test_hostile.py: short limits so that the hostile class grades in minutes
c.GuardedExecute.timeout = 10
c.GuardedExecute.responsive_timeout = 3
c.SandboxedKernelManager.memory_limit = 3 * 1024**3
c.SandboxedKernelManager.cpu_limit = 120
c.SandboxedKernelManager.process_limit = 64  # a TensorFlow kernel runs ~20 threads on 2 cores
c.SandboxedKernelManager.tmp_size = 64 * 1024**2
"""
SECRET = "RNNCOURSE_TEST_INSTRUCTOR_SECRET"  # in the grader's environment, never in a kernel's
AVAILABLE = isolation_available()
#: The whole class: the cases whose limit only the sandbox enforces join where it is there.
CLASS = {**HOSTILE, **(SANDBOXED if AVAILABLE["own_user"] or AVAILABLE["allow_list"] else {})}


def classgrade(root, *args, env=None):
    result = subprocess.run([sys.executable, "-m", "rnncourse.classgrade", ASSIGNMENT, "--root", str(root),
                             "--workers", "2", *args], env={**course.tool_env(), SECRET: "s3cret", **(env or {})},
                            capture_output=True, text=True,
                            timeout=1800, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def status(root, student):
    return json.loads((root / "grading-status" / ASSIGNMENT / f"{student}.json").read_text())


def hostile_class(folder, students):
    """A throw-away course with the test limits and these students' hostile submissions."""
    root = course.new_course(folder, [ASSIGNMENT])
    with open(root / "nbgrader_config.py", "a") as handle:
        handle.write(TEST_LIMITS)
    release = course.read_notebook(course.generate(root, ASSIGNMENT))
    source = course.read_notebook(root / "solutions" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb")
    for student in students:
        hand_in(root, ASSIGNMENT, student, CLASS[student][0](release, source))
    return root


@pytest.fixture(scope="module")
def seeded():
    """Copies of the course's hidden tests and a gradebook elsewhere on the machine (in /tmp and
    in another folder), and a port listening on the host's 127.0.0.1, for the search case."""
    folders = [tempfile.mkdtemp(prefix="rnncourse-seed-"), tempfile.mkdtemp(prefix="rnncourse-seed-", dir="/var/tmp")]
    for folder in folders:
        shutil.copytree(course.REPO / "solutions" / ASSIGNMENT, os.path.join(folder, "solutions", ASSIGNMENT))
        shutil.copy(course.REPO / "solutions" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", os.path.join(folder, "backup.ipynb"))
        open(os.path.join(folder, "gradebook.db"), "wb").close()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(0.1)
    hostile.HOST_PORT[0] = listener.getsockname()[1]
    yield folders, listener
    listener.close()
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def graded(tmp_path_factory, seeded):
    root = hostile_class(tmp_path_factory.mktemp("hostile") / "course", CLASS)
    output = classgrade(root)
    return root, output


def scores(root, student):
    try:
        return course.scores(root, ASSIGNMENT, student)
    except Exception as error:  # noqa: BLE001
        return {"error": repr(error)}


# --- the class run ------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("student", list(HOSTILE) + list(SANDBOXED))
def test_each_submission_scores_exactly_what_it_deserves(graded, student):
    if student not in CLASS:
        pytest.skip("no sandbox here: this case would hit the machine itself")
    root, _ = graded
    assert scores(root, student) == CLASS[student][1], status(root, student).get("reason")


@pytest.mark.slow
@pytest.mark.parametrize("student", list(REASON))
def test_the_status_file_says_why(graded, student):
    if student not in CLASS:
        pytest.skip("no sandbox here: this case would hit the machine itself")
    root, _ = graded
    st = status(root, student)
    assert st["state"] in ("graded", "failed") and st["seconds"] is not None
    wanted = REASON[student] if isinstance(REASON[student], list) else [REASON[student]]
    for fragment in wanted:
        assert fragment in st["reason"], f"{student}: {fragment!r} not in {st['reason']!r}"


@pytest.mark.slow
def test_unreadable_submissions_fail_with_zero_in_the_export(graded):
    root, _ = graded
    for student in ("invalid_json", "missing_notebook"):
        assert status(root, student)["state"] == "failed"
    course.nbgrader("export", root=root)


    with open(root / "grades.csv", newline="") as handle:
        rows = {row["student_id"]: float(row["score"]) for row in csv.DictReader(handle)}
    assert rows["invalid_json"] == 0 and rows["missing_notebook"] == 0
    assert rows["correct"] == sum(FULL.values())


@pytest.mark.slow
def test_the_correct_students_are_untouched(graded):
    root, output = graded
    for student in ("correct", "tf_logs"):
        st = status(root, student)
        assert st["state"] == "graded" and st["reason"] == "graded 8/8", st["reason"]
        assert all("error" not in test for test in st["tests"].values())
    assert "[" in output and "correct" in output  # one progress line per submission


@pytest.mark.slow
def test_megabytes_of_output_are_cut(graded):
    root, _ = graded
    notebook = root / "autograded" / "prints_megabytes" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    assert notebook.stat().st_size < 200_000


def printed(root, student, marker):
    """What a submission printed after ``marker`` when graded (the outputs of all its cells)."""
    notebook = course.read_notebook(root / "autograded" / student / ASSIGNMENT / f"{ASSIGNMENT}.ipynb")
    lines = [o["text"] for c in notebook["cells"] for o in c.get("outputs", [])
             if o.get("name") == "stdout" and marker in "".join(o["text"])]
    return ["".join(line).split(marker, 1)[1] for line in lines]


def snooped(root, student="snoop", marker="SNOOP "):
    """What the snoop submission's extra cell found (the JSON it printed when graded)."""
    return json.loads(printed(root, student, marker)[0])


@pytest.mark.slow
def test_student_code_is_isolated(graded):
    root, _ = graded
    found = snooped(root)
    assert found["memory_limit"] == 3 * 1024**3 and found["cpu_limit"] == 120
    available = isolation_available()
    if available["no_network"]:
        assert found["network"] != "connected"
    if available["allow_list"]:  # nothing of the course is in the kernel's view at all
        for key in ("../../../solutions", "repo solutions", "../../../submitted", "../../../gradebook.db"):
            assert found[key] == "FileNotFoundError", (key, found[key])
        assert found["write"] != "written" and not (root / "planted.txt").exists()


@pytest.mark.slow
def test_a_search_of_the_whole_machine_finds_nothing(graded, seeded):
    """The file system searched for hidden tests and gradebooks (copies seeded in /tmp and in
    /var/tmp, the course itself under pytest's /tmp, the repository), the machine's secrets
    read, a port on the host's loopback called: with the sandbox, nothing is found or reached."""
    root, _ = graded
    if not AVAILABLE["allow_list"]:
        pytest.skip("no sandbox here: the kernel sees what the grading user sees")
    found = snooped(root, "search", "SEARCH ")
    assert "walk" not in found  # the whole view was searched, not cut short
    assert found["course_hidden"] == [], found["course_hidden"]
    # the only ones in view are nbgrader's own examples, in the Python environment's nbgrader package
    nbgrader_package = os.path.join(sys.prefix, "lib")
    for path in found["hidden_tests"] + found["gradebooks"]:
        assert path.startswith(nbgrader_package) and "/site-packages/nbgrader/" in path, path
    for key in ("proc1_environ", "shadow", "home_ssh", "root_ssh"):
        assert found[key] in ("FileNotFoundError", "PermissionError"), (key, found[key])
    assert found["loopback"] in ("OSError", "ConnectionRefusedError"), found["loopback"]
    with pytest.raises(TimeoutError):
        seeded[1].accept()  # nothing ever reached the host's port
    assert found["uid"] != 0
    # forked from the worker's zygote: its parent is outside the sandbox (an exec'd kernel's is bwrap, 1)
    assert found["ppid"] == (0 if zygote.enabled() else 1)
    assert SECRET not in json.dumps(found) and "s3cret" not in json.dumps(found)
    allowed = {"PATH", "HOME", "TMPDIR", "LANG", "MPLCONFIGDIR", *sandbox_module.ENV_ALLOWED,
               *sandbox_module.TF_ENV}
    set_by_ipykernel = {"CLICOLOR", "CLICOLOR_FORCE", "FORCE_COLOR", "GIT_PAGER", "MPLBACKEND", "PAGER", "PWD",
                        "PYDEVD_USE_FRAME_EVAL", "TERM",  # and by importing TensorFlow:
                        "ENABLE_RUNTIME_UPTIME_TELEMETRY", "HDF5_PLUGIN_PATH", "KMP_DUPLICATE_LIB_OK",
                        "KMP_INIT_AT_FORK", "TF2_BEHAVIOR", "TPU_ML_PLATFORM", "TPU_ML_PLATFORM_VERSION"}
    assert set(found["environ"]) <= allowed | set_by_ipykernel, set(found["environ"]) - allowed - set_by_ipykernel
    assert found["environ"]["HOME"] == sandbox_module.HOME
    # classgrade runs one kernel per core, each with one TensorFlow thread (unless set here)
    assert {k: found["environ"].get(k) for k in TF_ONE_THREAD} == {k: os.environ.get(k, v)
                                                                   for k, v in TF_ONE_THREAD.items()}


@pytest.mark.slow
def test_the_write_limit_stops_5_gb_in_well_under_a_second(graded):
    root, _ = graded
    if "writes_5_gb" not in CLASS:
        pytest.skip("no sandbox here")
    times = [float(re.search(r"for ([0-9.]+) s", line).group(1)) for line in printed(root, "writes_5_gb", "WROTE ")]
    assert times and max(times) < 0.5, times


@pytest.mark.slow
def test_a_second_run_skips_what_is_done_and_a_forced_one_agrees(graded):
    root, _ = graded
    before = {s: scores(root, s) for s in CLASS}
    output = classgrade(root)
    assert f"{len(CLASS)} submissions, 0 to grade" in output
    again = ["correct", "allclose_patched_by_the_function", "deleted_grade_cell", "invalid_json", "kernel_dies"]
    # graded again by kernels exec'd in their sandbox (no zygote): the same scores
    classgrade(root, "--force", *[f"--student={s}" for s in again], env={zygote.SWITCH: "0"})
    assert {s: scores(root, s) for s in CLASS} == before


#: Graded again with --ship: cases that touch every part of a job (a clean answer, log lines,
#: no notebook, a repaired and an edited test cell, a dead kernel, a cheat the guard undoes).
SHIPPED = ["correct", "tf_logs", "missing_notebook", "deleted_grade_cell", "edited_locked_cell",
           "kernel_dies", "allclose_override", "snoop"]


@pytest.mark.slow
def test_workers_without_the_course_directory_give_the_same_grades(graded, tmp_path):
    """--ship: jobs carry the files, workers grade in private copies, the gradebook is written
    by the client alone; scores, reasons and the export match the shared-directory run, the
    graded notebooks come back to autograded/, and the kernels cannot see the copies."""
    root, _ = graded
    other = hostile_class(tmp_path / "course", SHIPPED)
    output = classgrade(other, "--ship")
    assert f"{len(SHIPPED)} submissions" in output
    for student in SHIPPED:
        assert scores(other, student) == scores(root, student) == HOSTILE[student][1], student
        assert status(other, student)["reason"] == status(root, student)["reason"]
    graded_here = course.read_notebook(other / "autograded" / "kernel_dies" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb")
    assert any(o.get("ename") == "DeadKernelError" for c in graded_here["cells"] for o in c.get("outputs", []))
    assert not any((other / "grading-status" / ASSIGNMENT / "executed").glob("*"))
    if AVAILABLE["allow_list"]:  # the worker's course copies are not in the kernel's view
        found = snooped(other)
        for key in ("shipped", "../../../solutions", "../../../submitted", "../../../gradebook.db"):
            assert found[key] == "FileNotFoundError", (key, found)
    course.nbgrader("export", root=other)
    with open(other / "grades.csv", newline="") as handle:
        rows = {row["student_id"]: float(row["score"]) for row in csv.DictReader(handle)}
    assert rows == {s: sum(HOSTILE[s][1].values()) for s in SHIPPED}


# --- fast: the sandbox is there where it must be, and the fallback without it

def test_ci_has_the_sandbox():
    """CI (.ci/run) installs bubblewrap and sets COURSE_REQUIRE_SANDBOX=1: there the hostile
    cases that need the sandbox must run, not be skipped."""
    if os.environ.get("COURSE_REQUIRE_SANDBOX") != "1":
        pytest.skip("COURSE_REQUIRE_SANDBOX is not set")
    assert AVAILABLE["allow_list"], "bubblewrap (bwrap) or user namespaces are missing"
    assert set(SANDBOXED) <= set(CLASS)


# --- fast: the fallback without a sandbox ----------------------------------------------------------

def test_without_a_sandbox_kernels_get_resource_limits_only_and_it_is_said_once(monkeypatch):
    """RNNCOURSE_SANDBOX=limits (what a machine without bubblewrap or user namespaces gets): the
    kernel command has no bwrap, only the limits wrapper, and the warning comes once per process."""
    monkeypatch.setenv(sandbox_module.FORCE, "limits")
    monkeypatch.setattr(sandbox_module, "_WARNED", [])
    said = []
    assert sandbox_module.warn_if_unsandboxed(said.append) and sandbox_module.warn_if_unsandboxed(said.append)
    assert len(said) == 1 and "NO SANDBOX" in said[0] and "RNNCOURSE_SANDBOX=limits" in said[0]
    assert not isolation_available()["allow_list"]
    manager = sandbox_module.SandboxedKernelManager(kernel_name="python3", memory_limit=123456789)
    command = manager.format_kernel_cmd()
    assert "bwrap" not in " ".join(command) and command[1] == "-c" and '"memory": 123456789' in command[3]
    code = "import resource; print(resource.getrlimit(resource.RLIMIT_AS)[0])"
    wrapped = [*command[:4], sys.executable, "-c", code]
    assert subprocess.run(wrapped, capture_output=True, text=True, check=True).stdout.strip() == "123456789"


# --- fast: why the guard is needed ----------------------------------------------------------------

def test_an_override_of_np_allclose_reaches_the_checks_in_process(monkeypatch):
    """Without the kernel guard a student's `np.allclose = ...` makes any answer pass:
    rnncourse.grading looks np.allclose up on the shared numpy module at call time."""
    wrong, right = np.zeros((2, 3)), np.ones((2, 3))
    with pytest.raises(AssertionError):
        check_array("h", wrong, right, **FLOAT64_TOL)
    monkeypatch.setattr(np, "allclose", lambda *args, **kwargs: True)
    check_array("h", wrong, right, **FLOAT64_TOL)  # passes: this is what GuardedExecute prevents


def test_suspicious_code_names_the_tampering():
    found = suspicious_code("import builtins\nnp.allclose = lambda *a, **k: True\n"
                            "def isinstance(a, b):\n    return True\nos.environ['X'] = '1'\n")
    assert any("np.allclose" in f for f in found)
    assert any("imports builtins" in f for f in found)
    assert any("redefines the builtin isinstance" in f for f in found)
    assert not any("os.environ" in f for f in found)


# --- fast: the sandbox's mounts -------------------------------------------------------------------

def test_a_read_only_folder_under_tmp_is_not_hidden_by_the_private_tmp(tmp_path):
    """The Python environment of a course kept under /tmp (a clone in /tmp, a CI work folder)
    must be bound after the kernel's own empty /tmp, or the kernel cannot even start."""
    if not AVAILABLE["allow_list"]:
        pytest.skip("no bubblewrap sandbox on this machine")
    shared = tmp_path / "course-env"
    shared.mkdir()
    (shared / "marker.txt").write_text("seen from the sandbox")
    manager = sandbox_module.SandboxedKernelManager(kernel_name="python3", read_only_paths=[str(shared)])
    try:
        code = f"print(open({str(shared / 'marker.txt')!r}).read()); import os; print(sorted(os.listdir('/tmp')))"
        result = subprocess.run([*manager._bwrap(), sys.executable, "-c", code], capture_output=True, text=True,
                                timeout=60, check=False)
    finally:
        shutil.rmtree(manager._private, ignore_errors=True)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "seen from the sandbox"
    # /tmp holds the way down to that folder and the kernel's own folder, nothing else of the host's
    allowed = {str(tmp_path).split(os.sep)[2], os.path.basename(sandbox_module._kernels_folder())}
    assert str(tmp_path).split(os.sep)[2] in lines[1] and set(json.loads(lines[1].replace("'", '"'))) <= allowed
