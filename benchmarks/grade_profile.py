"""Where one submission's grading time goes: plain ``nbgrader autograde`` against ``classgrade``.

    .venv/bin/python benchmarks/grade_profile.py [--assignment rnn_forward] [--n 6] [--repeat 3]

A throw-away course gets ``--n`` copies of the assignment's solution (correct submissions, so
every cell runs to the end). It then measures, with the course's own ``nbgrader_config.py``
(sandbox, guard and repair on):

* the parts a new process pays before any cell runs: the interpreter with nbgrader's autograde
  application imported, a plain kernel started and ready, the same kernel behind the course's
  sandbox (``SandboxedKernelManager``), and TensorFlow imported in a fresh interpreter;
* ``nbgrader autograde --student S`` run once per submission, one after another (``--repeat``
  of them): the wall time of the command, and each cell's time read from the autograded
  notebook's execution timestamps (the first code cell is the course's set-up cell, which
  imports TensorFlow; grade cells are named by their ``grade_id``);
* ``python -m rnncourse.classgrade --workers 1`` over all ``--n``: the time of each job as its
  status file gives it (the first pays the worker's start; the others find a kernel started and
  TensorFlow imported while the previous submission was recorded), and the same cell times.

It prints a table per route, and asserts nothing about speed: speed is measured, not tested.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))

from submissions import fill_in

from rnncourse import course
from rnncourse.classgrade import status_path


def _wall(command: list[str], **kwargs) -> float:
    start = time.monotonic()
    subprocess.run(command, check=True, capture_output=True, **kwargs)
    return time.monotonic() - start


def _kernel_start(manager_class: str, cwd: Path, env: dict) -> float:
    """Seconds from creating a kernel manager to the kernel answering, in a fresh interpreter."""
    code = f"""
import asyncio, sys, time
sys.path.insert(0, {str(REPO)!r})
from rnncourse import course
module, name = {manager_class!r}.rsplit(".", 1)
Manager = getattr(__import__(module, fromlist=[name]), name)

async def main():
    start = time.monotonic()
    manager = Manager(kernel_name="python3", config=course.nbgrader_config({str(cwd)!r}))
    await manager.start_kernel(cwd={str(cwd)!r})
    client = manager.client()
    client.start_channels()
    await client.wait_for_ready(timeout=120)
    print(time.monotonic() - start)
    client.stop_channels()
    await manager.shutdown_kernel(now=True)

asyncio.run(main())
"""
    result = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, env=env)
    return float(result.stdout.strip().splitlines()[-1])


def _cell_times(notebook_path: Path) -> dict[str, float]:
    """Seconds per cell from nbclient's timestamps (``metadata.execution``), keyed by role."""
    notebook = course.read_notebook(notebook_path)
    times: dict[str, float] = {}
    for cell in notebook["cells"]:
        if cell["cell_type"] != "code":
            continue
        stamps = cell.get("metadata", {}).get("execution", {})
        if "iopub.execute_input" not in stamps or "shell.execute_reply" not in stamps:
            continue
        seconds = (datetime.fromisoformat(stamps["shell.execute_reply"].replace("Z", "+00:00"))
                   - datetime.fromisoformat(stamps["iopub.execute_input"].replace("Z", "+00:00"))).total_seconds()
        nbgrader = cell.get("metadata", {}).get("nbgrader", {})
        if nbgrader.get("grade"):
            key = f"grade cell {nbgrader.get('grade_id')}"
        elif nbgrader.get("grade_id") == "setup":
            key = "set-up cell (imports rnncourse, NumPy)"
        else:
            key = "other cells (version check, answers, examples)"
        times[key] = times.get(key, 0.0) + seconds
    return times


def _table(title: str, rows: list[tuple[str, float]]) -> None:
    print(f"\n{title}")
    for label, seconds in rows:
        print(f"  {label:52s}{seconds:8.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--assignment", default="rnn_forward")
    parser.add_argument("--n", type=int, default=6, help="submissions graded by classgrade (default 6)")
    parser.add_argument("--repeat", type=int, default=3, help="plain nbgrader runs (default 3)")
    args = parser.parse_args()
    assignment = args.assignment
    env = course.tool_env()
    print(f"load average before: {os.getloadavg()}", flush=True)
    work = Path(tempfile.mkdtemp(prefix="grade-profile-"))
    root = course.new_course(work / "course", [assignment])
    release = course.read_notebook(course.generate(root, assignment))
    source = course.read_notebook(root / "solutions" / assignment / f"{assignment}.ipynb")
    students = [f"s{k:03d}" for k in range(max(args.n, args.repeat))]
    for student in students:
        course.submit(root, assignment, student, fill_in(release, source, []))

    fixed = [
        ("interpreter + nbgrader autograde imported", _wall(
            [sys.executable, "-c", "import nbgrader.apps.autogradeapp"], env=env)),
        ("`nbgrader --version` (start of any nbgrader command)", _wall(
            [sys.executable, "-m", "nbgrader", "--version"], env=env)),
        ("TensorFlow imported in a fresh interpreter", _wall(
            [sys.executable, "-c", "import tensorflow"], env=env)),
        ("plain kernel started and ready", _kernel_start(
            "jupyter_client.manager.AsyncKernelManager", root, env)),
        ("sandboxed kernel started and ready", _kernel_start(
            "rnncourse.grader.sandbox.SandboxedKernelManager", root, env)),
    ]
    _table("Fixed costs (one each)", fixed)

    plain_walls, plain_cells = [], []
    for student in students[: args.repeat]:
        plain_walls.append(_wall([sys.executable, "-m", "nbgrader", "autograde", assignment,
                                  "--student", student, "--force"], cwd=root, env=env))
        plain_cells.append(_cell_times(root / "autograded" / student / assignment / f"{assignment}.ipynb"))
    cells = {key: statistics.median(c.get(key, 0.0) for c in plain_cells) for key in plain_cells[0]}
    wall = statistics.median(plain_walls)
    rows = [("whole command (median of " + str(args.repeat) + ")", wall), *cells.items(),
            ("rest: process start, kernel start, nbgrader's own work", wall - sum(cells.values()))]
    _table(f"Plain `nbgrader autograde --student S` ({assignment}), serial", rows)

    start = time.monotonic()
    subprocess.run([sys.executable, "-m", "rnncourse.classgrade", assignment, "--root", str(root),
                    "--workers", "1", "--force", *[a for s in students[: args.n] for a in ("--student", s)]],
                   check=True, capture_output=True, env=env)
    total = time.monotonic() - start
    jobs = []
    for student in students[: args.n]:
        status = json.loads(status_path(root, assignment, student).read_text())
        jobs.append(float(status.get("seconds") or 0.0))
    warm_cells = [_cell_times(root / "autograded" / s / assignment / f"{assignment}.ipynb") for s in students[1: args.n]]
    cells = {key: statistics.median(c.get(key, 0.0) for c in warm_cells) for key in warm_cells[0]}
    steady = statistics.median(jobs[1:])
    rows = [(f"whole class of {args.n}, client start to finish", total),
            ("first job (the worker's first: imports, first kernel)", jobs[0]),
            ("each later job (median)", steady), *cells.items(),
            ("rest: waiting for the spare kernel, nbgrader's own work", steady - sum(cells.values()))]
    _table(f"`classgrade --workers 1` ({assignment}), per job", rows)
    print(f"\nserial per submission: plain nbgrader {wall:.2f} s, classgrade {total / args.n:.2f} s "
          f"(whole run / n), ratio {wall / (total / args.n):.2f}")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
