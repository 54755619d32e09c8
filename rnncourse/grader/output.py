"""Bounded output (autograde, after execution).

nbgrader's ``LimitOutput`` counts lines only, so one 10 MB line stays 10 MB in the graded
notebook and the feedback page; :class:`LimitOutputSize` cuts every output to
``max_chars`` characters.
"""

from __future__ import annotations

from nbgrader.preprocessors import NbGraderPreprocessor
from traitlets import Integer

from .common import cell_name, note


class LimitOutputSize(NbGraderPreprocessor):
    """Cut every output to ``max_chars`` characters."""

    max_chars = Integer(20000, help="Characters kept per output").tag(config=True)

    def _cut(self, text: str) -> str:
        if len(text) <= self.max_chars:
            return text
        return text[: self.max_chars] + f"\n... [output cut: {len(text) - self.max_chars} more characters]\n"

    def _cut_output(self, output) -> bool:
        """Cut one output in place; whether anything was cut."""
        kind, cut = output.get("output_type"), False
        if kind == "stream":
            text = output.text if isinstance(output.text, str) else "".join(output.text)
            output.text, cut = self._cut(text), len(text) > self.max_chars
        elif kind in ("execute_result", "display_data"):
            for mime, value in list(output.get("data", {}).items()):
                value = value if isinstance(value, str) else "".join(value)
                if len(value) > self.max_chars:
                    output.data[mime] = self._cut(value) if mime.startswith("text/") else ""
                    cut = True
        elif kind == "error" and len(output.get("evalue", "")) > self.max_chars:
            output.evalue, cut = self._cut(output.evalue), True
        return cut

    def preprocess_cell(self, cell, resources, cell_index):
        if cell.cell_type != "code":
            return cell, resources
        cut = [self._cut_output(output) for output in cell.get("outputs", [])]
        if any(cut):
            name = cell_name(cell, cell_index)
            note(self.log, "output", f"{name}: output longer than {self.max_chars} characters was cut", cell=name)
        return cell, resources
