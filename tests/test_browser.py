"""The website as readers use it: a real browser, no network, notebooks one click away.

The built site (`_build/html`, from the `built_book` fixture) is served on 127.0.0.1 by a
thread of `http.server` and read by headless Chromium (Debian's `chromium`, driven by
Playwright; Playwright's own browser downloads are never used). Every page must load with
no console error, no failed request and no request to any other host; formulas must be
typeset by the MathJax the site serves itself; images must load; the sidebar, the search
page and the notebook downloads must work; screenshots at desktop and phone width are
saved to `_build/screenshots/`.

Without /usr/bin/chromium the browser tests are skipped, unless COURSE_REQUIRE_BROWSER=1
(CI sets it), which turns the skip into a failure. The checks of the built files run
without a browser.
"""

from __future__ import annotations

import html
import os
import re
import tempfile
import urllib.request
from pathlib import Path
from urllib.parse import quote_plus, unquote, urljoin, urlsplit

import nbformat
import pytest
import yaml
from bookpages import build_failure, notebook_pages, serve, toc_files

REPO = Path(__file__).resolve().parent.parent
HTML = REPO / "_build" / "html"
SCREENSHOTS = REPO / "_build" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCREENSHOT_PAGE = "chapters/simple_rnn"
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
# (query, a page that must be among the results).
SEARCHES = [
    ("forget gate", "chapters/lstm"),
    ("hidden state", "chapters/simple_rnn"),
    ("hidden state", "chapters/sequences"),
]
SOLUTION_MARKERS = (b"BEGIN SOLUTION", b"HIDDEN TESTS")
TIMEOUT_MS = 30_000


pytestmark = pytest.mark.slow


# --- what the book holds --------------------------------------------------------------------
def assignments() -> list[str]:
    return sorted(p.parent.name for p in (REPO / "exercises").glob("*/*.ipynb")
                  if p.stem == p.parent.name)


def repository_url() -> str:
    config = yaml.safe_load((REPO / "_config.yml").read_text(encoding="utf-8")) or {}
    return str((config.get("repository") or {}).get("url") or "").strip()


# --- the site, served -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def site(built_book) -> Path:
    assert built_book.returncode == 0, build_failure(built_book)
    return HTML


@pytest.fixture(scope="module")
def server(site):
    """http://127.0.0.1:<free port> serving _build/html, in a thread, for this module."""
    with serve(site) as url:
        yield url


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.read()


# --- the browser ----------------------------------------------------------------------------
def browser_missing(reason: str):
    if os.environ.get("COURSE_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{reason}, and COURSE_REQUIRE_BROWSER=1 requires the browser tests")
    pytest.skip(f"{reason}: browser tests skipped (apt-get install chromium; "
                "pip install -r requirements.txt)")


@pytest.fixture(scope="module")
def playwright():
    if not Path(CHROMIUM).is_file():
        browser_missing(f"{CHROMIUM} is missing")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        browser_missing("Playwright for Python is not installed")
    with sync_playwright() as pw:
        yield pw


