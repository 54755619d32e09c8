"""The course website as readers use it: offline math, notebooks one click away.

A small local Sphinx extension, loaded from `_config.yml` (`sphinx: local_extensions:`).

- **MathJax from the site, not a CDN.** When `mathjax_path` is a local path under
  `mathjax/` (set in `_config.yml`), the MathJax 3 files that the PyPI package
  `django-static-mathjax` ships (plain MathJax, no Django needed) are copied into
  `_build/html/_static/mathjax/` at the end of the build, so formulas render with no network.
- **Each notebook page as a real .ipynb.** A chapter that is a MyST-markdown notebook is
  converted with jupytext into `_sources/<page>.ipynb` (code cells, no outputs), offered in
  the theme's download menu and by a link under the page title.
- **Student notebooks on the site.** `exercises/` (nbgrader's release folder: student
  notebooks only) is copied to `_build/html/exercises/`, so each assignment has a stable
  address. A chapter links one with the `{download}` role,
  `` {download}`rnn_forward.ipynb </exercises/rnn_forward/rnn_forward.ipynb>` ``. Nothing from `solutions/` is ever copied, and a file in
  `exercises/` that still holds nbgrader's solution or hidden-test markers stops the build.
- **The course package on the site.** At the end of a build the helper package `rnncourse`
  is built into a wheel with pip's standard tooling (`pip wheel --no-deps
  --no-build-isolation`, offline, from a temporary copy so the repository gets no build
  folders) and served as `packages/rnncourse-<version>-py3-none-any.whl`. The *Set up your
  computer* page (`chapters/setup.md`) names it: `@COURSE_WHEEL@`, `@COURSE_VERSION@`,
  `@COURSE_SITE@` and `@COURSE_MISSING@` (the set-up cell's sentence) in that page are
  replaced when it is read.
- **Notebooks that know what they need.** Every chapter notebook the site offers begins with
  the set-up cell of `rnncourse/setupcell.py` (stops with one sentence when `rnncourse` is
  missing or another version); a student notebook in `exercises/` without the current
  version's cell stops the build. Next to every notebook download is a link to the set-up page.
- **No console error on any page.** Sphinx 7.4 writes an inline script that an extension
  adds after the builder starts twice (sphinx-thebe's `const THEBE_JS_URL = …`, declared
  twice, is a SyntaxError in every page); the page's script list is de-duplicated.
- **Run times in book order.** myst-nb's `{nb-exec-table}` (the *Run times* page) lists
  pages by file name, with an emoji that some systems cannot show; this extension replaces
  that table with one in the order of the book: each page's title, its run time, whether it
  ran to the end, and when it last ran.
- **Launch buttons only with a repository.** Binder/Colab buttons need the repository's
  address; unless `_config.yml` sets `repository: url:`, every launch provider is switched
  off, so no button points at Jupyter Book's placeholder repository.
"""

from __future__ import annotations

import html
import importlib.metadata
import json
import shutil
from pathlib import Path
from typing import Any

import yaml
from docutils import nodes
from sphinx.addnodes import pending_xref
from sphinx.application import Sphinx
from sphinx.errors import ExtensionError
from sphinx.transforms.post_transforms import SphinxPostTransform
from sphinx.util import logging
from sphinx.util.osutil import relative_uri

logger = logging.getLogger(__name__)

MATHJAX_DIST = "django-static-mathjax"
MATHJAX_ES5 = "mathjax/static/mathjax/es5"  # inside that distribution
MATHJAX_STATIC = "mathjax"  # _static/mathjax/ in the site
# What a combined component (e.g. tex-mml-chtml.js) loads on demand: TeX extensions
# (autoload), the CHTML fonts, the menu, accessibility (explorer, speech rules).
MATHJAX_PARTS = ["input", "output/chtml", "output/chtml.js", "ui", "a11y", "sre", "adaptors"]
LAUNCH_PROVIDERS = ("binderhub_url", "jupyterhub_url", "colab_url", "deepnote_url",
                    "jupyterlite_url", "thebe")
SOLUTION_MARKERS = (b"BEGIN SOLUTION", b"HIDDEN TESTS")
DOWNLOAD_CLASS = "course-notebook-download"
SETUP_CLASS = "course-notebook-setup"
SETUP_DOC = "chapters/setup"  # the Set up your computer page
SETUP_TOKENS = ("@COURSE_WHEEL@", "@COURSE_VERSION@", "@COURSE_SITE@", "@COURSE_MISSING@")


