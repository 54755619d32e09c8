"""What every grading plug-in shares: the note an instructor reads, and cell metadata.

Each plug-in logs what it did on a line starting with :data:`NOTE_MARKER`; ``classgrade``
copies those lines into the submission's status file. Cell kinds come from
``nbgrader.utils`` (``is_grade``, ``is_solution``, ``is_locked``).
"""

from __future__ import annotations

import json
import os

from nbformat.notebooknode import from_dict
from nbgrader import utils

NOTE_MARKER = "RNNCOURSE-NOTE"
PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # rnncourse/


def note(log, kind: str, message: str, **details) -> None:
    """Log one finding where `classgrade` (and an instructor reading the log) finds it."""
    log.warning("%s %s", NOTE_MARKER, json.dumps({"kind": kind, "message": message, **details}))


def _meta(cell) -> dict:
    return (cell.get("metadata") or {}).get("nbgrader") or {}


def node(cell):
    """What nbgrader.utils reads of ``cell`` (its metadata), safe for a hand-edited cell."""
    return from_dict({"metadata": {"nbgrader": _meta(cell)} if _meta(cell) else {}})


def grade_id(cell) -> str | None:
    return _meta(cell).get("grade_id")


def is_grade(cell) -> bool:
    return bool(utils.is_grade(node(cell)))


def is_solution(cell) -> bool:
    return bool(utils.is_solution(node(cell)))


def is_instructor(cell) -> bool:
    """An instructor cell: known to nbgrader (a grade_id) and locked or a test, not an answer."""
    return bool(grade_id(cell)) and bool(utils.is_locked(node(cell)))


def text(source) -> str:
    return "".join(source) if isinstance(source, list) else source


def cell_name(cell, index: int) -> str:
    return grade_id(cell) or f"cell {index + 1}"
