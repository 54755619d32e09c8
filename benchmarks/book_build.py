"""How long the book takes to build: clean, cached, and (optionally) one page at a time.

    .venv/bin/python benchmarks/book_build.py            # clean build on every core, then cached
    .venv/bin/python benchmarks/book_build.py --serial   # also a clean build with BOOK_JOBS=1

Each build is `jupyter-book build . -n -W --keep-going` (what `make book` runs) into a
temporary output folder, so the repository's own _build/ and its caches are untouched. A
clean build starts with no execution cache and no run cache: every page executes. The
cached rebuild then deletes the HTML and doctrees but keeps the caches (what an author gets
after editing prose). For each clean build it prints the wall time beside the sum of the
pages' own execution times (myst-nb's "Executed notebook in N seconds"), and their ratio:
above 1 means pages ran at the same time. It asserts nothing: speed is measured, not tested.

The machine's own speed varies (a shared host: the same training run took 8.9 s one hour and
11.7 s the next), so the build's times are printed beside a reference measured in the same run,
before and after: one seeded LSTM(32) training run of the book (lag 50, 5 epochs) on one
TensorFlow thread, as a page's kernel trains it in a parallel build.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rnncourse import TF_ENV, TF_ONE_THREAD

REPO = Path(__file__).resolve().parent.parent
EXECUTED = re.compile(r"^(\S+): Executed notebook in ([0-9.]+) seconds", re.MULTILINE)


def build(output: Path, jobs: int | None) -> tuple[float, dict[str, float]]:
    """One strict build into ``output``; its wall time and each executed page's seconds."""
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", **TF_ENV}
    env.pop("RNNCOURSE_RUN_CACHE", None)      # the build sets its own, inside output
    if jobs is not None:
        env["BOOK_JOBS"] = str(jobs)
    start = time.perf_counter()
    done = subprocess.run([str(bin_dir / "jupyter-book"), "build", ".", "-n", "-W", "--keep-going",
                           "--path-output", str(output)],
                          cwd=REPO, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    # -W makes every Sphinx warning an error, so the exit code says it all (stderr also holds
    # the kernels' own log lines, such as ipykernel's note on unencrypted TCP)
    if done.returncode != 0:
        log = Path(tempfile.gettempdir()) / "book_build_failed.log"  # outlives the output folder
        log.write_text(f"{done.stdout}\n--- stderr ---\n{done.stderr}")
        sys.exit(f"the build failed (exit {done.returncode}; all of its output: {log}):\n"
                 f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    pages = {Path(path).stem: float(s) for path, s in EXECUTED.findall(done.stdout)}
    return seconds, pages


REFERENCE = """
import time
import rnncourse
import keras
from rnncourse.experiments import train_first_symbol
start = time.perf_counter()
train_first_symbol("LSTM", 50, seed=0, epochs=5)
print(time.perf_counter() - start)
"""


def reference_seconds() -> float:
    """Seconds of :data:`REFERENCE` in a new interpreter (imports not counted; no run cache)."""
    env = {**os.environ, **TF_ENV, **TF_ONE_THREAD, "OPENBLAS_NUM_THREADS": "1",
           "RNNCOURSE_ONE_THREAD_INPUT": "1"}
    env.pop("RNNCOURSE_RUN_CACHE", None)
    done = subprocess.run([sys.executable, "-c", REFERENCE], cwd=REPO, env=env,
                          capture_output=True, text=True, check=True)
    return float(done.stdout.split()[-1])


def report(label: str, seconds: float, pages: dict[str, float]) -> None:
    total = sum(pages.values())
    print(f"{label}: {seconds:6.1f} s wall; {len(pages)} pages executed, "
          f"{total:6.1f} s of page execution in all (execution / wall = {total / seconds:.2f})")
    for page, s in sorted(pages.items(), key=lambda item: -item[1]):
        print(f"    {page:<28} {s:6.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serial", action="store_true",
                        help="also build clean with BOOK_JOBS=1 (the baseline: one page at a time)")
    args = parser.parse_args()
    print(f"{os.cpu_count()} cores; load average {os.getloadavg()[0]:.2f} at the start")
    before = reference_seconds()
    print(f"reference (an LSTM(32) run, lag 50, 5 epochs, one thread): {before:.2f} s")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "book"
        clean, pages = build(out, None)
        report("clean build, all cores", clean, pages)
        shutil.rmtree(out / "_build" / "html")
        shutil.rmtree(out / "_build" / ".doctrees", ignore_errors=True)
        cached, _ = build(out, None)
        print(f"cached rebuild (HTML and doctrees deleted, caches kept): {cached:6.1f} s wall")
        if args.serial:
            serial_out = Path(tmp) / "serial"
            serial, serial_pages = build(serial_out, 1)
            report("clean build, BOOK_JOBS=1", serial, serial_pages)
            print(f"parallel / serial clean build: {clean / serial:.2f} "
                  f"({serial / clean:.2f}x faster)")
    after = reference_seconds()
    print(f"reference again: {after:.2f} s; clean build / reference (mean of both): "
          f"{clean / ((before + after) / 2):.0f}")
    print(f"load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
