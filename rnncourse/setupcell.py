"""The set-up cell: the first cell of every notebook the course site offers for download.

A notebook opened outside the repository (a laptop, Colab, a JupyterHub) needs the course's
helper package. Its first cell checks, *without importing it*, that ``rnncourse`` is installed
and is the version the notebook was made with; if not, it stops with one sentence that names
the fix (the *Set up your computer* page's command) instead of a traceback. The cell holds a
line ``COURSE_VERSION = "<version>"`` that :func:`notebook_course_version` reads back, so
grading can tell when a submission was made with another version of the course.

- Chapter notebooks get the cell when the book is built (``_ext/course_site.py``).
- Student notebooks get it from their instructor source:
  ``python -m rnncourse.setupcell --write solutions/*/*.ipynb`` inserts or updates it
  (idempotent), then ``python -m rnncourse.release`` regenerates ``exercises/``.

This module imports nothing heavy: the book build and nbgrader use it.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

SETUP_PAGE = "chapters/setup.html"  # the Set up your computer page, relative to the site root
WHEEL_FOLDER = "packages"  # <site>/packages/<wheel>: where the book build serves the wheel
CELL_ID = "course-setup-check"
MARKER = "# Course set-up check"
VERSION_LINE = re.compile(r'^COURSE_VERSION = "([^"]+)"$', re.MULTILINE)
_INIT_VERSION = re.compile(r'^__version__ = "([^"]+)"', re.MULTILINE)


def source_version(package_dir: str | Path) -> str:
    """``__version__`` of the package in ``package_dir`` (its ``__init__.py``), not imported.

    The version's single source is that line: setuptools reads it for the wheel
    (``[tool.setuptools.dynamic]`` in pyproject.toml) and this function for the notebooks.
    """
    text = (Path(package_dir) / "__init__.py").read_text(encoding="utf-8")
    found = _INIT_VERSION.search(text)
    if found is None:
        raise ValueError(f"no `__version__ = \"...\"` line in {package_dir}/__init__.py")
    return found.group(1)


def wheel_name(version: str) -> str:
    """The file name `pip wheel` gives the course package (pure Python, any platform)."""
    return f"rnncourse-{version}-py3-none-any.whl"


def install_command(version: str, site_url: str = "") -> str:
    """The one command that fixes a missing or wrong ``rnncourse`` (what the cell prints).

    With the site's address (``html: baseurl:`` in _config.yml) it is the wheel's URL; without
    it, the wheel's file name, downloaded from the set-up page next to the notebook.
    """
    where = f"{site_url.rstrip('/')}/{WHEEL_FOLDER}/" if site_url else ""
    return f"%pip install {where}{wheel_name(version)}"


def message_template(version: str, site_url: str = "") -> str:
    """The cell's one sentence, with ``{state}`` for what was found (not installed, a version)."""
    command = install_command(version, site_url)
    if site_url:
        where = f" ({site_url.rstrip('/')}/{SETUP_PAGE} has other ways)"
    else:
        where = " (the wheel is on the course site's Set up your computer page)"
    return (f"This notebook needs rnncourse {version}, the course's helper package, but here it "
            f"{{state}}: run `{command}` in a cell, then restart the kernel{where}.")


def missing_sentence(version: str, site_url: str = "", found: str | None = None) -> str:
    """The sentence the cell prints when ``found`` (None: not installed) is not ``version``."""
    state = "is not installed" if found is None else f"is version {found}"
    return message_template(version, site_url).format(state=state)


