"""Which course version a submission was made with.

Every student notebook begins with a cell holding a line ``COURSE_VERSION = "x.y.z"`` (the
version the notebook was built with). :func:`submission_version` reads it back; ``classgrade``
warns the instructor when it is not the installed ``rnncourse.__version__``.
"""

from __future__ import annotations

import re

_VERSION_LINE = re.compile(r"""^\s*COURSE_VERSION\s*=\s*["']([^"']+)["']""", re.MULTILINE)


def submission_version(notebook: dict) -> str | None:
    """The ``COURSE_VERSION`` of the first code cell that names one; None without such a cell."""
    for cell in notebook.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        source = cell.get("source", "")
        match = _VERSION_LINE.search("".join(source) if isinstance(source, list) else source)
        if match:
            return match.group(1)
    return None


def version_warning(notebook: dict, installed: str) -> str | None:
    """One sentence for the instructor when the submission names another course version."""
    version = submission_version(notebook)
    if version is None or version == installed:
        return None
    return (f"made with course version {version}, graded with {installed}: check that the "
            f"assignment's tests are the ones the student saw")
