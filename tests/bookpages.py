"""The pages of the book, read from _toc.yml (shared by the book and browser tests)."""

from __future__ import annotations

from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent


def toc_files() -> list[str]:
    """Every page in _toc.yml, the root first, without the .md suffix."""
    toc = yaml.safe_load((REPO / "_toc.yml").read_text(encoding="utf-8"))
    files = [toc["root"]]

    def walk(entries):
        for entry in entries:
            if "file" in entry:
                files.append(entry["file"])
            walk(entry.get("sections", []))

    for part in toc.get("parts", []):
        walk(part.get("chapters", []))
    return files


def notebook_pages() -> list[str]:
    """Pages in the toc that are MyST-markdown notebooks (a jupytext header): they run code."""
    return [f for f in toc_files()
            if (REPO / f"{f}.md").is_file() and "jupytext:" in (REPO / f"{f}.md").read_text()[:300]]
