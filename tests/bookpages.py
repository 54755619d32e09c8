"""The pages of the book, read from _toc.yml, and the built site served on loopback (shared by
the book, browser and newcomer tests)."""

from __future__ import annotations

import contextlib
import functools
import http.server
import threading
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


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass


@contextlib.contextmanager
def serve(folder):
    """http://127.0.0.1:<free port> serving ``folder``, in a thread, while the block runs."""
    handler = functools.partial(QuietHandler, directory=str(folder))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)
