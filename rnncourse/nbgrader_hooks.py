"""Two nbgrader preprocessors that ``nbgrader_config.py`` plugs into the pipeline.

* :class:`DropTensorFlowLogs` runs in ``autograde`` after the notebook executes.
  nbgrader gives 0 to a grade cell with *any* stderr output; TensorFlow and absl
  write start-up and kernel log lines to stderr at moments no student controls.
  This removes exactly those lines (and nothing else) before the grades are saved.
* :class:`HideTestTracebacks` runs in ``generate_feedback``. nbgrader's feedback
  quotes a failing grade cell's source in the traceback, hidden tests included.
  This drops the frames that belong to the grade cell itself and keeps the
  exception and its message (written for the student) and the frames of the
  student's own cells.
"""

from __future__ import annotations

import os
import re

from nbgrader.preprocessors import NbGraderPreprocessor

_TF_LOG_LINE = re.compile(
    r"""^(?:
        WARNING:\ All\ log\ messages\ before\ absl::InitializeLog\(\)\ is\ called.*
      | [IWEF]\d{4}\ [\d:.]+\s+\d+\ [\w./-]+:\d+\]\ .*           # absl C++ log line
      | \d{4}-\d\d-\d\d\ [\d:.]+:\ [IWEF]\ (?:tensorflow|external|xla)/.*  # TF 2.x log line
      | To\ enable\ the\ following\ instructions:.*rebuild\ TensorFlow.*
      | (?:WARNING|INFO):absl:.*
    )$""",
    re.VERBOSE,
)
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def strip_tensorflow_log_lines(text: str) -> str:
    """Return ``text`` without the lines TensorFlow/absl log on their own."""
    kept = [line for line in text.splitlines(keepends=True) if not _TF_LOG_LINE.match(line.rstrip("\n"))]
    return "".join(kept)


def _is_grade_cell(cell) -> bool:
    return bool(cell.get("metadata", {}).get("nbgrader", {}).get("grade", False))


class DropTensorFlowLogs(NbGraderPreprocessor):
    """Remove TensorFlow/absl log lines from stderr outputs, so they cannot zero a grade."""

    def preprocess_cell(self, cell, resources, cell_index):
        if cell.cell_type != "code":
            return cell, resources
        outputs = []
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream" and output.get("name") == "stderr":
                output.text = strip_tensorflow_log_lines(output.text)
                if not output.text.strip():
                    continue
            outputs.append(output)
        cell.outputs = outputs
        return cell, resources


class HideTestTracebacks(NbGraderPreprocessor):
    """Cut the test code (the grade cell's own frames, the course's checks) out of tracebacks.

    What stays: the header, the frames of the student's own cells and of libraries
    their code called, and the final ``Error: message`` line.
    """

    note = "(the test's own code is not shown)"

    def _is_test_frame(self, frame: str, own_cell: str) -> bool:
        first_line = _ANSI.sub("", frame).lstrip().split("\n", 1)[0]
        return first_line.startswith(f"Cell {own_cell},") or (
            first_line.startswith("File ") and f"{_PACKAGE_DIR}" in first_line
        )

    def preprocess_cell(self, cell, resources, cell_index):
        if cell.cell_type != "code" or not _is_grade_cell(cell):
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
