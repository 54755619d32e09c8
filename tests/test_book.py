"""The website: builds offline with warnings as errors, every page executed cleanly."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from bookpages import build_failure, toc_files
from bookpages import notebook_pages as chapter_pages

REPO = Path(__file__).resolve().parent.parent
HTML = REPO / "_build" / "html"
TF_NOISE = ("absl::InitializeLog", "oneDNN custom operations", "cpu_feature_guard",
            "rebuild TensorFlow", "WARNING:absl")


pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def build(built_book):
    return built_book


def test_book_builds_with_warnings_as_errors(build):
    assert build.returncode == 0, build_failure(build)
    reports = HTML / "reports"
    assert not reports.exists() or not any(reports.iterdir()), f"execution reports in {reports}"


@pytest.mark.parametrize("page", toc_files())
def test_every_page_in_the_toc_has_its_html(build, page):
    assert (HTML / f"{page}.html").is_file(), f"{page} is in _toc.yml but has no HTML"


@pytest.mark.parametrize("page", toc_files())
def test_no_page_holds_an_error_a_stderr_block_or_tensorflow_noise(build, page):
    text = (HTML / f"{page}.html").read_text(encoding="utf-8")
    assert not re.search(r'class="[^"]*\boutput (stderr|traceback)\b', text), f"{page}: stderr/error output"
    for noise in TF_NOISE:
        assert noise not in text, f"{page}: TensorFlow log line ({noise})"


@pytest.mark.parametrize("page", chapter_pages())
def test_chapters_executed_with_figures_and_math(build, page):
    text = (HTML / f"{page}.html").read_text(encoding="utf-8")
    assert "cell_output" in text, f"{page}: no executed output"
    assert re.search(r"<figcaption", text), f"{page}: no captioned figure"
    assert re.search(r'<img[^>]+src="[^"]+\.png"', text), f"{page}: no plot image"
    assert re.search(r'class="math', text), f"{page}: no math"


def test_the_run_times_page_lists_every_notebook_page_in_book_order(build):
    """The build's own table of execution times (chapters/run_times.md): one row per page
    that runs code, in the order of the book, each with its title, a time and its result."""
    text = (HTML / "chapters" / "run_times.html").read_text(encoding="utf-8")
    table = re.search(r'<table[^>]*course-run-times.*?</table>', text, flags=re.DOTALL)
    assert table, "no run-times table"
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", table.group(0), flags=re.DOTALL)[1:]
    cells = [re.findall(r"<td><p>(.*?)</p></td>", row, flags=re.DOTALL) for row in rows]
    pages = ["chapters/" + re.search(r'href="([^"#]+)\.html"', c[0]).group(1) for c in cells]
    assert pages == chapter_pages()
    for page, (link, seconds, result, _) in zip(pages, cells):
        assert re.sub(r"<[^>]+>", "", link) != page, f"{page}: shown by file name, not title"
        assert result == "ran to the end" and float(seconds) > 0, f"{page}: {seconds} s, {result}"


def test_pages_were_read_and_executed_in_parallel(build):
    """_ext/parallel_pages.py turns on Sphinx's parallel read on a machine with several cores
    (Sphinx refuses, with a warning that -W makes an error, if an extension is not safe)."""
    import os

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if int(os.environ.get("BOOK_JOBS") or cores or 1) < 2:
        pytest.skip("one core: the book builds serially")
    assert "[parallel_pages] executing pages in" in build.stdout


def test_every_executed_page_s_kernel_came_from_the_zygote(build):
    """_ext/page_kernels.py: a stub that gets no kernel from the zygote starts one itself and says
    so on the build's stderr (the page still runs; only the time it takes would differ)."""
    import sys

    sys.path.insert(0, str(REPO / "_ext"))
    import page_kernels

    if not page_kernels.enabled():
        pytest.skip("no zygote here (BOOK_ZYGOTE=0, or not Linux)")
    assert "no kernel from the zygote" not in build.stderr


def test_no_seeded_run_was_trained_twice_by_this_build(build, book_started):
    """rnncourse.runcache: pages that show the same seeded run share it. A run trained by this
    build under two cache entries (say ``lag_sweep`` in one page and ``gradient_study``, which
    trains exactly like it, in another) is the same run: the same held-out accuracy after
    every epoch. Only runs trained by this build count: its cache may hold older code's."""
    import pickle

    fresh = [p for p in (REPO / "_build" / ".run_cache").glob("*.pkl") if p.stat().st_mtime >= book_started]
    trained: dict[tuple, list[str]] = {}
    for path in fresh:
        with open(path, "rb") as handle:
            result, _weights = pickle.load(handle)
        run = getattr(result, "run", result)  # a GradientStudy holds its Run
        same = (run.task, run.cell, run.lag, run.seed, run.units, run.params, run.val_accuracy_per_epoch)
        trained.setdefault(same, []).append(path.name.split("-")[0])
    twice = {k[:5]: names for k, names in trained.items() if len(names) > 1}
    assert not twice, f"trained more than once (task, cell, lag, seed, units): {twice}"
