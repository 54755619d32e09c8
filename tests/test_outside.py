"""The course outside its repository, as a newcomer meets it (issue 11).

Fast tests: the package's dependencies are declared where they are used, the version has one
source, and the set-up cell (rnncourse/setupcell.py) is in every instructor notebook, is
idempotent and stops with its one sentence.

Slow tests use the built book (`built_book`) served over http on 127.0.0.1: a fresh virtual
environment in a temporary folder outside the repository gets only the wheel the set-up page
links (its dependencies come from the package index, through pip's cache), then runs a chapter
notebook and a completed student notebook fetched through the links on the built pages, and
finally loses the package to show what the first cell says then.

COURSE_OUTSIDE_PYTHON=/path/to/python3.13 makes the fresh environment with another Python.
"""

from __future__ import annotations

import ast
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote, urljoin
from urllib.request import urlopen

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    from pip._vendor import tomli as tomllib

import pytest
from bookpages import serve
from newcomer import make_venv

from rnncourse import __version__, setupcell

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "rnncourse"
VALIDATE_LIMIT = ("--Execute.timeout=600",)
CHAPTER = "chapters/bptt"  # a chapter that runs in seconds and links a graded notebook
# Modules the chapters and student notebooks never import: their imports belong to an extra.
EXTRA_MODULES = {"classgrade": "grading", "course": "grading", "release": "grading",
                 "grader": "grading", "realdata": "data"}


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_names(requirements: list[str]) -> set[str]:
    return {norm(re.match(r"[A-Za-z0-9._-]+", r.strip()).group(0)) for r in requirements}


def pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))


def closure(names: set[str]) -> set[str]:
    """The distributions `names` install, with everything they require (as installed here)."""
    seen, todo = set(), list(names)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:
            continue
        todo += [n for n in requirement_names([r for r in requires if "extra ==" not in r])]
    return seen


def third_party_imports(path: Path) -> set[str]:
    """Top-level names of every module a file imports (also inside functions)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n not in ("rnncourse", "__future__")}


# --- fast: the package's declarations ---------------------------------------------------------
def test_every_import_of_the_package_is_a_declared_dependency():
    """What chapters and notebooks import is in the base install; grading modules' in an extra."""
    project = pyproject()["project"]
    base = requirement_names(project["dependencies"])
    extras = {name: requirement_names(reqs) for name, reqs in project["optional-dependencies"].items()}
    distributions = importlib.metadata.packages_distributions()
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = path.relative_to(PACKAGE).with_suffix("").parts[0]
        extra = EXTRA_MODULES.get(module)
        allowed = base | extras.get(extra, set())
        if extra:  # a grading module may use what nbgrader itself brings (traitlets, nbformat)
            allowed = closure(allowed)
        for name in sorted(third_party_imports(path)):
            provided = {norm(d) for d in distributions.get(name, [])}
            if not provided & allowed:
                where = f"the `{extra}` extra" if extra else "the base dependencies"
                problems.append(f"{path.relative_to(REPO)} imports {name} ({sorted(provided)}), "
                                f"not in {where} of pyproject.toml")
    assert not problems, "\n".join(problems)


