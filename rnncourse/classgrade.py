"""Grade a whole class in parallel: one ``nbgrader autograde --student S`` per submission,
each an independent Dask job.

    python -m rnncourse.classgrade ASSIGNMENT [--workers N] [--scheduler tcp://HOST:8786 [--ship]]
                                              [--force] [--student S ...] [--root DIR]

Run it in the course directory (or pass ``--root``) after ``nbgrader generate_assignment``
and after the submissions are in ``submitted/<student>/<ASSIGNMENT>/`` (by hand or with
``nbgrader zip_collect``). Then ``nbgrader generate_feedback`` and ``nbgrader export`` as
usual: the grades are in nbgrader's gradebook, written by nbgrader itself.

* **Engine.** A local Dask cluster with one single-threaded worker per core by default, or
  a running scheduler (``--scheduler``). By default each job runs nbgrader in the course
  directory, so the workers must share it (one machine); the gradebook is SQLite in that
  directory, and several ``nbgrader autograde --student`` processes writing it on one
  machine work (measured). SQLite on a network file system does not lock reliably, so for
  workers on other machines use ``--ship``: each job carries the grading config, the
  instructor's notebook and the submission; the worker grades in a private copy with its own
  throw-away gradebook and returns the graded notebook; the client alone records it in the
  course's gradebook with nbgrader's ``Autograde`` minus execution (one writer).
* **Status.** ``grading-status/<ASSIGNMENT>/<student>.json`` per submission: state
  (queued, running, graded, failed), seconds, nbgrader's exit code, the reason in words,
  the notes of the course's nbgrader plug-ins (restored cells, tampering, timeouts, dead
  kernels, cut output), each test's score and error, and a fingerprint of the submission.
* **Resumption.** A submission whose status is graded or failed and whose fingerprint (its
  files, the instructor notebook and nbgrader_config.py) has not changed is skipped unless
  ``--force``; an interrupted run leaves the others queued or running, so running the same
  command again grades exactly what is left (their statuses say they were interrupted).
* **Faults** (``tests/test_faults.py``). One run per assignment at a time: a second run waits
  for the first (``grading-status/<ASSIGNMENT>/.run.lock``), then grades what is left. Local
  workers end within a second of their client's death (a client killed with SIGKILL leaves no
  worker writing the course), and a new run waits until no job of a killed run is still going
  (``.jobs.lock``). A job whose worker process died (killed, crashed) is graded again once, and
  its status says so. Gradebook writes wait up to ``DB_BUSY_SECONDS`` for another process's
  lock instead of failing with "database is locked".
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

from . import TF_ONE_THREAD, __version__, course
from .course import submitted_students
from .grader.sandbox import reap_orphan_kernels, warn_if_unsandboxed
from .grader.version import version_warning

STATUS_DIR = "grading-status"
DB_BUSY_SECONDS = 120  # how long a gradebook write waits for another process's lock (SQLite timeout)
RUN_LOCK, JOBS_LOCK = ".run.lock", ".jobs.lock"
NOTE = re.compile(r"RNNCOURSE-NOTE (\{.*\})\s*$")
DONE = ("graded", "failed")
RUN_ID = time.strftime("%Y-%m-%dT%H:%M:%S") + f"/{os.getpid()}"  # this run, in the statuses it writes


# --- what a submission is ---------------------------------------------------------------------

def fingerprint(root: Path, assignment: str, student: str) -> str:
    """Hash of the submission's files, the instructor notebook and the grading config."""
    digest = hashlib.sha256()
    paths = sorted((root / "submitted" / student / assignment).rglob("*"))
    paths += [root / "nbgrader_config.py", *sorted((root / "solutions" / assignment).glob("*.ipynb"))]
    for path in paths:
        if path.is_file():
            digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def status_path(root: Path, assignment: str, student: str) -> Path:
    return root / STATUS_DIR / assignment / f"{student}.json"