# --- the course package ------------------------------------------------------------------------
def setupcell_module(srcdir: str | Path):
    """rnncourse/setupcell.py of the book being built, loaded without importing rnncourse."""
    import importlib.util

    path = Path(srcdir) / "rnncourse" / "setupcell.py"
    spec = importlib.util.spec_from_file_location("_course_setupcell", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def course_version(app: Sphinx) -> str:
    return setupcell_module(app.srcdir).source_version(Path(app.srcdir) / "rnncourse")


def site_url(app: Sphinx) -> str:
    """The site's address when _config.yml sets `html: baseurl:` ('' otherwise)."""
    return str(getattr(app.config, "html_baseurl", "") or "").strip().rstrip("/")


def wheel_sources(srcdir: Path) -> list[Path]:
    package = [p for p in (srcdir / "rnncourse").rglob("*")
               if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"]
    return [srcdir / "pyproject.toml", *sorted(package)]


def build_wheel(app: Sphinx) -> Path:
    """The rnncourse wheel in <site>/packages/, rebuilt when its sources change.

    A wheel built from the same sources is kept in ``_build/.wheels/<digest of the sources>/``
    (beside myst-nb's execution cache), so a site rebuilt from scratch with unchanged sources
    copies it instead of running pip again (about 1.3 s)."""
    import hashlib
    import subprocess
    import sys
    import tempfile

    srcdir = Path(app.srcdir)
    setupcell = setupcell_module(srcdir)
    version = course_version(app)
    folder = Path(app.outdir) / setupcell.WHEEL_FOLDER
    wheel = folder / setupcell.wheel_name(version)
    sources = wheel_sources(srcdir)
    if wheel.is_file() and all(p.stat().st_mtime <= wheel.stat().st_mtime for p in sources):
        return wheel
    digest = hashlib.sha256()
    for path in sources:
        digest.update(f"{path.relative_to(srcdir).as_posix()}\0{path.stat().st_size}\0".encode())
        digest.update(path.read_bytes())
    kept = Path(app.outdir).parent / ".wheels" / digest.hexdigest()[:24] / wheel.name
    if not kept.is_file():
        with tempfile.TemporaryDirectory() as tmp:
            copy = Path(tmp) / "src"
            for path in sources:
                target = copy / path.relative_to(srcdir)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, target)
            result = subprocess.run(
                [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                 "--no-index", "--quiet", "-w", str(Path(tmp) / "dist"), str(copy)],
                check=False, capture_output=True, text=True, timeout=600)
            built = sorted((Path(tmp) / "dist").glob("rnncourse-*.whl"))
            if result.returncode != 0 or [p.name for p in built] != [wheel.name]:
                raise ExtensionError(
                    f"pip wheel did not make {wheel.name} (got {[p.name for p in built]}):\n"
                    f"{result.stdout[-2000:]}{result.stderr[-2000:]}")
            if kept.parent.parent.exists():
                shutil.rmtree(kept.parent.parent)  # wheels of older sources go
            kept.parent.mkdir(parents=True)
            shutil.copyfile(built[0], kept)
    if folder.exists():
        shutil.rmtree(folder)  # an older version's wheel leaves the site
    folder.mkdir(parents=True)
    shutil.copyfile(kept, wheel)
    return wheel


def fill_setup_page(app: Sphinx, docname: str, source: list[str]) -> None:
    """source-read: the set-up page's wheel name, version and site address."""
    if docname != SETUP_DOC:
        return
    setupcell = setupcell_module(app.srcdir)
    version = course_version(app)
    # Without `html: baseurl:` the page's own script puts the address the reader sees.
    values = (setupcell.wheel_name(version), version, site_url(app) or "https://YOUR-COURSE-SITE",
              setupcell.missing_sentence(version, site_url(app)))
    for token, value in zip(SETUP_TOKENS, values):
        source[0] = source[0].replace(token, value)


# --- launch buttons -------------------------------------------------------------------------
def repository_url(srcdir: str | Path) -> str:
    """`repository: url:` from the book's own _config.yml ('' when it is not set)."""
    config = Path(srcdir) / "_config.yml"
    if not config.is_file():
        return ""
    data = yaml.safe_load(config.read_text(encoding="utf-8")) or {}
    return str((data.get("repository") or {}).get("url") or "").strip()


def launch_buttons_need_a_repository(app: Sphinx, config: Any) -> None:
    if repository_url(app.srcdir):
        return
    launch = dict(config.html_theme_options.get("launch_buttons") or {})
    for key in LAUNCH_PROVIDERS:
        if key in launch:
            launch[key] = False if key == "thebe" else ""
    config.html_theme_options["launch_buttons"] = launch


# --- notebooks --------------------------------------------------------------------------------
def is_notebook(app: Sphinx, docname: str) -> bool:
    return "kernelspec" in app.env.metadata.get(docname, {})


def notebook_target(docname: str) -> str:
    """Where a page's notebook lives in the site, relative to the site's root."""
    return f"_sources/{docname}.ipynb"


def notebook_json(source: Path, setup_cell: dict | None = None) -> str:
    """The page's source as an nbformat 4 notebook: code cells without outputs.

    `setup_cell` (the course set-up check) goes first. Cell ids are derived from the cell's
    position so the file is the same on every build.
    """
    import jupytext
    import nbformat

    notebook = jupytext.read(source)
    notebook.metadata.pop("jupytext", None)
    notebook.metadata.setdefault("language_info", {"name": "python"})
    for index, cell in enumerate(notebook.cells):
        cell["id"] = f"cell-{index}"
    if setup_cell is not None:
        notebook.cells.insert(0, nbformat.from_dict(setup_cell))
    nbformat.validate(notebook)
    return json.dumps(notebook, indent=1, ensure_ascii=False, sort_keys=True) + "\n"


def write_notebook(app: Sphinx, pagename: str, templatename: str, context: dict[str, Any],
                   doctree: Any) -> None:
    """html-page-context: write the page's .ipynb and list it in the theme's download menu."""
    if doctree is None or not is_notebook(app, pagename):
        return
    refresh_notebook(app, pagename)
    context["ipynb_source"] = f"{pagename}.ipynb"  # the theme's ".ipynb" download item


def refresh_notebook(app: Sphinx, docname: str) -> None:
    """<site>/_sources/<page>.ipynb: the page's code with this version's set-up cell first."""
    source = Path(app.env.doc2path(docname))
    target = Path(app.outdir) / notebook_target(docname)
    target.parent.mkdir(parents=True, exist_ok=True)
    if source.suffix == ".ipynb":
        shutil.copyfile(source, target)
        return
    setupcell = setupcell_module(app.srcdir)
    text = notebook_json(source, setupcell.make_cell(course_version(app), site_url(app)))
    if not target.is_file() or target.read_text(encoding="utf-8") != text:
        target.write_text(text, encoding="utf-8")


def refresh_all_notebooks(app: Sphinx) -> None:
    """Pages Sphinx did not rewrite (unchanged) still get the current set-up cell."""
    for docname in sorted(app.env.found_docs):
        if is_notebook(app, docname):
            refresh_notebook(app, docname)


def setup_page_is_always_read(app: Sphinx, env: Any, added: set, changed: set,
                              removed: set) -> list[str]:
    """env-get-outdated: the set-up page names the version, which its source does not hold."""
    return [SETUP_DOC] if SETUP_DOC in env.found_docs else []


def add_download_link(app: Sphinx, doctree: nodes.document, docname: str) -> None:
    """doctree-resolved: one click from the page to its notebook, right under the title."""
    if app.builder.format != "html" or not is_notebook(app, docname):
        return
    section = next(iter(doctree.findall(nodes.section)), None)
    if section is None or not isinstance(section[0], nodes.title):
        return
    href = relative_uri(app.builder.get_target_uri(docname), notebook_target(docname))
    name = html.escape(Path(docname).name + ".ipynb")
    markup = (
        f'<p class="{DOWNLOAD_CLASS}">Run this page yourself: '
        f'<a class="reference download" href="{html.escape(href)}" download="{name}" '
        f'type="application/x-ipynb+json">download <code>{name}</code></a> '
        f"and open it in Jupyter.</p>\n"
        f'<p class="{SETUP_CLASS}">It needs the course\'s Python package: '
        f'<a href="{html.escape(setup_href(app, docname))}">set up your computer</a> once.</p>\n'
    )
    section.insert(1, nodes.raw("", markup, format="html"))


def setup_href(app: Sphinx, docname: str) -> str:
    return relative_uri(app.builder.get_target_uri(docname), app.builder.get_target_uri(SETUP_DOC))


def add_setup_links_to_downloads(app: Sphinx, doctree: nodes.document, docname: str) -> None:
    """A link to the set-up page right after each {download} link to a notebook."""
    from sphinx.addnodes import download_reference

    if app.builder.format != "html" or docname == SETUP_DOC or SETUP_DOC not in app.env.all_docs:
        return
    for ref in list(doctree.findall(download_reference)):
        if not str(ref.get("reftarget", "")).endswith(".ipynb"):
            continue
        hint = nodes.inline("", "", classes=[SETUP_CLASS])
        hint += nodes.Text(" (")
        hint += nodes.reference("", "how to run it", refuri=setup_href(app, docname),
                                internal=True)
        hint += nodes.Text(")")
        ref.parent.insert(ref.parent.index(ref) + 1, hint)


# --- scripts ------------------------------------------------------------------------------------
def deduplicate_scripts(app: Sphinx, pagename: str, templatename: str, context: dict[str, Any],
                        doctree: Any) -> None:
    """html-page-context: drop the second copy of a script the page would load twice.

    Sphinx 7.4 registers an inline script added after `Builder.init()` once as filename
    None and again, in `prepare_writing`, as filename '': the two compare unequal, so the
    page gets both (sphinx-thebe's `const` declarations then fail: a console error).
    """
    scripts = context.get("script_files")
    if not isinstance(scripts, list):
        return
    seen, unique = set(), []
    for script in scripts:
        attributes = getattr(script, "attributes", {})
        key = (str(getattr(script, "filename", script) or ""), getattr(script, "priority", None),
               tuple(sorted((k, str(v)) for k, v in attributes.items())))
        if key not in seen:
            seen.add(key)
            unique.append(script)
    scripts[:] = unique


# --- files copied into the site ---------------------------------------------------------------
def copy_if_changed(source: Path, target: Path) -> None:
    if target.is_file():
        s, t = source.stat(), target.stat()
        if s.st_size == t.st_size and s.st_mtime <= t.st_mtime:
            return
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(source, target)


def copy_tree(source: Path, target: Path) -> None:
    if source.is_file():
        copy_if_changed(source, target)
        return
    for path in source.rglob("*"):
        if path.is_file():
            copy_if_changed(path, target / path.relative_to(source))


def mathjax_files(component: str) -> tuple[Path, list[Path]]:
    """The installed MathJax es5 folder and the files/folders the site needs from it."""
    try:
        dist = importlib.metadata.distribution(MATHJAX_DIST)
    except importlib.metadata.PackageNotFoundError as error:
        raise ExtensionError(
            f"mathjax_path points at the site's own MathJax, but {MATHJAX_DIST} is not "
            "installed (pip install -r requirements.txt)") from error
    es5 = Path(str(dist.locate_file(MATHJAX_ES5)))
    parts = [es5 / component, *(es5 / part for part in MATHJAX_PARTS)]
    missing = [str(p) for p in parts if not p.exists()]
    if missing:
        raise ExtensionError(f"{MATHJAX_DIST} lacks MathJax files: {missing}")
    return es5, parts


def local_mathjax_component(app: Sphinx) -> str | None:
    """'tex-mml-chtml.js' when mathjax_path is 'mathjax/tex-mml-chtml.js', else None (a CDN)."""
    path = str(app.config.mathjax_path or "")
    prefix = MATHJAX_STATIC + "/"
    if "://" in path or not path.startswith(prefix):
        return None
    return path[len(prefix):].split("?")[0]


def check_mathjax(app: Sphinx) -> None:
    """builder-inited: fail early (not after an hour of executing pages) if MathJax is missing."""
    component = local_mathjax_component(app)
    if component and app.builder.format == "html":
        mathjax_files(component)


def copy_exercises(app: Sphinx) -> None:
    """exercises/<id>/… (student notebooks) to <site>/exercises/<id>/…, refusing solutions."""
    source = Path(app.srcdir) / "exercises"
    target = Path(app.outdir) / "exercises"
    if target.exists():
        shutil.rmtree(target)  # an assignment removed from the repository leaves the site
    if not source.is_dir():
        return
    for path in sorted(source.rglob("*")):
        rel = path.relative_to(source)
        if not path.is_file() or any(part.startswith((".", "__")) for part in rel.parts):
            continue
        data = path.read_bytes()
        leaked = [m.decode() for m in SOLUTION_MARKERS if m in data]
        if leaked:
            raise ExtensionError(
                f"exercises/{rel.as_posix()} holds nbgrader markers {leaked}: it is not a "
                "student notebook; regenerate exercises/ with `make exercises`")
        (target / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target / rel)


def check_student_notebooks(app: Sphinx) -> None:
    """builder-inited: every student notebook begins with this version's set-up cell (else
    the build stops at once, not after executing every page)."""
    setupcell = setupcell_module(app.srcdir)
    expected = setupcell.cell_source(course_version(app), site_url(app))
    for path in sorted((Path(app.srcdir) / "exercises").glob("*/*.ipynb")):
        cells = json.loads(path.read_text(encoding="utf-8")).get("cells", [])
        if not cells or setupcell._text(cells[0]) != expected:
            raise ExtensionError(
                f"{path.relative_to(app.srcdir)} does not begin with rnncourse "
                f"{course_version(app)}'s set-up cell: run `python -m rnncourse.setupcell "
                "--write solutions/*/*.ipynb`, then `make exercises`")


def copy_site_files(app: Sphinx, exception: Exception | None) -> None:
    """build-finished: _static/, MathJax into _static/mathjax/, exercises/, the wheel."""
    if exception is not None or app.builder.format != "html":
        return
    # Sphinx copies html_static_path only when it rewrites some page ("no targets are out
    # of date" skips it), so an edit to _static/course.css alone would not reach the site.
    for folder in app.config.html_static_path:
        source = Path(app.confdir or app.srcdir) / folder
        if source.is_dir():
            copy_tree(source, Path(app.outdir) / "_static")
    component = local_mathjax_component(app)
    if component:
        es5, parts = mathjax_files(component)
        static = Path(app.outdir) / "_static" / MATHJAX_STATIC
        for part in parts:
            copy_tree(part, static / part.relative_to(es5))
        copy_if_changed(es5.parent / "LICENSE", static / "LICENSE")  # Apache-2.0
    copy_exercises(app)
    refresh_all_notebooks(app)
    build_wheel(app)


# --- run times ------------------------------------------------------------------------------

def _book_order(env) -> list[str]:
    """Every document reachable from the root's toctrees, in reading order."""
    order, seen = [], set()

    def walk(docname):
        if docname in seen:
            return
        seen.add(docname)
        order.append(docname)
        for child in env.toctree_includes.get(docname, []):
            walk(child)

    walk(env.config.root_doc)
    return order


class RunTimesTable(SphinxPostTransform):
    """Replace myst-nb's execution-statistics placeholder (before myst-nb's own transform,
    priority 8, and before references are resolved) with a table in book order."""

    default_priority = 7

    def run(self, **kwargs) -> None:
        from datetime import datetime

        from myst_nb.ext.execution_tables import ExecutionStatsNode
        from myst_nb.sphinx_ import NbMetadataCollector

        for placeholder in list(self.document.findall(ExecutionStatsNode)):
            metadata = NbMetadataCollector.get_doc_data(self.env)
            table = nodes.table(classes=["colwidths-auto", "course-run-times"])
            group = nodes.tgroup(cols=4)
            table += group
            for _ in range(4):
                group += nodes.colspec(colwidth=25)
            head, body = nodes.thead(), nodes.tbody()
            group += head
            group += body
            row = nodes.row()
            for name in ("Page", "Run time (s)", "Result", "Last run"):
                row += nodes.entry("", nodes.paragraph(text=name))
            head += row
            for docname in _book_order(self.env):
                data = metadata.get(docname, {}).get("exec_data")
                if not data:
                    continue
                link = pending_xref(refdoc=self.env.docname, reftarget="/" + docname, reftype="doc",
                                    refdomain="std", refexplicit=True, refwarn=True, classes=["xref", "doc"])
                title = self.env.titles.get(docname)
                link += nodes.inline(text=title.astext() if title is not None else docname)
                seconds = "-" if data.get("runtime") is None else f"{data['runtime']:.1f}"
                result = "ran to the end" if data.get("succeeded") else "failed"
                when = datetime.fromtimestamp(data["mtime"]).strftime("%Y-%m-%d %H:%M") if data.get("mtime") else ""
                row = nodes.row()
                for content in (nodes.paragraph("", "", link), nodes.paragraph(text=seconds),
                                nodes.paragraph(text=result), nodes.paragraph(text=when)):
                    row += nodes.entry("", content)
                body += row
            placeholder.replace_self(table)


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("config-inited", launch_buttons_need_a_repository)
    app.connect("builder-inited", check_mathjax)
    app.connect("builder-inited", check_student_notebooks)
    app.connect("env-get-outdated", setup_page_is_always_read)
    app.connect("source-read", fill_setup_page)
    # before the theme's header buttons (priority 501) read `ipynb_source`
    app.connect("html-page-context", write_notebook, priority=400)
    app.connect("doctree-resolved", add_download_link)
    app.connect("doctree-resolved", add_setup_links_to_downloads)
    app.connect("html-page-context", deduplicate_scripts, priority=900)
    app.connect("build-finished", copy_site_files)
    app.add_post_transform(RunTimesTable)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
