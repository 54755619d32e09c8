"""Feedback that teaches without quoting the hidden tests (``generate_feedback``).

nbgrader's feedback quotes a failing grade cell's source in the traceback, hidden tests
included. :class:`HideTestTracebacks` drops the frames that belong to the grade cell itself
and to the course's checks, and keeps the exception and its message (written for the
student) and the frames of the student's own cells.
"""

from __future__ import annotations

import re

from nbgrader.preprocessors import NbGraderPreprocessor

from .common import PACKAGE_DIR, is_grade

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class HideTestTracebacks(NbGraderPreprocessor):
    """Cut the test code (the grade cell's own frames, the course's checks) out of tracebacks.

    What stays: the header, the frames of the student's own cells and of libraries
    their code called, and the final ``Error: message`` line.
    """

    note = "(the test's own code is not shown)"

    def _is_test_frame(self, frame: str, own_cell: str) -> bool:
        first_line = _ANSI.sub("", frame).lstrip().split("\n", 1)[0]
        return first_line.startswith(f"Cell {own_cell},") or (
            first_line.startswith("File ") and f"{PACKAGE_DIR}" in first_line
        )

    def preprocess_cell(self, cell, resources, cell_index):
        if cell.cell_type != "code" or not is_grade(cell):
            return cell, resources
        own_cell = f"In[{cell.get('execution_count')}]"
        for output in cell.get("outputs", []):
            if output.get("output_type") != "error":
                continue
            frames = []
            for frame in output.get("traceback", []):
                if not self._is_test_frame(frame, own_cell):
                    frames.append(frame)
                elif not frames or frames[-1] != self.note:
                    frames.append(self.note)
            output.traceback = frames
        return cell, resources
