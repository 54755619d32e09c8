"""TensorFlow's log lines are not a student's stderr (autograde, after execution).

nbgrader gives 0 to a grade cell with *any* stderr output; TensorFlow and absl write
start-up and kernel log lines to stderr at moments no student controls.
:class:`DropTensorFlowLogs` removes exactly those lines (and nothing else) before the
grades are saved.
"""

from __future__ import annotations

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


def strip_tensorflow_log_lines(text: str) -> str:
    """Return ``text`` without the lines TensorFlow/absl log on their own."""
    kept = [line for line in text.splitlines(keepends=True) if not _TF_LOG_LINE.match(line.rstrip("\n"))]
    return "".join(kept)


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