def is_local(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("data", "blob", "about") or (
        parts.scheme in ("http", "https") and parts.hostname == "127.0.0.1")


def launch(playwright, **options):
    """A Chromium context with an empty profile; requests to other hosts are recorded and cut."""
    profile = tempfile.TemporaryDirectory(prefix="course-chromium-")
    context = playwright.chromium.launch_persistent_context(
        profile.name, executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
        accept_downloads=True, **options)
    context.set_default_timeout(TIMEOUT_MS)
    context.outside = []

    def guard(route):
        url = route.request.url
        if is_local(url) or url.startswith("file:"):
            route.continue_()
        else:
            context.outside.append(url)
            route.abort()

    context.route("**/*", guard)
    return context, profile


@pytest.fixture(scope="module")
def desktop(playwright):
    context, profile = launch(playwright, viewport=DESKTOP)
    yield context
    context.close()
    profile.cleanup()


@pytest.fixture(scope="module")
def phone(playwright):
    context, profile = launch(playwright, viewport=PHONE, is_mobile=True, has_touch=True,
                              device_scale_factor=2)
    yield context
    context.close()
    profile.cleanup()


WAIT_FOR_MATHJAX = """async () => {
  if (!document.querySelector('script[src*="mathjax"]')) return "no math on this page";
  for (let i = 0; i < 400; i++) {
    if (window.MathJax && MathJax.startup && MathJax.startup.promise) break;
    await new Promise(r => setTimeout(r, 50));
  }
  if (!(window.MathJax && MathJax.startup && MathJax.startup.promise)) return "MathJax did not start";
  await MathJax.startup.promise;
  return "typeset";
}"""

LOAD_IMAGES = """async () => {
  const article = document.querySelector("article.bd-article") || document.body;
  const images = [...article.querySelectorAll("img")];
  for (const img of images) {
    img.loading = "eager";
    img.scrollIntoView();
    if (!img.complete) await new Promise(r => { img.onload = img.onerror = r; setTimeout(r, 10000); });
  }
  window.scrollTo(0, 0);
  return images.map(img => ({src: img.currentSrc || img.src, width: img.naturalWidth}));
}"""

READ_MATH = """() => {
  const article = document.querySelector("article.bd-article") || document.body;
  const maths = [...article.querySelectorAll(".math")];
  const untypeset = maths.filter(m => !m.querySelector("mjx-container"))
                         .map(m => m.textContent.trim().slice(0, 80));
  const prose = article.cloneNode(true);
  prose.querySelectorAll("pre, code, script, style, .highlight, mjx-container").forEach(e => e.remove());
  const raw = ["$$", "\\\\(", "\\\\[", "\\\\begin{"].filter(s => prose.textContent.includes(s));
  return {math: maths.length, containers: article.querySelectorAll("mjx-container").length,
          untypeset, raw,
          launch: document.querySelectorAll(".dropdown-launch-buttons, [class*='btn-launch']").length};
}"""


def open_page(context, url: str):
    """Open url in a new tab; returns (page, report of everything that went wrong)."""
    page = context.new_page()
    report = {"console": [], "failed": [], "status": [], "requests": []}
    page.on("console", lambda m: report["console"].append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: report["console"].append(f"uncaught: {e}"))
    page.on("request", lambda r: report["requests"].append(r.url))
    page.on("requestfailed", lambda r: report["failed"].append(f"{r.url} ({r.failure})"))
    page.on("response", lambda r: report["status"].append(f"{r.status} {r.url}")
            if r.status >= 400 else None)
    response = page.goto(url, wait_until="load")
    report["main_status"] = response.status if response else None
    report["mathjax"] = page.evaluate(WAIT_FOR_MATHJAX)
    report["images"] = page.evaluate(LOAD_IMAGES)
    page.wait_for_load_state("networkidle")
    report.update(page.evaluate(READ_MATH))
    return page, report


@pytest.fixture(scope="module")
def visits(desktop, server):
    """Every page of the toc, opened once at desktop width (lazily, page by page)."""
    cache = {}

    def visit(page_name: str) -> dict:
        if page_name not in cache:
            before = len(desktop.outside)
            page, report = open_page(desktop, f"{server}/{page_name}.html")
            report["outside"] = desktop.outside[before:]
            page.close()
            cache[page_name] = report
        return cache[page_name]

    return visit


# --- every page -----------------------------------------------------------------------------
@pytest.mark.parametrize("page", toc_files())
def test_page_loads_with_no_error_no_failed_request_and_nothing_from_outside(visits, page):
    report = visits(page)
    assert report["main_status"] == 200, f"{page}: HTTP {report['main_status']}"
    assert not report["outside"], f"{page} asked other hosts (offline it breaks): {report['outside']}"
    non_local = [u for u in report["requests"] if not is_local(u)]
    assert not non_local, f"{page}: requests to other hosts: {non_local}"
    assert not report["failed"], f"{page}: failed requests: {report['failed']}"
    assert not report["status"], f"{page}: HTTP errors: {report['status']}"
    assert not report["console"], f"{page}: console errors: {report['console']}"


@pytest.mark.parametrize("page", toc_files())
def test_every_formula_is_typeset_by_the_sites_own_mathjax(visits, page):
    report = visits(page)
    if report["math"] == 0:
        assert report["mathjax"] == "no math on this page", f"{page}: {report['mathjax']}"
        assert not report["raw"], f"{page}: raw TeX delimiters {report['raw']} but no MathJax"
        return
    assert report["mathjax"] == "typeset", f"{page}: {report['mathjax']}"
    assert any(re.search(r"^http://127\.0\.0\.1:\d+/_static/mathjax/tex-mml-chtml\.js(\?|$)", u)
               for u in report["requests"]), f"{page}: MathJax not loaded from the site"
    assert report["containers"] >= report["math"] > 0
    assert not report["untypeset"], f"{page}: formulas left as TeX: {report['untypeset'][:5]}"
    assert not report["raw"], f"{page}: raw TeX delimiters in the text: {report['raw']}"


@pytest.mark.parametrize("page", toc_files())
def test_every_image_in_the_content_loads(visits, page):
    broken = [img["src"] for img in visits(page)["images"] if img["width"] == 0]
    assert not broken, f"{page}: images that did not load: {broken}"


@pytest.mark.parametrize("page", toc_files())
def test_no_launch_button_without_a_repository(visits, page):
    if repository_url():
        pytest.skip("_config.yml sets repository: url:, launch buttons are wanted")
    assert visits(page)["launch"] == 0, f"{page}: a launch button renders without a repository"


# --- navigating -----------------------------------------------------------------------------
@pytest.mark.parametrize("target", toc_files()[1:])
def test_the_sidebar_table_of_contents_navigates(desktop, server, target):
    page = desktop.new_page()
    try:
        page.goto(f"{server}/{toc_files()[0]}.html")
        link = page.locator(f'nav.bd-docs-nav a[href="{target}.html"]')
        assert link.count() == 1, f"no sidebar link to {target}"
        title = link.inner_text().strip()
        link.click()
        page.wait_for_url(f"{server}/{target}.html")
        heading = page.locator("article.bd-article h1").first.inner_text()
        assert title and title in heading, f"clicked {title!r}, landed on {heading!r}"
    finally:
        page.close()


def test_the_sidebar_opens_and_navigates_on_a_phone(phone, server):
    """The visible menu button opens the table of contents as a drawer (_static/course.js)."""
    target = toc_files()[-1]
    page = phone.new_page()
    try:
        page.goto(f"{server}/{toc_files()[0]}.html")
        page.locator("button.primary-toggle:visible").first.click()
        link = page.locator(f'#pst-primary-sidebar-modal nav.bd-docs-nav a[href="{target}.html"]')
        link.click()
        page.wait_for_url(f"{server}/{target}.html")
    finally:
        page.close()


def test_the_page_contents_open_on_a_phone(phone, server):
    page = phone.new_page()
    try:
        page.goto(f"{server}/{SCREENSHOT_PAGE}.html")
        page.locator("button.secondary-toggle:visible").first.click()
        page.locator("#pst-secondary-sidebar-modal #pst-page-toc-nav a").first.wait_for()
    finally:
        page.close()


def test_the_sidebar_button_collapses_the_sidebar_on_a_desktop(desktop, server):
    page = desktop.new_page()
    try:
        page.goto(f"{server}/{SCREENSHOT_PAGE}.html")
        sidebar = page.locator("#pst-primary-sidebar")
        assert sidebar.is_visible()
        page.locator("button.primary-toggle:visible").first.click()
        page.wait_for_function(
            "() => document.querySelector('#pst-primary-sidebar').classList.contains('pst-sidebar-hidden')")
    finally:
        page.close()


@pytest.mark.parametrize(("query", "expected"), SEARCHES)
def test_search_finds_a_term_on_its_chapter(desktop, server, query, expected):
    page = desktop.new_page()
    try:
        page.goto(f"{server}/search.html?q={quote_plus(query)}")
        page.locator("#search-results .search-summary").wait_for()
        hrefs = [a.get_attribute("href") for a in page.locator("#search-results ul.search li a").all()]
        found = [urlsplit(h).path for h in hrefs]
        assert f"{expected}.html" in found, f"searching {query!r} found {found}, not {expected}"
    finally:
        page.close()


# --- phone and desktop ----------------------------------------------------------------------
def test_screenshots_at_desktop_and_phone_width(desktop, phone, server):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    name = SCREENSHOT_PAGE.split("/")[-1]
    for label, context in (("desktop", desktop), ("phone", phone)):
        page, report = open_page(context, f"{server}/{SCREENSHOT_PAGE}.html")
        try:
            assert report["mathjax"] == "typeset" and not report["console"] and not report["failed"]
            page.screenshot(path=SCREENSHOTS / f"{name}-{label}.png")
            page.screenshot(path=SCREENSHOTS / f"{name}-{label}-full.png", full_page=True)
        finally:
            page.close()
    for png in SCREENSHOTS.glob(f"{name}-*.png"):
        assert png.stat().st_size > 10_000, f"{png} looks blank"


@pytest.mark.parametrize("page_name", notebook_pages())
def test_nothing_is_wider_than_a_phone(phone, server, page_name):
    """At 390 px the page never scrolls sideways; wide tables, code and equations scroll
    inside their own box, and figures shrink to the screen."""
    page, _ = open_page(phone, f"{server}/{page_name}.html")
    try:
        overflow = page.evaluate("""() => {
          const width = document.documentElement.clientWidth;
          const wide = [...document.querySelectorAll("article.bd-article img, article.bd-article mjx-container[display]")]
            .filter(e => e.getBoundingClientRect().right > width + 1 && !e.closest(".math, .mjx-scroll, [style*=overflow]"))
            .map(e => e.tagName + " " + (e.getAttribute("src") || "").slice(-40));
          return {page: document.documentElement.scrollWidth, width, wide};
        }""")
        assert overflow["page"] <= overflow["width"], f"{page_name} scrolls sideways on a phone: {overflow}"
        assert not overflow["wide"], f"{page_name}: wider than the phone: {overflow['wide']}"
    finally:
        page.close()


def test_a_chapter_reads_offline_from_the_file_system(desktop, site):
    """Opened as file://…/index.html with no server and no network, formulas still render."""
    page, report = open_page(desktop, (site / f"{SCREENSHOT_PAGE}.html").as_uri())
    page.close()
    assert report["mathjax"] == "typeset"
    assert report["containers"] > 0 and not report["untypeset"]
    others = [u for u in report["requests"] if not u.startswith(("file:", "data:"))]
    assert not others, f"offline page asked for {others}"


# --- notebooks one click away ---------------------------------------------------------------
def code_sources(notebook) -> list[str]:
    return [cell.source.strip() for cell in notebook.cells if cell.cell_type == "code"]


@pytest.mark.parametrize("page_name", notebook_pages())
def test_each_chapter_downloads_as_its_own_notebook_in_one_click(desktop, server, page_name):
    import jupytext

    page = desktop.new_page()
    try:
        page.goto(f"{server}/{page_name}.html")
        link = page.locator("p.course-notebook-download a")
        assert link.count() == 1, f"{page_name}: no notebook download link under the title"
        menu = page.locator("a.btn-download-notebook-button")
        assert menu.count() == 1, f"{page_name}: no .ipynb in the theme's download menu"
        assert urljoin(page.url, menu.get_attribute("href")) == urljoin(page.url, link.get_attribute("href"))
        with page.expect_download() as download_info:
            link.click()
        download = download_info.value
        assert download.suggested_filename == f"{Path(page_name).name}.ipynb"
        text = Path(download.path()).read_text(encoding="utf-8")
    finally:
        page.close()
    assert not text.lstrip().startswith("<"), "the notebook link serves HTML"
    notebook = nbformat.reads(text, as_version=4)
    nbformat.validate(notebook)
    assert notebook.metadata.kernelspec.name == "python3"
    page_code = code_sources(jupytext.read(REPO / f"{page_name}.md"))
    downloaded = code_sources(notebook)
    assert "COURSE_VERSION" in downloaded[0], "the download does not begin with the set-up cell"
    assert page_code and downloaded[1:] == page_code, "the notebook is not this page's code"


@pytest.mark.parametrize("assignment", assignments())
def test_each_student_notebook_is_on_the_site(server, assignment):
    rel = f"exercises/{assignment}/{assignment}.ipynb"
    served = fetch(f"{server}/{rel}")
    assert served == (REPO / rel).read_bytes(), f"{rel} on the site differs from the repository"
    notebook = nbformat.reads(served.decode("utf-8"), as_version=4)
    nbformat.validate(notebook)
    assert any(cell.cell_type == "code" for cell in notebook.cells)


@pytest.mark.parametrize("assignment", assignments())
def test_assignment_links_in_pages_download_the_student_notebook(site, server, assignment):
    """Any link in a page to <assignment>.ipynb (the {download} role) gives the student notebook."""
    expected = (REPO / "exercises" / assignment / f"{assignment}.ipynb").read_bytes()
    links = []
    for page_file in site.rglob("*.html"):
        for href in re.findall(r'href="([^"#?]+/' + re.escape(assignment) + r'\.ipynb)"',
                               page_file.read_text(encoding="utf-8")):
            if "_sources/" in href:  # the page's own notebook (chapters/gru.md is gru.ipynb too)
                continue
            page_url = f"{server}/{page_file.relative_to(site).as_posix()}"
            links.append((page_file.relative_to(site).as_posix(), urljoin(page_url, unquote(href))))
    if not links:
        pytest.skip(f"no page links {assignment}.ipynb yet")
    for page_name, url in links:
        assert fetch(url) == expected, f"{page_name}: {url} is not exercises/{assignment}"


def test_nothing_from_solutions_is_on_the_site(site):
    solution_files = {p.read_bytes() for p in (REPO / "solutions").rglob("*") if p.is_file()}
    leaks = []
    for path in site.rglob("*"):
        if not path.is_file():
            continue
        rel = path.relative_to(site).as_posix()
        data = path.read_bytes()
        if "solutions/" in rel or data in solution_files:
            leaks.append(rel)
        leaks += [f"{rel}: {m.decode()}" for m in SOLUTION_MARKERS if m in data]
    assert not leaks, f"instructor material in the site: {leaks[:10]}"


# --- the built files, without a browser -----------------------------------------------------
def html_pages(site: Path) -> list[Path]:
    return sorted(p for p in site.rglob("*.html") if "_static" not in p.parts)


def test_the_site_loads_no_script_style_or_font_from_another_host(site):
    outside = []
    for page_file in html_pages(site):
        text = page_file.read_text(encoding="utf-8")
        for tag in re.findall(r"<(?:script|link|img|iframe|source)\b[^>]*>", text):
            for url in re.findall(r'(?:src|href)="((?:https?:)?//[^"]+)"', tag):
                outside.append(f"{page_file.relative_to(site)}: {url}")
    assert not outside, "\n".join(outside[:20])
    css = [p for p in (site / "_static").rglob("*.css")]
    remote_css = [f"{p.relative_to(site)}: {m}" for p in css
                  for m in re.findall(r"(?:@import|url\()\s*['\"]?(https?://[^'\")]+)",
                                      p.read_text(encoding="utf-8", errors="replace"))]
    assert not remote_css, remote_css[:10]


def test_mathjax_and_its_fonts_are_part_of_the_site(site):
    mathjax = site / "_static" / "mathjax"
    assert (mathjax / "tex-mml-chtml.js").is_file()
    assert list((mathjax / "output" / "chtml" / "fonts" / "woff-v2").glob("*.woff"))
    assert (mathjax / "LICENSE").is_file()
    for page in notebook_pages():
        text = (site / f"{page}.html").read_text(encoding="utf-8")
        assert re.search(r'src="\.\./_static/mathjax/tex-mml-chtml\.js(\?v=\w+)?"', text), page
        assert "cdn.jsdelivr.net" not in text and "mathjax@" not in text, page


@pytest.mark.parametrize("page", notebook_pages())
def test_figures_are_numbered(site, page):
    text = (site / f"{page}.html").read_text(encoding="utf-8")
    if "<figcaption" not in text:
        pytest.skip(f"{page} has no captioned figure")
    assert re.search(r'<span class="caption-number">Fig\. \d+ </span>', text), f"{page}: numfig off"


def test_no_launch_button_markup_without_a_repository(site):
    if repository_url():
        pytest.skip("_config.yml sets repository: url:, launch buttons are wanted")
    found = [f"{p.relative_to(site)}" for p in html_pages(site)
             if re.search(r"launch-buttons|mybinder\.org|colab\.research", p.read_text(encoding="utf-8"))]
    assert not found, f"launch buttons without a repository: {found}"


def test_the_notation_page_names_every_symbol_and_gate_order(site):
    page = (site / "chapters" / "notation.html").read_text(encoding="utf-8")
    text = html.unescape(re.sub(r"<[^>]+>", "", page.split('<article class="bd-article"', 1)[-1]))
    for name in ("h_prev", "h0", "c_prev", "c0", "h_hat", "dh0", "dK", "dU", "db", "reset_after",
                 "(B, T, D)", "(D, kH)", "(H, kH)", "(kH,)", "(2, 3H)", "(B, T, H)",
                 "PyTorch", "CS231n", "Cho et al.", "colah"):
        assert name in text, f"notation page lacks {name!r}"
    assert "[ i | f | c | o ]" in text and "[ z | r | h ]" in text