def cell_source(version: str, site_url: str = "") -> str:
    """The set-up cell's code: checks the installed rnncourse without importing it."""
    return (
        f"{MARKER}: this notebook needs the course's helper package rnncourse.\n"
        f'COURSE_VERSION = "{version}"\n'
        "\n"
        "\n"
        "def _course_setup_check(version=COURSE_VERSION):\n"
        '    """Stop with one sentence (no traceback) unless rnncourse `version` is installed."""\n'
        "    import importlib.metadata\n"
        "    import importlib.util\n"
        "    import os\n"
        "    import re\n"
        "\n"
        "    try:\n"
        '        spec = importlib.util.find_spec("rnncourse")\n'
        "    except (ImportError, ValueError):\n"
        "        spec = None\n"
        "    found = None\n"
        "    if spec is not None:\n"
        "        try:  # the version of the code `import rnncourse` would run, without running it\n"
        '            with open(spec.origin, encoding="utf-8") as init:\n'
        "                found = re.search(r'^__version__ = \"([^\"]+)\"', init.read(), re.M)\n"
        "            found = found.group(1) if found else None\n"
        "        except (OSError, TypeError):\n"
        "            found = None\n"
        "        if found is None:\n"
        "            try:\n"
        '                found = importlib.metadata.version("rnncourse")\n'
        "            except importlib.metadata.PackageNotFoundError:\n"
        '                found = "unknown"\n'
        "    if found == version:\n"
        "        return\n"
        '    if found is not None and os.environ.get("NBGRADER_EXECUTION") == "autograde":\n'
        "        return  # grading runs the instructor's version; the grader reports the difference\n"
        '    state = "is not installed" if found is None else f"is version {found}"\n'
        "\n"
        "    class CourseSetupError(Exception):\n"
        "        def _render_traceback_(self):  # IPython shows this instead of a traceback\n"
        "            return [str(self)]\n"
        "\n"
        f"    message = {message_template(version, site_url)!r}\n"
        "    raise CourseSetupError(message.format(state=state)) from None\n"
        "\n"
        "\n"
        "_course_setup_check()\n"
    )


def make_cell(version: str, site_url: str = "") -> dict:
    """The set-up cell as an nbformat 4 code cell: plain (no nbgrader metadata), no output."""
    return {
        "cell_type": "code",
        "execution_count": None,
        "id": CELL_ID,
        "metadata": {"tags": ["course-setup"]},
        "outputs": [],
        "source": cell_source(version, site_url),
    }


def _text(cell: dict) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def is_setup_cell(cell: dict) -> bool:
    return cell.get("cell_type") == "code" and _text(cell).startswith(MARKER)


def notebook_course_version(nb: dict) -> str | None:
    """The ``COURSE_VERSION`` of a notebook's set-up cell (None when it has none)."""
    for cell in nb.get("cells", []):
        if is_setup_cell(cell):
            found = VERSION_LINE.search(_text(cell))
            return found.group(1) if found else None
    return None


def with_setup_cell(nb: dict, version: str, site_url: str = "") -> dict:
    """``nb`` with exactly one set-up cell, first; any earlier set-up cell is replaced."""
    cells = [cell for cell in nb.get("cells", []) if not is_setup_cell(cell)]
    cell = make_cell(version, site_url)
    if nb.get("nbformat", 4) == 4 and nb.get("nbformat_minor", 5) < 5:
        cell.pop("id")  # cell ids exist from nbformat 4.5 on
    return {**nb, "cells": [cell, *cells]}


def site_url_from_config(config: str | Path) -> str:
    """``html: baseurl:`` from a Jupyter Book _config.yml ('' when unset or unreadable)."""
    path = Path(config)
    if not path.is_file():
        return ""
    try:
        import yaml
    except ImportError:
        return ""
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return str((data.get("html") or {}).get("baseurl") or "").strip()


def write(paths: list[Path], version: str, site_url: str = "") -> list[Path]:
    """Insert or update the set-up cell in each notebook; return the files that changed."""
    changed = []
    for path in paths:
        text = path.read_text(encoding="utf-8")
        nb = json.loads(text)
        new = json.dumps(with_setup_cell(nb, version, site_url), indent=1,
                         ensure_ascii=False) + "\n"
        if new != text:
            path.write_text(new, encoding="utf-8")
            changed.append(path)
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m rnncourse.setupcell",
        description="Put the course set-up cell first in notebooks (insert or update).")
    parser.add_argument("--write", nargs="+", type=Path, metavar="NOTEBOOK", required=True,
                        help="notebooks to update in place, e.g. solutions/*/*.ipynb")
    args = parser.parse_args(argv)
    package = Path(__file__).resolve().parent
    version = source_version(package)
    site_url = site_url_from_config(package.parent / "_config.yml")
    changed = write(args.write, version, site_url)
    for path in args.write:
        print(f"{path}: {'set-up cell written' if path in changed else 'already up to date'}"
              f" (rnncourse {version})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
