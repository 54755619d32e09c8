"""_ext/parallel_pages.py: the execution cache that the book's reader processes share.

A clean parallel build once stopped in CI with no page written: two readers found no
jupyter-cache database and both created its tables. The extension now creates the database
in the main process, before the readers fork, and makes every connection wait for SQLite's
lock instead of failing after 5 s.
"""

from __future__ import annotations

import multiprocessing
import sqlite3
import sys
import threading
import time
import types
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "_ext"))
import parallel_pages

from rnncourse import input_pipeline

jupyter_cache = pytest.importorskip("jupyter_cache")


def env_for(path: Path, mode: str = "cache"):
    return types.SimpleNamespace(mystnb_config=types.SimpleNamespace(execution_mode=mode,
                                                                     execution_cache_path=str(path)))


def app_for(srcdir: Path, parallel: int = 2):
    return types.SimpleNamespace(srcdir=str(srcdir), parallel=parallel)


def _use_cache(path, queue):
    try:
        cache = jupyter_cache.get_cache(path)
        cache.list_cache_records()
        queue.put("ok")
    except Exception as error:  # noqa: BLE001
        queue.put(f"{type(error).__name__}: {error}")


def test_the_database_exists_before_the_readers_fork_and_readers_starting_together_all_succeed(tmp_path):
    path = tmp_path / ".jupyter_cache"
    parallel_pages.create_execution_cache(app_for(tmp_path), env_for(path), [])
    with sqlite3.connect(path / "global.db") as db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"nbcache", "nbproject", "settings"} <= tables
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    readers = [context.Process(target=_use_cache, args=(str(path), queue)) for _ in range(4)]
    for reader in readers:
        reader.start()
    for reader in readers:
        reader.join(60)
    assert sorted(queue.get(timeout=5) for _ in readers) == ["ok"] * 4


def test_a_reader_waits_for_a_lock_held_longer_than_sqlites_default_five_seconds(tmp_path):
    path = tmp_path / ".jupyter_cache"
    parallel_pages.create_execution_cache(app_for(tmp_path), env_for(path), [])
    held = threading.Event()

    def hold():
        with sqlite3.connect(path / "global.db") as db:
            db.execute("BEGIN EXCLUSIVE")
            held.set()
            time.sleep(6)

    holder = threading.Thread(target=hold)
    holder.start()
    assert held.wait(30)
    start = time.monotonic()
    jupyter_cache.get_cache(str(path)).change_cache_limit(500)  # a write: waits for the lock
    waited = time.monotonic() - start
    holder.join()
    assert waited > 4, waited
    assert jupyter_cache.get_cache(str(path)).get_cache_limit() == 500


def test_nothing_is_created_when_pages_are_not_executed_through_the_cache(tmp_path):
    path = tmp_path / ".jupyter_cache"
    parallel_pages.create_execution_cache(app_for(tmp_path), env_for(path, mode="off"), [])
    assert not path.exists()


def _configure(monkeypatch, tmp_path, jobs: str):
    monkeypatch.setenv("BOOK_JOBS", jobs)
    monkeypatch.delenv("RNNCOURSE_RUN_CACHE", raising=False)           # restored afterwards
    monkeypatch.delenv(input_pipeline.ENV, raising=False)
    monkeypatch.setattr(parallel_pages.sphinx.builders, "make_chunks",
                        parallel_pages.sphinx.builders.make_chunks)   # restored afterwards
    monkeypatch.setattr(parallel_pages.sphinx.builders, "ParallelTasks",
                        parallel_pages.sphinx.builders.ParallelTasks)
    app = types.SimpleNamespace(parallel=1, srcdir=str(tmp_path), outdir=str(tmp_path / "html"),
                                extensions={})
    parallel_pages.read_in_parallel(app, types.SimpleNamespace(source_suffix={".md": "myst-nb"}))
    return app


THREADS = ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OPENBLAS_NUM_THREADS")


