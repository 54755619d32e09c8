"""A static look at the student's own code (autograde's sanitize step; no score change).

:func:`suspicious_code` lists what in a cell could tamper with the tests, for a human to
look at; :class:`ReportSuspiciousCode` logs it. Not a verdict: the runtime guard decides.
"""

from __future__ import annotations

import ast
import builtins

from nbgrader.preprocessors import NbGraderPreprocessor

from .. import course, setupcell
from .common import cell_name, is_instructor, note

_TAMPER_NAMES = {"get_ipython", "__builtins__", "builtins", "setattr", "delattr", "exec", "eval",
                 "compile", "__import__", "globals", "ctypes", "gc", "importlib", "inspect"}
_TAMPER_ATTRS = {"settrace", "setprofile", "modules", "__code__", "__defaults__", "__kwdefaults__",
                 "__globals__", "__dict__", "excepthook", "displayhook", "f_globals", "f_locals"}
_TAMPER_MODULES = {"builtins", "ctypes", "gc", "importlib", "inspect", "threading", "multiprocessing",
                   "socket", "subprocess"}
_BUILTIN_NAMES = set(dir(builtins)) - {"__name__", "__doc__", "_"}


def _attribute_assignments(node) -> list[str]:
    targets = []
    if isinstance(node, (ast.Assign, ast.Delete)):
        targets = node.targets
    elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
        targets = [node.target]
    found = []
    for target in targets:
        for sub in (target.elts if isinstance(target, (ast.Tuple, ast.List)) else [target]):
            if isinstance(sub, ast.Attribute) and isinstance(sub.value, (ast.Name, ast.Attribute)):
                found.append(f"line {node.lineno}: assigns to an attribute of another object ({ast.unparse(sub)})")
    return found


def _tampering(node) -> list[str]:
    if isinstance(node, ast.Name) and node.id in _TAMPER_NAMES:
        return [f"line {node.lineno}: uses {node.id}"]
    if isinstance(node, ast.Attribute) and node.attr in _TAMPER_ATTRS:
        return [f"line {node.lineno}: uses .{node.attr}"]
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        names = [a.name for a in node.names] + ([node.module] if getattr(node, "module", None) else [])
        if any(n.split(".")[0] in _TAMPER_MODULES for n in names):
            return [f"line {node.lineno}: imports {', '.join(names)}"]
    return []


def _shadowed_builtins(tree) -> list[str]:
    found = []
    for node in tree.body:  # top-level names that shadow builtins the tests may use
        names = []
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names = [node.name]
        elif isinstance(node, ast.Assign):
            names = [t.id for t in node.targets if isinstance(t, ast.Name)]
        found += [f"line {node.lineno}: redefines the builtin {name}" for name in names if name in _BUILTIN_NAMES]
    return found


def suspicious_code(source: str) -> list[str]:
    """What in a student's cell could tamper with the tests (for a human to look at).

    Not a verdict: the runtime guard (GuardedExecute) decides the score; this tells the
    instructor where to look. Lines starting with % or ! (IPython magics) are skipped.
    """
    code = "\n".join(line for line in source.splitlines() if not line.lstrip().startswith(("%", "!")))
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return []
    found = []
    for node in ast.walk(tree):
        found += _attribute_assignments(node) + _tampering(node)
    found += _shadowed_builtins(tree)
    return sorted(set(found), key=lambda s: int(s.split(":")[0].split()[1]))


class ReportSuspiciousCode(NbGraderPreprocessor):
    """Log the student's code that could tamper with the tests (sanitize step; no score change)."""

    def preprocess_cell(self, cell, resources, cell_index):
        if cell.cell_type == "code" and not is_instructor(cell) and not course_setup_cell(cell):
            findings = suspicious_code(cell.source)
            if findings:
                name = cell_name(cell, cell_index)
                note(self.log, "suspicious", f"{name}: " + "; ".join(findings[:8]), cell=name)
        return cell, resources


def course_setup_cell(cell) -> bool:
    """Whether ``cell`` is the course's set-up cell exactly as the course writes it (for the
    version it names): that code is the course's, not the student's. An edited one is scanned."""
    if not setupcell.is_setup_cell(cell):
        return False
    version = setupcell.notebook_course_version({"cells": [cell]})
    if version is None:
        return False
    urls = {"", setupcell.site_url_from_config(course.REPO / "_config.yml")}
    return any(cell.source == setupcell.cell_source(version, url) for url in urls)
