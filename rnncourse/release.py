"""Regenerate ``exercises/`` from ``solutions/`` with ``nbgrader generate_assignment``.

Run it as ``make exercises`` (or ``python -m rnncourse.release``) after editing a
solution notebook, and commit both. A test checks that ``exercises/`` is exactly
what this produces. Generation happens in a throw-away course directory, so no
gradebook is left in the repository.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from rnncourse.course import REPO, assignments, generate_all, new_course


def main(argv: list[str]) -> int:
    wanted = argv or assignments()
    with tempfile.TemporaryDirectory() as tmp:
        root = new_course(Path(tmp) / "course", wanted)
        released = generate_all(root)
        for assignment in wanted:
            generated = released[assignment].parent
            target = REPO / "exercises" / assignment
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(generated, target)
            print(f"exercises/{assignment}/ regenerated from solutions/{assignment}/")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