def read_status(root: Path, assignment: str, student: str) -> dict:
    try:
        return json.loads(status_path(root, assignment, student).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def write_status(root: Path, assignment: str, student: str, status: dict) -> None:
    path = status_path(root, assignment, student)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(status, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    temporary.replace(path)  # atomic: an interruption never leaves half a status file


def precheck(root: Path, assignment: str, student: str) -> str | None:
    """Why nbgrader cannot grade this submission at all (None when it can try)."""
    folder = root / "submitted" / student / assignment
    notebook = folder / f"{assignment}.ipynb"
    if not notebook.is_file():
        others = sorted(p.name for p in folder.iterdir())
        return (f"no {assignment}.ipynb in the submission"
                + (f" (it holds: {', '.join(others[:5])})" if others else " (the folder is empty)"))
    try:
        import warnings

        import nbformat

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            nbformat.read(str(notebook), as_version=4)
    except Exception as error:  # noqa: BLE001 (any reading error is the student's file)
        return f"not a valid notebook: {type(error).__name__}: {str(error).splitlines()[0][:200]}"
    return None


# --- one job -----------------------------------------------------------------------------------

def _waiting_db_url(config) -> str:
    """The gradebook's URL with a SQLite busy timeout: a write waits for another process's lock
    (a second tool, an instructor's query) instead of failing with "database is locked"."""
    from nbgrader.coursedir import CourseDirectory

    url = CourseDirectory(config=config).db_url
    if url.startswith("sqlite:") and "timeout=" not in url:
        url += ("&" if "?" in url else "?") + f"timeout={DB_BUSY_SECONDS}"
    return url


def _config(root: Path):
    """The course's nbgrader config, its gradebook opened with :func:`_waiting_db_url`."""
    config = course.nbgrader_config(root)
    config.CourseDirectory.db_url = _waiting_db_url(config)
    return config


def _gradebook(root: Path):
    from nbgrader.api import Gradebook

    return Gradebook(_config(root).CourseDirectory.db_url)


def _job_config(root: str, extra: list[str], warm: bool):
    """The course's nbgrader config with ``extra`` (``--Class.trait=value``) on top."""
    from traitlets.config.loader import KVArgParseConfigLoader

    config = _config(Path(root))
    if extra:
        config.merge(KVArgParseConfigLoader(argv=list(extra)).load_config())
    config.GuardedExecute.warm_kernels = warm
    return config


def _watchdog(root: str, assignment: str, student: str, timeout: float) -> threading.Timer:
    """Past ``timeout`` seconds: mark the job timed out and end this worker process (and its
    kernels); Dask reports the job lost and the nanny starts a fresh worker."""
    def expire():
        marker = status_path(Path(root), assignment, student).with_suffix(".timed-out")
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text("")
        os.kill(os.getpid(), signal.SIGKILL)

    timer = threading.Timer(timeout, expire)
    timer.daemon = True
    timer.start()
    return timer


def _lock(path: Path, shared: bool = False, wait: bool = True):
    """An open file holding an flock on ``path`` (released when closed or when the process dies);
    None when ``wait`` is False and another process holds it."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a+")  # noqa: SIM115 (held open: the lock lasts as long as the file)
    flags = (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | (0 if wait else fcntl.LOCK_NB)
    try:
        fcntl.flock(handle, flags)
    except BlockingIOError:
        handle.close()
        return None
    return handle


_PARENT: list[int] = []


def _die_with_parent() -> None:
    """End this worker process (and its kernels) within a second of its parent's death: a local
    worker whose client was killed must not go on writing the course while a new run grades it."""
    if _PARENT:
        return
    _PARENT.append(os.getppid())

    def watch():
        while os.getppid() == _PARENT[0]:
            time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, daemon=True, name="rnncourse-die-with-parent").start()


def autograde_one(root: str, assignment: str, student: str, extra: list[str], timeout: float,
                  warm: bool = True) -> dict:
    """The Dask job: nbgrader's autograde of one submission, in this (warm) worker process.

    The same as ``nbgrader autograde ASSIGNMENT --student STUDENT --force`` (nbgrader's
    ``NbGraderAPI``, the course's config) without a new process per submission; with ``warm``
    each kernel is started while the previous submission is graded (``GuardedExecute.warm_kernels``).
    Returns the exit code (0: graded), the seconds, the notes the course's plug-ins logged and
    the tail of nbgrader's log.
    """
    from nbgrader.apps import NbGraderAPI

    start = time.monotonic()
    _die_with_parent()
    timer = _watchdog(root, assignment, student, timeout)
    jobs_lock = _lock(status_path(Path(root), assignment, student).parent / JOBS_LOCK, shared=True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # SQLAlchemy's session warnings from nbgrader.api
            result = NbGraderAPI(config=_job_config(root, extra, warm)).autograde(
                assignment, student, force=True, create=True)
    finally:
        timer.cancel()
        jobs_lock.close()
    output = (result.get("log") or "") + (f"\n[AutogradeApp | ERROR] {result['error']}"
                                          if result.get("error") else "")
    notes = []
    for line in output.splitlines():
        match = NOTE.search(line)
        if match:
            try:
                notes.append(json.loads(match.group(1)))
            except ValueError:
                pass
    errors = [line.strip() for line in output.splitlines() if "| ERROR]" in line]
    return {"exit_code": 0 if result.get("success") else 1, "seconds": round(time.monotonic() - start, 2),
            "timed_out": False, "notes": notes, "errors": errors[-5:], "log_tail": output[-3000:],
            "worker": os.uname().nodename}


def release_spare_kernels() -> None:
    """Shut down this worker's spare kernel (run on every worker before the cluster closes)."""
    from .grader.warm import discard_spare

    discard_spare()


# --- one job on a machine that does not share the course directory --------------------------------

def instructor_files(root: Path, assignment: str) -> dict[str, bytes]:
    """What a worker needs besides the submission: the grading config and the instructor's files."""
    files = {"nbgrader_config.py": (root / "nbgrader_config.py").read_bytes()}
    source = root / "solutions" / assignment
    for path in sorted(source.rglob("*")):
        if path.is_file() and ".ipynb_checkpoints" not in path.parts:
            files[str(path.relative_to(root))] = path.read_bytes()
    return files


def submission_files(root: Path, assignment: str, student: str) -> dict[str, bytes]:
    folder = root / "submitted" / student / assignment
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _write_files(base: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        path = (base / name).resolve()
        if base.resolve() not in path.parents:
            raise ValueError(f"refusing to write outside the job folder: {name}")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def _shipped_jobs_folder() -> Path:
    """Where a worker keeps its course copies; hidden from every kernel it starts."""
    import tempfile

    folder = Path(tempfile.gettempdir()) / "rnncourse-classgrade"
    folder.mkdir(mode=0o700, exist_ok=True)
    return folder


def _course_template(assignment: str, instructor: dict[str, bytes], timeout: float) -> Path:
    """A private course on this worker with the assignment generated (its own gradebook).

    Made once per worker machine and instructor version (the key hashes the files), under a
    file lock so that two worker processes do not both make it.
    """
    import fcntl

    digest = hashlib.sha256()
    for name in sorted(instructor):
        digest.update(name.encode() + b"\0" + instructor[name] + b"\0")
    template = _shipped_jobs_folder() / f"{assignment}-{digest.hexdigest()[:16]}"
    with open(f"{template}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (template / "ready").is_file():
            shutil.rmtree(template, ignore_errors=True)
            _write_files(template, instructor)
            result = subprocess.run([sys.executable, "-m", "nbgrader", "generate_assignment", assignment,
                                     "--force"], cwd=template, env=course.tool_env(), capture_output=True,
                                    text=True, timeout=timeout, check=False)
            if result.returncode != 0:
                raise RuntimeError("nbgrader generate_assignment failed on the worker:\n"
                                   + (result.stdout + result.stderr)[-2000:])
            (template / "ready").write_text("")
    return template


def autograde_shipped(assignment: str, student: str, instructor: dict[str, bytes],
                      submission: dict[str, bytes], extra: list[str], timeout: float) -> dict:
    """The Dask job for workers that do not see the course directory (``--ship``).

    The worker grades the submission in a private copy of the course (made from the files
    sent with the job, with its own throw-away gradebook) by the same ``nbgrader autograde
    --student S``, and returns the graded notebooks as ``executed`` with the job's result.
    Nothing on the worker is kept; the course's gradebook is written by the client alone.
    The kernel sees none of the worker's course copies (the template's solutions, the other
    jobs' submissions) when the sandbox can hide paths: their folder joins ``hidden_paths``.
    """
    import tempfile

    copies = _shipped_jobs_folder()
    template = _course_template(assignment, instructor, timeout)
    (copies / "jobs").mkdir(exist_ok=True)
    job_dir = Path(tempfile.mkdtemp(prefix=f"{student}-", dir=copies / "jobs"))
    try:
        shutil.copytree(template, job_dir, dirs_exist_ok=True)
        with open(job_dir / "nbgrader_config.py", "a") as config:
            config.write(f"\nc.SandboxedKernelManager.hidden_paths.append({str(copies)!r})\n")
        _write_files(job_dir / "submitted" / student / assignment, submission)
        job = autograde_one(str(job_dir), assignment, student, extra, timeout, warm=False)
        graded = job_dir / "autograded" / student / assignment
        job["executed"] = {p.name: p.read_bytes() for p in sorted(graded.glob("*.ipynb"))}
        return job
    finally:
        shutil.rmtree(job_dir, ignore_errors=True)


def record_shipped(root: Path, assignment: str, student: str, executed: dict[str, bytes]) -> dict:
    """Write a notebook graded elsewhere into this course: ``autograded/`` and the gradebook.

    nbgrader's own ``Autograde`` runs here on the graded notebook with execution left out:
    it saves the scores the outputs show (``SaveAutoGrades``), applies late penalties from
    the submission's timestamp and checks the cells' metadata, exactly as in a normal run.
    """
    from nbgrader.apps import NbGraderAPI
    from nbgrader.preprocessors import AssignLatePenalties, CheckCellMetadata, SaveAutoGrades

    start = time.monotonic()
    where = f"{STATUS_DIR}/{assignment}/executed"
    folder = root / where / student / assignment
    shutil.rmtree(folder, ignore_errors=True)
    submitted = root / "submitted" / student / assignment
    shutil.copytree(submitted, folder, ignore=shutil.ignore_patterns("*.ipynb"))
    _write_files(folder, executed)
    config = _config(root)
    config.CourseDirectory.submitted_directory = where
    config.Autograde.sanitize_preprocessors = [CheckCellMetadata]
    config.Autograde.autograde_preprocessors = [SaveAutoGrades, AssignLatePenalties, CheckCellMetadata]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SQLAlchemy's session warnings from nbgrader.api
        result = NbGraderAPI(config=config).autograde(assignment, student, force=True, create=True)
    if result.get("success"):
        shutil.rmtree(folder.parent, ignore_errors=True)  # autograded/ holds the graded copy now
    return {"recorded": bool(result.get("success")), "record_seconds": round(time.monotonic() - start, 2),
            "errors": [] if result.get("success") else [str(result.get("error") or result.get("log"))[-500:]]}


# --- reading the result ------------------------------------------------------------------------

def test_results(root: Path, assignment: str, student: str) -> dict[str, dict]:
    """Each grade cell's points (from the gradebook) and error (from the graded notebook)."""
    from nbgrader.api import MissingEntry

    results: dict[str, dict] = {}
    try:
        with _gradebook(root) as gradebook:
            submission = gradebook.find_submission_notebook(assignment, assignment, student)
            for grade in submission.grades:
                results[grade.name] = {"score": float(grade.score), "max": float(grade.max_score)}
    except MissingEntry:
        return {}
    graded = root / "autograded" / student / assignment / f"{assignment}.ipynb"
    if graded.is_file():
        notebook = json.loads(graded.read_text(encoding="utf-8"))
        for cell in notebook["cells"]:
            grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
            if grade_id in results:
                errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
                stderr = [o for o in cell.get("outputs", []) if o.get("name") == "stderr"]
                if errors:
                    error = errors[-1]
                    results[grade_id]["error"] = f"{error.get('ename')}: {str(error.get('evalue'))[:300]}"
                elif stderr:
                    results[grade_id]["error"] = "wrote to stderr: " + "".join(stderr[0]["text"])[:200]
    return results


def _zero_grades(root: Path, assignment: str, student: str) -> None:
    """A submission nbgrader cannot read still gets 0 in the gradebook (so export lists it)."""
    with _gradebook(root) as gradebook, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SQLAlchemy's session warnings from nbgrader.api
        try:
            gradebook.find_student(student)
        except Exception:  # noqa: BLE001
            gradebook.add_student(student)
        gradebook.update_or_create_submission(assignment, student)
        submission = gradebook.find_submission_notebook(assignment, assignment, student)
        for grade in submission.grades:
            grade.auto_score = 0
            grade.needs_manual_grade = False
        gradebook.db.commit()


def finish(root: Path, assignment: str, student: str, job: dict, status: dict) -> dict:
    """Turn a finished job into the submission's status."""
    tests = test_results(root, assignment, student)
    graded = (root / "autograded" / student / assignment / f"{assignment}.ipynb").is_file()
    status.update(job)
    status["tests"] = tests
    if tests:
        status["score"] = sum(t["score"] for t in tests.values())
        status["max_score"] = sum(t["max"] for t in tests.values())
    notes = [n["message"] for n in job.get("notes", [])]
    failing = [f"{name}: {t['error']}" for name, t in tests.items() if t.get("error")]
    if job.get("timed_out"):
        status["state"], reason = "failed", "the whole submission took longer than the job's time limit"
    elif job.get("exit_code") != 0 or not graded:
        status["state"] = "failed"
        reason = "nbgrader could not grade it: " + (job.get("errors") or ["see log_tail"])[0]
    else:
        status["state"], reason = "graded", f"graded {status.get('score', 0):g}/{status.get('max_score', 0):g}"
    details = ([status["warning"]] if status.get("warning") else []) + [
        status[key] for key in ("interrupted", "retried") if status.get(key)] + notes + ([f"failed tests: {'; '.join(failing)}"] if failing else [])
    status["reason"] = reason + (". " + " | ".join(details) if details else "")
    status["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    return status


# --- the class -----------------------------------------------------------------------------------

def default_workers() -> int:
    """Local workers when ``--workers`` is not given: one per core the process may use.

    Grading is CPU work (a kernel and TensorFlow per student). One worker more than the cores,
    to use the core a submission leaves idle while it sits out a time limit, was not faster
    on the benchmark class (``benchmarks/grade_class.py --n 100``: 368.8 s with 3 workers,
    322.9 s with 2, on 2 cores)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def _client(scheduler: str | None, workers: int):
    from dask.distributed import Client, LocalCluster

    if scheduler:
        return Client(scheduler), None
    import dask

    dask.config.set({"distributed.scheduler.allowed-failures": 0})  # a timed-out job is not re-run
    # One worker per core, so one TensorFlow thread per kernel (the kernels inherit the workers'
    # environment; the sandbox passes these names on). A class of 24 on 2 workers took 68.9 s
    # with one thread and 82.2 s with TensorFlow's default pools, one run after the other; the
    # class of 100 (benchmarks/grade_class.py) did not confirm the gain against serial
    # nbgrader (ratio 1.85, 1.94 before). A value set in the environment is kept.
    threads = {name: os.environ.get(name, value) for name, value in TF_ONE_THREAD.items()}
    # ":0": the scheduler's HTTP server (it starts one even without a dashboard) takes a free
    # port, so two runs at once (or a test's cluster beside a run) do not compete for 8787
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                           dashboard_address=":0", memory_limit=0, silence_logs=40, env=threads)
    return Client(cluster), cluster


def _precheck_all(root: Path, assignment: str, everyone: list[str], force: bool, quiet: bool):
    """Statuses of the submissions already done or unreadable; the students left to grade."""
    statuses, todo = {}, []
    for student in everyone:
        status = read_status(root, assignment, student)
        print_ = fingerprint(root, assignment, student)
        if not force and status.get("state") in DONE and status.get("fingerprint") == print_:
            statuses[student] = status
            continue
        previous = status
        status = {"student": student, "assignment": assignment, "state": "queued", "fingerprint": print_,
                  "run": RUN_ID}
        if previous.get("state") in ("queued", "running"):  # its run stopped (killed, interrupted) before it
            status["interrupted"] = (f"was {previous['state']} in run {previous.get('run', '?')}, which "
                                     "stopped before it was graded: graded again"
                                     + (f" (in that run {previous['retried']})" if previous.get("retried") else ""))
        reason = precheck(root, assignment, student)
        if reason:
            _zero_grades(root, assignment, student)
            status.update(state="failed", reason=reason, seconds=0.0, exit_code=None, notes=[],
                          tests=test_results(root, assignment, student), score=0.0,
                          finished=time.strftime("%Y-%m-%dT%H:%M:%S"))
            status["max_score"] = sum(t["max"] for t in status["tests"].values())
            write_status(root, assignment, student, status)
            statuses[student] = status
            if not quiet:
                print(f"        {student:24s} failed   {reason}", flush=True)
            continue
        _check_version(root, assignment, student, status, quiet)
        write_status(root, assignment, student, status)
        todo.append(student)
    return statuses, todo


def _check_version(root: Path, assignment: str, student: str, status: dict, quiet: bool) -> None:
    """One warning line (and the status's ``warning``) for a submission of another course version."""
    notebook = json.loads((root / "submitted" / student / assignment / f"{assignment}.ipynb")
                          .read_text(encoding="utf-8"))
    warning = version_warning(notebook, __version__)
    if warning:
        status["warning"] = warning
        if not quiet:
            print(f"        {student:24s} warning  {warning}", flush=True)


def _submit_all(client, root: Path, assignment: str, todo: list[str], extra, job_timeout: float, ship: bool,
                retry: bool = False):
    futures = {}
    instructor = instructor_files(root, assignment) if ship else None
    for student in todo:
        if ship:
            task, where = autograde_shipped, (assignment, student, instructor,
                                              submission_files(root, assignment, student))
        else:
            task, where = autograde_one, (str(root), assignment, student)
        future = client.submit(task, *where, list(extra or []), job_timeout,
                               key=f"autograde-{assignment}-{student}" + ("-retry" if retry else ""), pure=False,
                               priority=10 if retry else 0)  # a retried job goes first
        futures[future] = student
        status = read_status(root, assignment, student)
        status["state"] = "running"  # submitted to the engine; "queued" until then
        write_status(root, assignment, student, status)
    return futures


def _lost_worker(root: Path, assignment: str, student: str, future) -> str | None:
    """Why the job's worker process was lost (killed from outside, crashed), or None: a job that
    returned, or that its own watchdog ended (past --job-timeout), is not lost."""
    if future.status != "error":
        return None
    if status_path(root, assignment, student).with_suffix(".timed-out").is_file():
        return None
    return type(future.exception()).__name__


def _job_result(root: Path, assignment: str, student: str, future, ship: bool) -> dict:
    """What a finished job returned (recorded in the gradebook here for ``--ship``)."""
    try:
        job = future.result()
    except Exception as error:  # noqa: BLE001 (a lost worker, a crashed job)
        job = {"exit_code": None, "seconds": None, "notes": [], "errors": [repr(error)]}
        marker = status_path(root, assignment, student).with_suffix(".timed-out")
        if marker.is_file():  # the job's watchdog ended its worker
            marker.unlink()
            job["timed_out"] = True
    if ship:
        executed = job.pop("executed", None)
        if executed:
            recorded = record_shipped(root, assignment, student, executed)
            job["record_seconds"] = recorded["record_seconds"]
            if not recorded["recorded"]:
                job.update(exit_code=job.get("exit_code") or -1, errors=recorded["errors"])
        else:  # nothing came back: 0 in the gradebook, as for an unreadable submission
            _zero_grades(root, assignment, student)
    return job


def _progress(done: int, total: int, student: str, status: dict, job: dict) -> None:
    score = f"{status.get('score', 0):g}/{status.get('max_score', 0):g}" if "score" in status else "-"
    print(f"[{done:3d}/{total}] {student:24s} {status['state']:7s} {score:>7s} "
          f"{job.get('seconds') or 0:6.1f} s  {status['reason'][:160]}", flush=True)


def _run_jobs(root: Path, assignment: str, todo: list[str], *, workers: int, scheduler: str | None,
              extra, job_timeout: float, ship: bool, quiet: bool) -> dict[str, dict]:
    from dask.distributed import as_completed

    statuses = {}
    client, cluster = _client(scheduler, workers)
    try:
        futures = _submit_all(client, root, assignment, todo, extra, job_timeout, ship)
        pending = as_completed(futures)
        done = 0
        for future in pending:
            student = futures[future]
            status = read_status(root, assignment, student)
            lost = _lost_worker(root, assignment, student, future)
            if lost and not status.get("retried"):  # once: a second loss is the submission's doing
                status["retried"] = f"its worker process died before the job ended ({lost}): graded again"
                write_status(root, assignment, student, status)
                retry = _submit_all(client, root, assignment, [student], extra, job_timeout, ship, retry=True)
                futures.update(retry)
                pending.update(retry)
                continue
            done += 1
            job = _job_result(root, assignment, student, future, ship)
            status = finish(root, assignment, student, job, status)
            write_status(root, assignment, student, status)
            statuses[student] = status
            if not quiet:
                _progress(done, len(todo), student, status, job)
    finally:
        with contextlib.suppress(Exception):  # workers already gone: nothing to release
            client.run(release_spare_kernels)
        client.close()
        if cluster is not None:
            cluster.close()
        reap_orphan_kernels()  # kernels of workers that were killed (this machine only)
    return statuses


def grade_class(root: Path, assignment: str, *, workers: int | None = None, scheduler: str | None = None,
                force: bool = False, only: list[str] | None = None, extra: list[str] | None = None,
                job_timeout: float = 3600, quiet: bool = False, ship: bool = False) -> dict[str, dict]:
    """Grade every submission of ``assignment`` under ``root``; return the statuses.

    ``ship``: send each job the files it needs instead of the course directory's path, and
    write the gradebook here alone (for workers on machines that do not share the course).
    """
    root = Path(root).resolve()
    if not (root / "gradebook.db").is_file():
        raise SystemExit(f"{root / 'gradebook.db'} is missing: run `nbgrader generate_assignment "
                         f"{assignment}` first")
    warn_if_unsandboxed(lambda message: print(message, flush=True))  # once per run, before anything
    folder = root / STATUS_DIR / assignment
    run_lock = _lock(folder / RUN_LOCK, wait=False)
    if run_lock is None:  # one run per assignment at a time: the second waits, then grades what is left
        holder = (folder / RUN_LOCK).read_text().strip() or "?"
        print(f"another classgrade run ({holder}) is grading {assignment}: waiting for it to finish", flush=True)
        run_lock = _lock(folder / RUN_LOCK)
    try:
        run_lock.seek(0)
        run_lock.truncate()
        run_lock.write(f"run {RUN_ID}, process {os.getpid()}")
        run_lock.flush()
        _lock(folder / JOBS_LOCK).close()  # the workers of a killed run have ended their jobs
        return _grade_locked(root, assignment, workers=workers, scheduler=scheduler, force=force, only=only,
                             extra=extra, job_timeout=job_timeout, quiet=quiet, ship=ship)
    finally:
        run_lock.close()


def _grade_locked(root: Path, assignment: str, *, workers, scheduler, force, only, extra, job_timeout, quiet,
                  ship) -> dict[str, dict]:
    everyone = only or submitted_students(root, assignment)
    statuses, todo = _precheck_all(root, assignment, everyone, force, quiet)
    if not quiet:
        print(f"{assignment}: {len(everyone)} submissions, {len(todo)} to grade, "
              f"{len(everyone) - len(todo)} already done or unreadable", flush=True)
    if not todo:
        return statuses
    workers = workers or default_workers()
    start = time.monotonic()
    statuses.update(_run_jobs(root, assignment, todo, workers=workers, scheduler=scheduler, extra=extra,
                              job_timeout=job_timeout, ship=ship, quiet=quiet))
    if not quiet:
        elapsed = time.monotonic() - start
        print(f"graded {len(todo)} submissions in {elapsed:.1f} s ({elapsed / len(todo):.2f} s each) "
              f"with {workers if not scheduler else 'the scheduler' + chr(39) + 's'} workers; "
              f"statuses in {root / STATUS_DIR / assignment}", flush=True)
    return statuses


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rnncourse.classgrade", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("assignment")
    parser.add_argument("--root", default=".", help="the course directory (default: here)")
    parser.add_argument("--workers", type=int, default=None, help="local workers (default: one per core)")
    parser.add_argument("--scheduler", default=None, help="address of a running Dask scheduler")
    parser.add_argument("--ship", action="store_true",
                        help="workers get the files, not the course directory; the gradebook is written "
                             "here only (use it with --scheduler when workers are on other machines)")
    parser.add_argument("--force", action="store_true", help="grade again what is already graded")
    parser.add_argument("--student", action="append", help="only this student (repeatable)")
    parser.add_argument("--job-timeout", type=float, default=3600,
                        help="seconds one submission may take in all (default 3600)")
    parser.add_argument("--nbgrader-arg", action="append", default=[],
                        help="extra argument for nbgrader autograde, e.g. --nbgrader-arg=--GuardedExecute.timeout=60")
    args = parser.parse_args(argv)
    statuses = grade_class(Path(args.root), args.assignment, workers=args.workers, scheduler=args.scheduler,
                           force=args.force, only=args.student, extra=args.nbgrader_arg,
                           job_timeout=args.job_timeout, ship=args.ship)
    failed = sorted(s for s, st in statuses.items() if st.get("state") != "graded")
    if failed:
        print(f"not graded ({len(failed)}): {', '.join(failed)}: see their status files", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