def test_importing_the_package_loads_no_grading_or_book_tool():
    code = ("import sys, rnncourse; print(sorted(m for m in ('nbgrader', 'dask', 'distributed', "
            "'sphinx', 'jupyter_book', 'tensorflow') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert out.stdout.strip() == "[]", out.stdout


def test_the_version_has_one_source_that_setuptools_reads():
    project = pyproject()
    assert project["project"]["dynamic"] == ["version"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "rnncourse.__version__"}
    assert setupcell.source_version(PACKAGE) == __version__
    assert "version =" not in (REPO / "pyproject.toml").read_text().split("[project]")[1].split("[")[0]


def test_requirements_install_the_package_with_its_extras():
    lines = [ln.split("#")[0].strip() for ln in (REPO / "requirements.txt").read_text().splitlines()]
    editable = [ln for ln in lines if ln.startswith("-e .")]
    assert len(editable) == 1, editable
    wanted = re.search(r"\[(.*)\]", editable[0]).group(1).split(",")
    assert set(wanted) >= {"lab", "grading", "book"}


# --- fast: the set-up cell ----------------------------------------------------------------------
def site_url() -> str:
    return setupcell.site_url_from_config(REPO / "_config.yml")


@pytest.mark.parametrize("folder", ["solutions", "exercises"])
def test_every_assignment_begins_with_this_versions_setup_cell(folder):
    """After `python -m rnncourse.setupcell --write solutions/*/*.ipynb` and `make exercises`."""
    notebooks = sorted((REPO / folder).glob("*/*.ipynb"))
    assert notebooks
    expected = setupcell.cell_source(__version__, site_url())
    for path in notebooks:
        nb = json.loads(path.read_text(encoding="utf-8"))
        first = nb["cells"][0]
        source = "".join(first["source"]) if isinstance(first["source"], list) else first["source"]
        assert source == expected, (
            f"{path.relative_to(REPO)} does not begin with rnncourse {__version__}'s set-up cell: "
            "run `python -m rnncourse.setupcell --write solutions/*/*.ipynb` and `make exercises`")
        assert "nbgrader" not in first["metadata"], "the set-up cell is a plain cell, not graded"
        assert sum(setupcell.is_setup_cell(c) for c in nb["cells"]) == 1
        assert setupcell.notebook_course_version(nb) == __version__


def test_write_inserts_once_updates_an_old_version_and_leaves_the_rest(tmp_path):
    original = json.loads((REPO / "solutions" / "rnn_forward" / "rnn_forward.ipynb").read_text())
    original["cells"] = [c for c in original["cells"] if not setupcell.is_setup_cell(c)]
    path = tmp_path / "nb.ipynb"
    path.write_text(json.dumps(original, indent=1) + "\n")
    assert setupcell.notebook_course_version(original) is None
    assert setupcell.write([path], "0.0.1") == [path]
    old = json.loads(path.read_text())
    assert setupcell.notebook_course_version(old) == "0.0.1"
    assert setupcell.write([path], "0.0.2") == [path]
    assert setupcell.write([path], "0.0.2") == []  # idempotent
    new = json.loads(path.read_text())
    assert setupcell.notebook_course_version(new) == "0.0.2"
    assert new["cells"][1:] == original["cells"]
    assert [c.get("id") for c in new["cells"]].count(setupcell.CELL_ID) == 1


def run_cell(source: str, pythonpath: str | None) -> subprocess.CompletedProcess:
    """Run a cell's code in a Python that sees only the standard library (+ `pythonpath`)."""
    runner = ("import sys\n"
              f"{'sys.path.insert(0, ' + repr(pythonpath) + ')' if pythonpath else ''}\n"
              "try:\n"
              f"    exec(compile({source!r}, 'cell', 'exec'), {{}})\n"
              "except Exception as error:\n"
              "    print(type(error).__name__, error._render_traceback_(), sep='\\n')\n"
              "else:\n"
              "    print('passed')\n")
    # -I: no PYTHONPATH, no user site, no current folder; -S: no site-packages (no rnncourse)
    return subprocess.run([sys.executable, "-I", "-S", "-c", runner], capture_output=True,
                          text=True, check=True, cwd="/", timeout=60)


def test_the_setup_cell_stops_with_one_sentence_when_the_package_is_missing_or_another():
    source = setupcell.cell_source("0.2.0", "https://example.org/rnn")
    missing = run_cell(source, None).stdout.splitlines()
    assert missing == ["CourseSetupError",
                       repr([setupcell.missing_sentence("0.2.0", "https://example.org/rnn")])]
    assert "%pip install https://example.org/rnn/packages/rnncourse-0.2.0-py3-none-any.whl" in missing[1]
    assert "is not installed" in missing[1]
    assert run_cell(source, str(REPO)).stdout.split("\n")[0] == (
        "passed" if __version__ == "0.2.0" else "CourseSetupError")
    other = run_cell(setupcell.cell_source("0.0.1"), str(REPO)).stdout.splitlines()
    assert other[1] == repr([setupcell.missing_sentence("0.0.1", "", found=__version__)])
    assert f"is version {__version__}" in other[1]
    passes = run_cell(setupcell.cell_source(__version__), str(REPO)).stdout
    assert passes.strip() == "passed"


# --- slow: a newcomer with only the built site --------------------------------------------------
@pytest.fixture(scope="module")
def site(built_book):
    """The built site. Whether the whole build passed is tests/test_book.py's question; here
    the pages a newcomer uses must be there."""
    html = REPO / "_build" / "html"
    needed = [html / "intro.html", html / "chapters" / "setup.html", html / f"{CHAPTER}.html"]
    missing = [str(p.relative_to(REPO)) for p in needed if not p.is_file()]
    assert not missing, f"the build made no {missing}:\n{built_book.stdout[-3000:]}{built_book.stderr[-3000:]}"
    return html


@pytest.fixture(scope="module")
def server(site):
    with serve(site) as url:
        yield url


def fetch(url: str) -> bytes:
    with urlopen(url, timeout=60) as response:
        return response.read()


def links(page_url: str, pattern: str) -> list[str]:
    """Absolute URLs of the links on a page whose href matches `pattern`."""
    text = fetch(page_url).decode("utf-8")
    return [urljoin(page_url, unquote(h)) for h in re.findall(r'href="([^"#?]+)"', text)
            if re.search(pattern, h)]


@pytest.mark.slow
def test_the_landing_page_and_every_notebook_download_lead_to_the_setup_page(site, server):
    landing = fetch(f"{server}/intro.html").decode("utf-8")
    body = landing[landing.index("<article"):landing.index("</article>")]  # not the sidebar
    assert re.search(r'<a [^>]*href="chapters/setup\.html"[^>]*>.*?set up your computer', body,
                     flags=re.DOTALL | re.IGNORECASE), "the landing page's text does not link the set-up page"
    pages = [p for p in sorted(site.rglob("*.html")) if "_static" not in p.parts]
    downloads = 0
    for page in pages:
        text = page.read_text(encoding="utf-8")
        for match in re.finditer(r'<a class="reference download[^"]*"[^>]*href="([^"]+\.ipynb)"', text):
            downloads += 1
            after = text[match.end():match.end() + 600]
            near = re.search(r'href="([^"]*setup\.html)"', after)
            assert near, f"{page.relative_to(site)}: no set-up link beside {match.group(1)}"
            assert (page.parent / near.group(1)).resolve() == site / "chapters" / "setup.html"
    assert downloads >= 10, downloads  # every chapter's own notebook and the assignments


@pytest.mark.slow
def test_every_notebook_the_site_offers_begins_with_the_setup_cell(site):
    wheels = sorted((site / setupcell.WHEEL_FOLDER).glob("*.whl"))
    assert [w.name for w in wheels] == [setupcell.wheel_name(__version__)]
    notebooks = sorted((site / "_sources").rglob("*.ipynb")) + sorted((site / "exercises").rglob("*.ipynb"))
    notebooks += sorted((site / "_downloads").rglob("*.ipynb"))
    assert len(notebooks) >= 10
    for path in notebooks:
        nb = json.loads(path.read_text(encoding="utf-8"))
        assert setupcell.is_setup_cell(nb["cells"][0]), f"{path.relative_to(site)}: no set-up cell"
        assert setupcell.notebook_course_version(nb) == __version__, path.relative_to(site)


@pytest.fixture(scope="module")
def newcomer(tmp_path_factory, server, newcomer_venv):
    """A fresh venv outside the repository with the wheel the set-up page links, and the
    chapter and student notebooks as the pages link them. The venv is the one the session
    began making when the book was built (tests/newcomer.py) if it holds this very wheel."""
    wheel_links = links(f"{server}/chapters/setup.html", r"\.whl$")
    assert len(set(wheel_links)) == 1, wheel_links
    name, data = Path(wheel_links[0]).name, fetch(wheel_links[0])
    made = newcomer_venv.for_wheel(name, data) if newcomer_venv is not None else None
    when = "in the background, from when the book was built" if made else "now"
    if made is None:
        made = make_venv(tmp_path_factory.mktemp("newcomer"), _saved(tmp_path_factory, name, data))
    tmp = made["tmp"]
    assert not tmp.resolve().is_relative_to(REPO)
    work = tmp / "work"
    work.mkdir()
    wheel = work / name
    wheel.write_bytes(data)

    chapter_url = f"{server}/{CHAPTER}.html"
    own = links(chapter_url, r"_sources/.*\.ipynb$")
    assert own, f"{CHAPTER}: no notebook download link"
    (work / "chapter.ipynb").write_bytes(fetch(own[0]))
    students = [u for u in links(chapter_url, r"\.ipynb$") if "/_sources/" not in u]
    assert students, f"{CHAPTER}: no student notebook link"
    assignment = Path(students[0]).stem
    (work / "student.ipynb").write_bytes(fetch(students[0]))

    install = made["install"]
    assert install.returncode == 0, install.stdout[-3000:] + install.stderr[-3000:]
    print(f"\nwheel {name}: {len(data)} bytes; pip install {name}[lab] into a fresh venv ({when}): "
          f"{made['seconds']:.0f} s")
    return {"venv": made["venv"], "env": made["env"], "work": work, "wheel": wheel,
            "assignment": assignment, "site_url": setupcell.site_url_from_config(REPO / "_config.yml")}


def _saved(tmp_path_factory, name: str, data: bytes) -> Path:
    """The fetched wheel written to a folder of its own (pip installs it from there)."""
    wheel = tmp_path_factory.mktemp("fetched-wheel") / name
    wheel.write_bytes(data)
    return wheel


def in_venv(newcomer, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([str(newcomer["venv"] / "bin" / args[0]), *args[1:]],
                          check=False, cwd=newcomer["work"], env=newcomer["env"],
                          capture_output=True, text=True, timeout=timeout)


def execute(newcomer, name: str, *extra: str) -> subprocess.CompletedProcess:
    return in_venv(newcomer, "jupyter", "nbconvert", "--to", "notebook", "--execute", name,
                   "--output", f"executed-{name}", "--ExecutePreprocessor.timeout=600", *extra)


def outputs(newcomer, name: str) -> list[list[dict]]:
    nb = json.loads((newcomer["work"] / f"executed-{name}").read_text(encoding="utf-8"))
    return [cell.get("outputs", []) for cell in nb["cells"] if cell["cell_type"] == "code"]


@pytest.mark.slow
def test_the_package_comes_from_the_wheel_not_the_repository(newcomer):
    code = "import sys, rnncourse; print(rnncourse.__file__); print(rnncourse.__version__); print(sys.path)"
    out = in_venv(newcomer, "python", "-c", code)
    assert out.returncode == 0, out.stderr
    where, version, path = out.stdout.splitlines()
    assert Path(where).resolve().is_relative_to(newcomer["venv"].resolve()), where
    assert version == __version__
    assert str(REPO) not in path and str(REPO.resolve()) not in path, path


@pytest.mark.slow
def test_a_chapter_notebook_from_the_site_runs_headless_with_no_error(newcomer):
    result = execute(newcomer, "chapter.ipynb")
    assert result.returncode == 0, result.stderr[-4000:]
    cells = outputs(newcomer, "chapter.ipynb")
    assert cells[0] == [], f"the set-up cell printed {cells[0]}"
    errors = [o for cell in cells for o in cell if o["output_type"] == "error"]
    assert not errors, errors
    assert sum(bool(cell) for cell in cells) > 3, "the chapter notebook produced no output"


def fill_with_solutions(student: dict, solution: dict) -> dict:
    answers = {c["metadata"]["nbgrader"]["grade_id"]: c["source"] for c in solution["cells"]
               if c["metadata"].get("nbgrader", {}).get("solution")}
    filled = 0
    for cell in student["cells"]:
        meta = cell["metadata"].get("nbgrader", {})
        if meta.get("solution"):
            cell["source"] = answers[meta["grade_id"]]
            filled += 1
    assert filled, "the student notebook has no answer cell"
    return student


@pytest.mark.slow
def test_a_completed_student_notebook_passes_its_visible_checks_and_nbgrader_validate(newcomer):
    assignment = newcomer["assignment"]
    student = json.loads((newcomer["work"] / "student.ipynb").read_text(encoding="utf-8"))
    # nbgrader's default limit is 30 s a cell; the course's nbgrader_config.py gives 120 s, and a
    # loaded CI machine may need more: this test is about what passes, not how fast.
    untouched = in_venv(newcomer, "nbgrader", "validate", "student.ipynb", *VALIDATE_LIMIT)
    assert "failed" in untouched.stdout.lower(), untouched.stdout[-2000:]  # the checks can fail

    solution = json.loads((REPO / "solutions" / assignment / f"{assignment}.ipynb").read_text())
    filled = fill_with_solutions(student, solution)
    (newcomer["work"] / "filled.ipynb").write_text(json.dumps(filled, indent=1), encoding="utf-8")
    result = execute(newcomer, "filled.ipynb")
    assert result.returncode == 0, result.stderr[-4000:]
    nb = json.loads((newcomer["work"] / "executed-filled.ipynb").read_text(encoding="utf-8"))
    checks = [c for c in nb["cells"] if c["metadata"].get("nbgrader", {}).get("grade")]
    assert checks
    for cell in checks:  # every visible check ran and passed
        assert cell.get("execution_count"), f"{cell['metadata']['nbgrader']['grade_id']} did not run"
        assert not any(o["output_type"] == "error" for o in cell["outputs"]), cell["source"][:200]
    validate = in_venv(newcomer, "nbgrader", "validate", "filled.ipynb", *VALIDATE_LIMIT)
    assert validate.returncode == 0, validate.stderr[-3000:]
    assert "Success! Your notebook passes all the tests." in validate.stdout, validate.stdout[-3000:]


@pytest.mark.slow
def test_the_first_cell_prints_its_sentence_for_another_version_then_without_the_package(newcomer):
    chapter = json.loads((newcomer["work"] / "chapter.ipynb").read_text(encoding="utf-8"))
    other = {**chapter, "cells": [setupcell.make_cell("0.0.1", newcomer["site_url"]),
                                  *chapter["cells"][1:3]]}
    (newcomer["work"] / "other.ipynb").write_text(json.dumps(other), encoding="utf-8")
    result = execute(newcomer, "other.ipynb", "--allow-errors")
    assert result.returncode == 0, result.stderr[-3000:]
    first = outputs(newcomer, "other.ipynb")[0]
    sentence = setupcell.missing_sentence("0.0.1", newcomer["site_url"], found=__version__)
    assert [(o["output_type"], o.get("traceback")) for o in first] == [("error", [sentence])]

    removed = in_venv(newcomer, "python", "-m", "pip", "uninstall", "--yes", "rnncourse")
    assert removed.returncode == 0, removed.stderr
    result = execute(newcomer, "chapter.ipynb")  # Run All stops at the first cell
    assert result.returncode != 0
    sentence = setupcell.missing_sentence(__version__, newcomer["site_url"])
    assert sentence in result.stderr, result.stderr[-3000:]
    result = execute(newcomer, "chapter.ipynb", "--allow-errors")
    cells = outputs(newcomer, "chapter.ipynb")
    assert [(o["output_type"], o.get("traceback")) for o in cells[0]] == [("error", [sentence])]
    print(f"\nwithout the package the first cell prints:\n{sentence}")


def test_make_lab_opens_jupyterlab_on_the_exercises():
    dry = subprocess.run(["make", "-n", "lab", "VENV=" + str(Path(sys.executable).parent.parent)],
                         cwd=REPO, capture_output=True, text=True, check=True)
    assert re.search(r"jupyter lab --ServerApp\.root_dir=exercises", dry.stdout), dry.stdout
    assert shutil.which("jupyter", path=str(Path(sys.executable).parent))
