"""Execute the book's pages on every core at once.

myst-nb executes a page while Sphinx *reads* it, so the pages run in parallel exactly when
Sphinx reads in parallel. Jupyter Book 1's command line has no ``-j``; this extension turns
on Sphinx's parallel read (every extension the book uses declares itself parallel-read
safe, or Sphinx would refuse with a warning, which ``-W`` makes an error) and gives each
page its own reader process, longest page first, so that one slow page does not share a
process with the others (Sphinx would otherwise read a fixed block of pages per process).

``BOOK_JOBS`` sets the number of processes (default: the number of cores; ``1``: serial).
The extension also turns on the run cache (:mod:`rnncourse.runcache`) for the kernels it
starts, in ``_build/.run_cache``, so that pages showing the same seeded training run train
it once.

Reader processes share myst-nb's execution cache (jupyter-cache, one SQLite file), which is
not made for several writers: two readers that find no database both create its tables (the
second fails with "table ... already exists" and the whole build stops), and a writer gives
up after SQLite's default 5 s wait for the lock. So the main process creates the database
before the readers start, and every connection waits up to ``SQLITE_WAIT`` seconds.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import sphinx.builders
from sphinx.application import Sphinx
from sphinx.util import logging

logger = logging.getLogger(__name__)
SQLITE_WAIT = 300  # seconds a reader waits for the execution cache's lock (SQLite's default: 5)


def jobs() -> int:
    """Reader processes: ``BOOK_JOBS``, or the cores this process may use."""
    value = os.environ.get("BOOK_JOBS", "").strip()
    if value:
        return max(1, int(value))
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS
        return max(1, os.cpu_count() or 1)


def one_page_per_process(srcdir: Path, suffixes: tuple[str, ...]):
    """A ``make_chunks`` for the read phase: one page a chunk, the largest source first."""

    def size(docname: str) -> int:
        for suffix in suffixes:
            path = srcdir / (docname + suffix)
            if path.exists():
                return path.stat().st_size
        return 0

    def make_chunks(arguments, nproc, maxbatch=10):
        return [[docname] for docname in sorted(arguments, key=size, reverse=True)]

    return make_chunks


_SPHINX_MAKE_CHUNKS = sphinx.builders.make_chunks


def declare_multitoc_numbering_parallel_safe(app: Sphinx) -> None:
    """sphinx_external_toc always loads sphinx_multitoc_numbering, which does not say whether
    it is parallel-read safe, so Sphinx would read serially (with a warning that -W makes an
    error). All it does is replace ``TocTreeCollector.assign_section_numbers``, which Sphinx
    calls in the main process after the pages' environments are merged: it is safe."""
    extension = app.extensions.get("sphinx_multitoc_numbering")
    if extension is not None and extension.parallel_read_safe is None:
        extension.parallel_read_safe = True


def read_in_parallel(app: Sphinx, config: Any) -> None:
    declare_multitoc_numbering_parallel_safe(app)
    n = jobs()
    if n > 1 and app.parallel <= 1:
        app.parallel = n
    if app.parallel > 1:
        suffixes = tuple(config.source_suffix) if config.source_suffix else (".md",)
        sphinx.builders.make_chunks = one_page_per_process(Path(app.srcdir), suffixes)
        logger.info(f"[parallel_pages] executing pages in {app.parallel} processes")
    os.environ.setdefault("RNNCOURSE_RUN_CACHE", str(Path(app.outdir).parent / ".run_cache"))


def _patient_sqlite() -> None:
    """Make jupyter-cache's SQLite connections wait for the lock instead of failing after 5 s."""
    import jupyter_cache.cache.db as cache_db

    if getattr(cache_db.create_engine, "_patient", False):
        return
    plain = cache_db.create_engine

    def create_engine(url, *args, **kwargs):
        if str(url).startswith("sqlite"):
            kwargs.setdefault("connect_args", {}).setdefault("timeout", SQLITE_WAIT)
        return plain(url, *args, **kwargs)

    create_engine._patient = True
    cache_db.create_engine = create_engine


def create_execution_cache(app: Sphinx, env: Any, docnames: list[str]) -> None:
    """Before the readers fork: the execution cache's database exists, its connections wait."""
    config = getattr(env, "mystnb_config", None)
    if config is None or config.execution_mode != "cache" or not config.execution_cache_path:
        return
    from jupyter_cache import get_cache

    _patient_sqlite()
    cache = get_cache(config.execution_cache_path)
    cache.list_cache_records()  # creates the tables when the database is new
    cache.db.dispose()  # no connection of this process is inherited by the readers


def write_in_parallel(app: Sphinx, env: Any) -> list[str]:
    """After reading: write the HTML with Sphinx's own chunks, in one process per core.

    Sphinx's parallel write resolves each page in the main process and hands it to
    ``app.parallel - 1`` writer processes, so one writer per core needs one process more
    than there are cores. With a warm execution cache (HTML and doctrees deleted) the build
    took 11.5-12.9 s this way and 14.5-15.2 s writing serially, and wrote the same files."""
    if app.parallel > 1:
        app.parallel = jobs() + 1
    sphinx.builders.make_chunks = _SPHINX_MAKE_CHUNKS
    return []


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("config-inited", read_in_parallel)
    app.connect("env-before-read-docs", create_execution_cache)
    app.connect("env-updated", write_in_parallel)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
