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


def build_failure(build, lines: int = 120) -> str:
    """What a failed `jupyter-book build` said: each traceback with the lines after it, the
    warnings and errors, and the execution reports Jupyter Book wrote (a failed page's cells)."""
    log = (build.stdout + "\n" + build.stderr).splitlines()
    keep: list[str] = []
    after = 0
    for line in log:
        if "Traceback" in line:
            after = 40
        if after or ("WARNING" in line or "ERROR" in line) and "IPKernelApp" not in line:
            keep.append(line)
        after = max(after - 1, 0)
    text = "\n".join(keep[-lines:]) or "\n".join(log[-lines:])
    reports = REPO / "_build" / "html" / "reports"
    for report in sorted(reports.rglob("*.log")) if reports.is_dir() else []:
        text += f"\n--- {report.relative_to(REPO)} (last 60 lines) ---\n"
        text += "\n".join(report.read_text(errors="replace").splitlines()[-60:])
    return f"jupyter-book build failed (exit {build.returncode}):\n{text}"
