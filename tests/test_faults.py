"""Faults at class scale (issue 17): one class of 30 graded through every fault at once.

Run A of ``python -m rnncourse.classgrade`` grades a class of 30 (half correct, half with the
bias left out). While it runs: the gradebook is locked by another process for 10 s; one of its
Dask worker processes is killed (SIGKILL) mid-job; a second run B is started on the same
assignment; then A itself is killed with SIGKILL, and B finishes the class. After that every
submission is in the gradebook exactly once with the score it deserves, ``grades.csv`` is what
an undisturbed run gives, and the status files say which run graded each one, which was graded
again after the interruption and which was retried after its worker died.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time

import pytest
from hostile import BIAS_LEFT_OUT, FULL, WRONG, hand_in
from submissions import fill_in

from rnncourse import course

ASSIGNMENT = "rnn_forward"
CLASS = {f"s{i:02d}": ("correct" if i % 2 == 0 else "wrong") for i in range(30)}
DESERVED = {"correct": sum(FULL.values()), "wrong": sum(WRONG.values())}
LIMITS = "\nc.GuardedExecute.timeout = 30\nc.SandboxedKernelManager.process_limit = 64\n"


def _run(root, log):
    with open(log, "w") as output:  # the child keeps its own copy of the file
        return subprocess.Popen([sys.executable, "-m", "rnncourse.classgrade", ASSIGNMENT, "--root", str(root),
                                 "--workers", "2"], env=course.tool_env(), stdout=output,
                                stderr=subprocess.STDOUT, start_new_session=True)


def _statuses(root):
    found = {}
    for path in (root / "grading-status" / ASSIGNMENT).glob("*.json"):
        try:
            found[path.stem] = json.loads(path.read_text())
        except ValueError:  # being replaced
            continue
    return found


def _graded(root):
    return sum(s.get("state") == "graded" for s in _statuses(root).values())


def _wait(condition, timeout, what):
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.2)


def _workers(pid):
    """The Dask worker processes of classgrade process ``pid`` (its multiprocessing children)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                parent = int(handle.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                command = handle.read().decode(errors="replace")
        except (OSError, ValueError, IndexError):
            continue
        if parent == pid and "spawn_main" in command and "resource_tracker" not in command:
            found.append(int(entry))
    return found


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_class_survives_every_fault_and_is_graded_exactly_once(tmp_path):
    root = course.new_course(tmp_path / "course", [ASSIGNMENT])
    with open(root / "nbgrader_config.py", "a") as handle:
        handle.write(LIMITS)
    release = course.read_notebook(course.generate(root, ASSIGNMENT))
    source = course.read_notebook(root / "solutions" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb")
    notebooks = {"correct": fill_in(release, source, []), "wrong": fill_in(release, source, BIAS_LEFT_OUT)}
    for student, kind in CLASS.items():
        hand_in(root, ASSIGNMENT, student, notebooks[kind])

    first = _run(root, tmp_path / "a.log")
    second = None
    try:
        _wait(lambda: _graded(root) >= 4, 300, "run A to grade 4")
        # 1. the gradebook locked by another process for 10 s: nothing is written meanwhile
        locked = threading.Event()

        def hold():
            with sqlite3.connect(root / "gradebook.db", timeout=60) as db:
                db.execute("BEGIN EXCLUSIVE")
                locked.set()
                time.sleep(10)

        holder = threading.Thread(target=hold)
        holder.start()
        assert locked.wait(60)
        # 2. a worker process killed in the middle of a job
        workers = _workers(first.pid)
        assert len(workers) == 2, workers
        time.sleep(1)
        during = _graded(root)
        os.kill(workers[0], signal.SIGKILL)
        # 3. a second run of the same assignment started meanwhile
        second = _run(root, tmp_path / "b.log")
        time.sleep(7)
        assert _graded(root) == during, "a status was written while the gradebook was locked"
        holder.join()
        _wait(lambda: _graded(root) >= 14, 300, "run A to grade 14")
        # 4. the first run's client killed with SIGKILL; the second one finishes the class
        workers = _workers(first.pid)
        os.kill(first.pid, signal.SIGKILL)
        first.wait(30)
        _wait(lambda: not any(_alive(w) for w in workers), 10, "run A's workers to end with it")
        second.wait(timeout=900)
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
    out = (tmp_path / "b.log").read_text()
    assert second.returncode == 0, out[-3000:]
    assert "is grading rnn_forward: waiting for it to finish" in out, out[:2000]

    statuses = _statuses(root)
    assert sorted(statuses) == sorted(CLASS)
    for student, kind in CLASS.items():
        assert statuses[student]["state"] == "graded", (student, statuses[student].get("reason"))
        assert statuses[student]["score"] == DESERVED[kind], (student, statuses[student].get("reason"))
    runs = {s["run"] for s in statuses.values()}
    assert len(runs) == 2, runs  # some graded by A before it was killed, the rest by B
    assert any("retried" in s and "worker process died" in s["reason"] for s in statuses.values())
    assert any("interrupted" in s and "graded again" in s["reason"] for s in statuses.values())

    with sqlite3.connect(root / "gradebook.db") as db:
        rows = db.execute("SELECT student_id, COUNT(*) FROM submitted_assignment GROUP BY student_id").fetchall()
    assert sorted(rows) == sorted((student, 1) for student in CLASS)
    course.nbgrader("export", root=root)
    with open(root / "grades.csv", newline="") as handle:
        exported = {row["student_id"]: float(row["score"]) for row in csv.DictReader(handle)}
    assert exported == {student: DESERVED[kind] for student, kind in CLASS.items()}
