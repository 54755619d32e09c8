"""Grade a generated class of ``rnn_forward`` submissions twice and print the times.

    .venv/bin/python benchmarks/grade_class.py [--n 100] [--workers N] [--also-workers N]
                                               [--timeout 30] [--ship] [--one-worker] [--totals FILE]

The class (``--n`` submissions) cycles through: correct answers (half), the realistic wrong
answers of tests/submissions.py (three tenths), and the hostile submissions of
tests/hostile.py (one fifth: broken files, deleted or edited tests, loops, a dying kernel,
a memory hog, megabytes of output, cheats). It is graded

1. in parallel by ``python -m rnncourse.classgrade rnn_forward`` (a local Dask cluster with
   classgrade's default number of single-threaded workers, one per core, unless
   ``--workers``; ``--also-workers N`` times another run with N workers), and
2. by one serial ``nbgrader autograde rnn_forward`` over a copy of the same course,
3. with ``--ship``, also by ``classgrade --ship`` (jobs carry the files, the client alone
   writes the gradebook: the mode for workers on other machines) over a third copy,
4. with ``--one-worker``, also by ``classgrade --workers 1`` (the serial time per submission
   of the course's own grader, every protection on),

with the course's own nbgrader_config.py (cell time limit ``--timeout``). It prints
seconds per submission, the total and the ratio, the machine's CPU seconds per submission
(all processes: the kernels run as other users in their own PID namespaces, so a parent's
``children`` times miss them; read it on an otherwise quiet machine), the machine's load (``os.getloadavg``) before
and after, and checks that every run gave every student the same total (``--totals FILE``
writes them as JSON, to compare two versions of the grader). It asserts nothing about speed:
speed is measured, not tested.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))

from hostile import HOSTILE, SEPARATE_CHEATS, hand_in
from submissions import EXPECTED, fill_in

from rnncourse import course
from rnncourse.classgrade import default_workers

ASSIGNMENT = "rnn_forward"


def build_class(root: Path, n: int) -> dict[str, str]:
    release = course.read_notebook(course.generate(root, ASSIGNMENT))
    source = course.read_notebook(root / "solutions" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb")
    wrong = [(name, edits) for name, (edits, lost) in EXPECTED[ASSIGNMENT].items() if lost]
    hostile = [(name, build) for name, (build, _) in {**HOSTILE, **SEPARATE_CHEATS}.items()
               if name not in ("correct", "tf_logs")]
    kinds = {}
    for k in range(n):
        student = f"s{k:03d}"
        slot = k % 10
        if slot < 5:
            kind, handed_in = "correct", fill_in(release, source, [])
        elif slot < 8:
            name, edits = wrong[(k // 10 * 3 + slot - 5) % len(wrong)]
            kind, handed_in = f"wrong: {name}", fill_in(release, source, edits)
        else:
            name, build = hostile[(k // 10 * 2 + slot - 8) % len(hostile)]
            kind, handed_in = f"hostile: {name}", build(release, source)
        hand_in(root, ASSIGNMENT, student, handed_in)
        kinds[student] = kind
    return kinds


def totals(root: Path, students) -> dict[str, float]:
    out = {}
    for student in students:
        try:
            out[student] = sum(course.scores(root, ASSIGNMENT, student).values())
        except Exception:  # noqa: BLE001 (never graded: no submission row)
            out[student] = 0.0
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100, help="submissions in the class (default 100)")
    parser.add_argument("--workers", type=int, default=default_workers(),
                        help="classgrade's workers (default: classgrade's own, one per core)")
    parser.add_argument("--also-workers", type=int, action="append", default=[],
                        help="also time classgrade with this many workers (repeatable)")
    parser.add_argument("--timeout", type=int, default=30, help="seconds per cell (default 30)")
    parser.add_argument("--keep", action="store_true", help="keep the course folders")
    parser.add_argument("--ship", action="store_true", help="also time classgrade --ship")
    parser.add_argument("--one-worker", action="store_true", help="also time classgrade --workers 1")
    parser.add_argument("--totals", type=Path, help="write each student's total and kind here (JSON)")
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()}", flush=True)
    env = course.tool_env()
    work = Path(tempfile.mkdtemp(prefix="grade-class-"))
    parallel = course.new_course(work / "parallel", [ASSIGNMENT])
    with open(parallel / "nbgrader_config.py", "a") as handle:
        handle.write(f"\nc.GuardedExecute.timeout = {args.timeout}\n")
    kinds = build_class(parallel, args.n)
    serial = work / "serial"
    shutil.copytree(parallel, serial)  # the same class, the same fresh gradebook
    shipped, alone = work / "shipped", work / "one-worker"
    if args.ship:
        shutil.copytree(parallel, shipped)
    if args.one_worker:
        shutil.copytree(parallel, alone)
    others = {n: work / f"workers-{n}" for n in args.also_workers}
    for folder in others.values():
        shutil.copytree(parallel, folder)
    # the copied config points hidden_paths at its own folder (CourseDirectory.root is the file's)
    print(f"{args.n} submissions ({sum(k == 'correct' for k in kinds.values())} correct, "
          f"{sum(k.startswith('wrong') for k in kinds.values())} wrong, "
          f"{sum(k.startswith('hostile') for k in kinds.values())} hostile) in {work}", flush=True)

    cpu = {}

    def children_cpu() -> float:
        """CPU seconds the whole machine has spent so far (/proc/stat), else this process's children."""
        try:
            with open("/proc/stat") as handle:
                fields = [int(v) for v in handle.readline().split()[1:]]
            busy = sum(fields) - fields[3] - (fields[4] if len(fields) > 4 else 0)  # minus idle, iowait
            return busy / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError):
            times = os.times()
            return times.children_user + times.children_system

    def classgrade(root: Path, *extra: str, workers: int = args.workers) -> float:
        start, start_cpu = time.monotonic(), children_cpu()
        subprocess.run([sys.executable, "-m", "rnncourse.classgrade", ASSIGNMENT, "--root", str(root),
                        "--workers", str(workers), *extra], env=env, check=True)
        cpu[(root, workers)] = children_cpu() - start_cpu
        return time.monotonic() - start

    parallel_seconds = classgrade(parallel)
    ship_seconds = classgrade(shipped, "--ship") if args.ship else None
    alone_seconds = classgrade(alone, workers=1) if args.one_worker else None
    other_seconds = {n: classgrade(folder, workers=n) for n, folder in others.items()}

    start, start_cpu = time.monotonic(), children_cpu()
    result = subprocess.run([sys.executable, "-m", "nbgrader", "autograde", ASSIGNMENT, "--force"],
                            cwd=serial, env=env, capture_output=True, text=True, check=False)
    serial_seconds = time.monotonic() - start
    serial_cpu = children_cpu() - start_cpu
    if result.returncode != 0:
        print(result.stdout[-2000:], result.stderr[-2000:])

    a, b = totals(parallel, kinds), totals(serial, kinds)
    differ = {s: (a[s], b[s], kinds[s]) for s in kinds if a[s] != b[s]}
    for other, used in ((shipped, args.ship), (alone, args.one_worker), *((f, True) for f in others.values())):
        if used:
            c = totals(other, kinds)
            differ.update({s: (a[s], b[s], c[s], kinds[s]) for s in kinds if c[s] != a[s]})
    if args.totals:
        args.totals.write_text(json.dumps({s: [a[s], kinds[s]] for s in kinds}, indent=1) + "\n")
    n = args.n
    print()
    # the machine's CPU seconds depend far less on how the work was spread than wall seconds do
    print(f"{'':34s}{'total s':>10s}{'s / submission':>16s}{'CPU s / submission':>20s}")
    print(f"{'serial nbgrader autograde':34s}{serial_seconds:10.1f}{serial_seconds / n:16.2f}{serial_cpu / n:20.2f}")
    print(f"{'classgrade, ' + str(args.workers) + ' Dask workers':34s}{parallel_seconds:10.1f}"
          f"{parallel_seconds / n:16.2f}{cpu[(parallel, args.workers)] / n:20.2f}")
    if args.ship:
        print(f"{'classgrade --ship, ' + str(args.workers) + ' workers':34s}{ship_seconds:10.1f}"
              f"{ship_seconds / n:16.2f}{cpu[(shipped, args.workers)] / n:20.2f}")
    for n_other, seconds in other_seconds.items():
        print(f"{'classgrade, ' + str(n_other) + ' Dask workers':34s}{seconds:10.1f}{seconds / n:16.2f}"
              f"{cpu[(others[n_other], n_other)] / n:20.2f}")
    if args.one_worker:
        print(f"{'classgrade, 1 worker':34s}{alone_seconds:10.1f}{alone_seconds / n:16.2f}"
              f"{cpu[(alone, 1)] / n:20.2f}")
    print(f"ratio serial / parallel: {serial_seconds / parallel_seconds:.2f} on {os.cpu_count()} cores")
    if args.ship:
        print(f"ratio serial / --ship: {serial_seconds / ship_seconds:.2f}")
    print("same totals in every run" if not differ else f"totals differ for {len(differ)}: {differ}")
    print(f"load average after: {os.getloadavg()}")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