def test_a_parallel_build_gives_each_kernel_one_thread_unless_the_author_chose(
        monkeypatch, tmp_path):
    for name in THREADS:
        monkeypatch.delenv(name, raising=False)
    app = _configure(monkeypatch, tmp_path, "2")
    assert app.parallel == 2
    assert {name: parallel_pages.os.environ.get(name) for name in THREADS} \
        == dict.fromkeys(THREADS, "1")

    monkeypatch.setenv("TF_NUM_INTRAOP_THREADS", "4")                  # the author's own choice
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "2")
    _configure(monkeypatch, tmp_path, "2")
    assert parallel_pages.os.environ["TF_NUM_INTRAOP_THREADS"] == "4"
    assert parallel_pages.os.environ["OPENBLAS_NUM_THREADS"] == "2"


def test_a_serial_build_leaves_the_libraries_their_default_threads(monkeypatch, tmp_path):
    for name in THREADS:
        monkeypatch.delenv(name, raising=False)
    app = _configure(monkeypatch, tmp_path, "1")
    assert app.parallel == 1
    assert not any(name in parallel_pages.os.environ for name in THREADS)


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_every_build_asks_for_one_thread_input_pipelines_unless_the_author_chose(
        monkeypatch, tmp_path, jobs):
    app = _configure(monkeypatch, tmp_path, jobs)
    assert parallel_pages.os.environ[input_pipeline.ENV] == "1"
    assert input_pipeline.requested()

    monkeypatch.setenv(input_pipeline.ENV, "0")                        # the author's own choice
    parallel_pages.read_in_parallel(app, None)
    assert not input_pipeline.requested()


def _record(cache, uri: Path, seconds: float, code: str) -> None:
    import nbformat
    from jupyter_cache.base import CacheBundleIn

    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)])
    cache.cache_notebook_bundle(CacheBundleIn(notebook, str(uri), data={"execution_seconds": seconds}),
                                check_validity=False)


def test_pages_start_longest_first_by_the_cache_s_newest_record_else_by_the_expected_times(
        monkeypatch, tmp_path):
    path = tmp_path / ".jupyter_cache"
    (tmp_path / "chapters").mkdir()
    parallel_pages.create_execution_cache(app_for(tmp_path), env_for(path), [])
    cache = jupyter_cache.get_cache(str(path))
    page = tmp_path / "chapters" / "page.md"
    _record(cache, page, 500.0, "1")        # an older version of the page was slow
    _record(cache, page, 3.0, "2")          # its newest version is quick
    _record(cache, tmp_path.parent / "elsewhere.md", 900.0, "3")   # not a page of this book
    assert parallel_pages.recorded_seconds(cache, tmp_path) == {"chapters/page": 3.0}

    make_chunks = parallel_pages.one_page_per_process(
        {"chapters/a": 10, "chapters/b": 200, "chapters/page": 100, "chapters/page-2": 5})
    assert make_chunks(["chapters/a", "chapters/page", "intro", "chapters/b"], 2) == \
        [["chapters/b"], ["chapters/page"], ["chapters/a"], ["intro"]]

    # what the build uses: the expected times, overridden by the cache's records
    monkeypatch.setattr(parallel_pages.sphinx.builders, "make_chunks",
                        parallel_pages.sphinx.builders.make_chunks)   # restored afterwards
    parallel_pages.create_execution_cache(app_for(tmp_path), env_for(path), [])
    chunks = parallel_pages.sphinx.builders.make_chunks(["chapters/page", "chapters/comparison"], 2)
    assert chunks == [["chapters/comparison"], ["chapters/page"]]


def _slow_identity(argument):
    time.sleep(0.3)   # every task is added while the first one still runs
    return argument


def test_waiting_readers_start_in_the_order_they_were_added(tmp_path):
    def run(tasks_class):
        started = []
        tasks = tasks_class(1)
        for name in "abcd":
            tasks.add_task(_slow_identity, name, lambda argument, result: started.append(result))
        tasks.join()
        return started

    assert run(parallel_pages.InOrderParallelTasks) == list("abcd")
    # Sphinx's own class starts the last one added first: why the extension replaces it
    assert run(parallel_pages.sphinx.util.parallel.ParallelTasks) == list("adcb")
