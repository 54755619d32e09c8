"""Put the instructor's cells back where the release has them (autograde's sanitize step).

nbgrader's ``OverwriteCells.add_missing_cells`` is not enough for hostile notebooks: it
puts back grade cells only (not a deleted setup cell), looks for the previous cell among
the grade and answer cells only (a ``KeyError`` when the cell before the missing test is
markdown, or when every cell was deleted), and neither drops duplicated tests nor restores
the order. :class:`RepairNotebookStructure` runs before nbgrader's ``DeduplicateIds`` and
``OverwriteCells`` (which then restores each instructor cell's source and type from the
gradebook).
"""

from __future__ import annotations

import copy
import json
import os

from nbformat.notebooknode import from_dict
from nbgrader.preprocessors import NbGraderPreprocessor

from .common import grade_id, is_instructor, is_solution, note, text


def release_notebook(config, resources) -> dict | None:
    """The student release of this notebook (or the source without its answer cells)."""
    from nbgrader.coursedir import CourseDirectory

    info = resources.get("nbgrader", {})
    coursedir = CourseDirectory(config=config)
    for folder in (coursedir.release_directory, coursedir.source_directory):
        path = os.path.join(coursedir.root, folder, info.get("assignment", ""), f"{info.get('notebook', '')}.ipynb")
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as handle:
                release = json.load(handle)
            if folder == coursedir.source_directory:  # never insert solutions
                release["cells"] = [c for c in release["cells"] if not is_solution(c)]
            return release
    return None


def group_cells(cells, reference: dict, locked_ids: set):
    """Each known nbgrader cell with the unknown cells after it; duplicates of locked cells dropped."""
    head: list = []  # student cells before any known nbgrader cell
    groups: dict[str, list] = {}
    attached, dropped, seen = head, [], []
    for cell in cells:
        gid = grade_id(cell)
        if gid not in reference:
            attached.append(cell)
        elif gid not in groups:
            groups[gid] = attached = [cell]
            seen.append(gid)
        elif gid in locked_ids:
            dropped.append(gid)  # a duplicate instructor cell: not the student's work
        else:
            attached.append(cell)  # DeduplicateIds strips its metadata
    return head, groups, dropped, seen


def fresh_copy(cell: dict):
    """A release cell as it was handed out, with no outputs."""
    cell = from_dict(copy.deepcopy(cell))
    cell.source = text(cell.source)
    if cell.cell_type == "code":
        cell.outputs, cell.execution_count = [], None
    return cell


class RepairNotebookStructure(NbGraderPreprocessor):
    """Rebuild the notebook in the release's order with every instructor cell once.

    * a locked cell (test, setup, instructions) that was deleted, or lost its nbgrader
      metadata, is put back (``OverwriteCells`` then restores its source from the
      gradebook); a deleted *answer* cell is not: the student's code may live elsewhere;
    * extra copies of a locked cell are dropped (the first copy is kept);
    * nbgrader cells are put back in the release's order; a cell the student added stays
      right after the nbgrader cell it followed;
    * a cell whose type was changed keeps its grade_id, and ``OverwriteCells`` turns it back.
    """

    def preprocess(self, nb, resources):
        release = release_notebook(self.config, resources)
        if release is None:
            note(self.log, "structure", "no release notebook to compare the structure with")
            return nb, resources
        reference = {grade_id(c): c for c in release["cells"] if grade_id(c)}
        order = list(reference)
        locked_ids = {g for g, c in reference.items() if is_instructor(c)}
        head, groups, dropped, seen = group_cells(nb.cells, reference, locked_ids)
        cells, restored = list(head), []
        for gid in order:
            if gid in groups:
                cells.extend(groups[gid])
            elif gid in locked_ids:
                cells.append(fresh_copy(reference[gid]))
                restored.append(gid)
        self._report(nb, reference, groups, locked_ids, restored, dropped, seen)
        nb.cells = cells
        return nb, resources

    def _report(self, nb, reference, groups, locked_ids, restored, dropped, seen) -> None:
        order = list(reference)
        retyped = [g for g in groups if groups[g][0].cell_type != reference[g]["cell_type"]]
        edited = [g for g in groups if g in locked_ids and g not in retyped
                  and text(groups[g][0].source) != text(reference[g]["source"])]
        if edited:
            note(self.log, "structure", f"instructor cells were edited; the originals are used: "
                 f"{', '.join(edited)}", cells=edited)
        if restored:
            note(self.log, "structure", f"instructor cells missing from the submission were put back: "
                 f"{', '.join(restored)}", cells=restored)
        if dropped:
            note(self.log, "structure", f"duplicated instructor cells were removed: {', '.join(dropped)}",
                 cells=dropped)
        if retyped:
            note(self.log, "structure", f"cells whose type was changed were turned back: {', '.join(retyped)}",
                 cells=retyped)
        if seen != sorted(seen, key=order.index):
            note(self.log, "structure", "instructor cells were out of order and were put back in the "
                 "release's order")
        if not any(is_solution(c) for c in nb.cells):
            note(self.log, "structure", "the submission has none of the answer cells (empty or a "
                 "different notebook): graded as given")
