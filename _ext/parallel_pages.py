"""Execute the book's pages on every core at once.

myst-nb executes a page while Sphinx *reads* it, so the pages run in parallel exactly when
Sphinx reads in parallel. Jupyter Book 1's command line has no ``-j``; this extension turns
on Sphinx's parallel read (every extension the book uses declares itself parallel-read
safe, or Sphinx would refuse with a warning, which ``-W`` makes an error) and gives each
page its own reader process, so that one slow page does not share a process with the others
(Sphinx would otherwise read a fixed block of pages per process).

Which page starts first matters: with the longest page last, one core works alone at the
end. Pages start longest first, by the seconds the execution cache last recorded for them
(any earlier version of the page), else by :data:`EXPECTED_SECONDS` (a clean build's times),
and in that order: Sphinx starts waiting readers last-added first, which put the pages in
reverse alphabetical order, and gru.md, one of the longest, ran alone at the end.

``BOOK_JOBS`` sets the number of processes (default: the number of cores; ``1``: serial).
In a parallel build each page's kernel runs TensorFlow and NumPy's BLAS (OpenBLAS) on one
thread, its reader's core: with the libraries' default threads two pages' threads outnumber the
cores, and OpenBLAS's workers spin while they wait (numbers where each is set). comparison.md,
which times Keras layers, gets one thread too; its timing checks held in every trial. In every
build each page's ``model.fit`` feeds its model on one thread
(:mod:`rnncourse.input_pipeline`: the same numbers, sooner).
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
import sphinx.util.parallel
from sphinx.application import Sphinx
from sphinx.util import logging

from rnncourse import TF_ONE_THREAD, input_pipeline

logger = logging.getLogger(__name__)
#: One OpenBLAS thread (NumPy's and SciPy's BLAS read it when they load) for the kernels of a
#: parallel build.
BLAS_ONE_THREAD = {"OPENBLAS_NUM_THREADS": "1"}
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


#: Seconds each page's code took in a clean parallel build on two cores (this machine,
#: 2026-12-04; comparison.md also trained the LSTM(32) runs of seeds 0 and 1 that lstm.md and
#: parallel_rnns.md loaded from the run cache): the order of a build whose execution cache has
#: no record of a page. Only the order depends on them; a page missing here counts as 0 s.
EXPECTED_SECONDS = {
    "chapters/comparison": 86, "chapters/gru": 62, "chapters/vanishing_gradients": 40,
    "chapters/parallel_rnns": 40, "chapters/seq2seq": 38, "chapters/text": 38,
    "chapters/sequence_classification": 37, "chapters/lstm": 34, "chapters/time_series": 13,
    "chapters/simple_rnn": 11, "chapters/bptt": 5, "chapters/sequences": 5,
}


def recorded_seconds(cache: Any, srcdir: Path) -> dict[str, float]:
    """The execution seconds the cache last recorded for each page (its newest record)."""
    seconds: dict[str, tuple[Any, float]] = {}
    for record in cache.list_cache_records():
        value = (record.data or {}).get("execution_seconds")
        try:
            docname = Path(record.uri).resolve().relative_to(srcdir).with_suffix("").as_posix()
        except ValueError:
            continue
        if isinstance(value, (int, float)) and (docname not in seconds
                                                or record.created > seconds[docname][0]):
            seconds[docname] = (record.created, float(value))
    return {docname: value for docname, (_, value) in seconds.items()}


def one_page_per_process(expected: dict[str, float]):
    """A ``make_chunks`` for the read phase: one page a chunk, the longest first."""

    def make_chunks(arguments, nproc, maxbatch=10):
        return [[docname] for docname in sorted(arguments, key=lambda d: -expected.get(d, 0.0))]

    return make_chunks


class _FirstInFirstOut(dict):
    """Sphinx's waiting readers, started in the order they were added (Sphinx pops the last)."""

    def popitem(self):
        key = next(iter(self))
        return key, self.pop(key)


class InOrderParallelTasks(sphinx.util.parallel.ParallelTasks):
    def __init__(self, nproc: int) -> None:
        super().__init__(nproc)
        self._precvsWaiting = _FirstInFirstOut()


_SPHINX_MAKE_CHUNKS = sphinx.builders.make_chunks
_SPHINX_PARALLEL_TASKS = sphinx.builders.ParallelTasks


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
        sphinx.builders.make_chunks = one_page_per_process(dict(EXPECTED_SECONDS))
        sphinx.builders.ParallelTasks = InOrderParallelTasks
        # One reader per core, so each page's kernel gets one TensorFlow thread. TensorFlow's
        # default pools make the readers' kernels compete for the cores: two lag-50 LSTM runs
        # at once took 14.4-15.8 s of CPU and 15.4-21.6 s each with the default, 11.7-12.0 s of
        # CPU and 13.7-14.4 s with one thread, and trained the same weights. A value set in the
        # environment is kept.
        # NumPy's OpenBLAS too: its worker threads spin while they wait for work, so two pages'
        # NumPy calls kept four threads busy on two cores. Beside gru.md, comparison.md's timing
        # cell took 32 s (38 s of CPU) with OpenBLAS's default threads and 6 s (12 s of CPU)
        # with one. The zygote (_ext/page_kernels.py) imports NumPy, so this is set before it
        # starts, for every page.
        for name, value in {**TF_ONE_THREAD, **BLAS_ONE_THREAD}.items():
            os.environ.setdefault(name, value)
        logger.info(f"[parallel_pages] executing pages in {app.parallel} processes")
    # Keras's input pipeline, a tf.data map on its own autotuned thread pool, left both cores
    # 20-38 % idle with two runs at once; on one thread (seed_everything applies it when this is
    # set) a GRU run took 6.0-6.2 s instead of 8.7-9.8 s beside another (6.2 s instead of 8.4 s
    # alone), with the same weights. Every build, serial too; an author's own value is kept.
    os.environ.setdefault(input_pipeline.ENV, "1")
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
    recorded = recorded_seconds(cache, Path(app.srcdir).resolve())  # creates the tables when new
    if app.parallel > 1:
        sphinx.builders.make_chunks = one_page_per_process({**EXPECTED_SECONDS, **recorded})
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
    sphinx.builders.ParallelTasks = _SPHINX_PARALLEL_TASKS
    return []


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("config-inited", read_in_parallel)
    app.connect("env-before-read-docs", create_execution_cache)
    app.connect("env-updated", write_in_parallel)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
