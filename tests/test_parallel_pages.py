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

jupyter_cache = pytest.importorskip("jupyter_cache")


def env_for(path: Path, mode: str = "cache"):
    return types.SimpleNamespace(mystnb_config=types.SimpleNamespace(execution_mode=mode,
                                                                     execution_cache_path=str(path)))


def _use_cache(path, queue):
    try:
        cache = jupyter_cache.get_cache(path)
        cache.list_cache_records()
        queue.put("ok")
    except Exception as error:  # noqa: BLE001
        queue.put(f"{type(error).__name__}: {error}")


def test_the_database_exists_before_the_readers_fork_and_readers_starting_together_all_succeed(tmp_path):
    path = tmp_path / ".jupyter_cache"
    parallel_pages.create_execution_cache(None, env_for(path), [])
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
    parallel_pages.create_execution_cache(None, env_for(path), [])
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
    parallel_pages.create_execution_cache(None, env_for(path, mode="off"), [])
    assert not path.exists()
