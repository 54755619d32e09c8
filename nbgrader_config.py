"""nbgrader's configuration: this folder is the course directory.

Instructor source notebooks (solutions and hidden tests) live in ``solutions/``;
the student versions that ``nbgrader generate_assignment`` writes go to
``exercises/``. See chapters/instructors.md for the whole grading workflow.
"""

import os

# Keep TensorFlow's start-up log lines off stderr in every kernel nbgrader starts
# (kernels inherit this process's environment; rnncourse.TF_ENV is the one place
# that names the variables). DropTensorFlowLogs below removes whatever a student's code
# still makes TensorFlow print.
from rnncourse import TF_ENV

os.environ.update(TF_ENV)

from nbconvert.preprocessors import (
    ClearMetadataPreprocessor,
    CSSHTMLHeaderPreprocessor,
)
from nbgrader.preprocessors import (
    AssignLatePenalties,
    CheckCellMetadata,
    ClearHiddenTests,
    ClearOutput,
    DeduplicateIds,
    GetGrades,
    LimitOutput,
    OverwriteCells,
    OverwriteKernelspec,
    SaveAutoGrades,
)

from rnncourse.grader import (
    DropTensorFlowLogs,
    GuardedExecute,
    HideTestTracebacks,
    LimitOutputSize,
    RepairNotebookStructure,
    ReportSuspiciousCode,
)

c = get_config()  # noqa: F821 (provided by traitlets when nbgrader loads this file)

c.CourseDirectory.root = os.path.dirname(os.path.abspath(__file__))
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "exercises"

# A cell that runs longer than this is stopped and scores 0 (an infinite loop
# costs one student two minutes, not the whole class the night).
c.ExecutePreprocessor.timeout = 120
c.Execute.timeout = 120

# Hostile submissions (see the guide's "Grading a real class"). Before running anything:
# put the instructor's cells back (deleted, duplicated, re-typed or moved tests) and log the
# student's code that could tamper with the tests. While running: GuardedExecute replaces
# nbgrader's Execute (same traits) with kernels that have a memory cap, a CPU-time cap, no
# network and (as root) no view of the solutions, the gradebook or other students' files,
# a guard that restores np.allclose & co. before each test, and a new kernel when one dies.
c.Autograde.sanitize_preprocessors = [
    ClearOutput,
    RepairNotebookStructure,
    DeduplicateIds,
    OverwriteKernelspec,
    OverwriteCells,
    ReportSuspiciousCode,
    CheckCellMetadata,
]
c.Autograde.autograde_preprocessors = [
    GuardedExecute,
    DropTensorFlowLogs,
    ClearMetadataPreprocessor,
    LimitOutput,
    LimitOutputSize,
    SaveAutoGrades,
    AssignLatePenalties,
    CheckCellMetadata,
]
c.GuardedExecute.timeout = 120
c.SandboxedKernelManager.memory_limit = 4 * 1024**3  # bytes of address space (TensorFlow needs ~1.5 GB)
c.SandboxedKernelManager.cpu_limit = 600  # CPU seconds for a whole notebook; then the kernel is killed
_course = c.CourseDirectory.root
c.SandboxedKernelManager.hidden_paths = [
    os.path.join(_course, name) for name in
    ("solutions", "source", "submitted", "autograded", "feedback", "downloaded", "gradebook.db",
     ".nbgrader.log")
]

# Feedback shows each test's result and message, never the hidden tests' code:
# ClearHiddenTests removes them from the cells, HideTestTracebacks from tracebacks.
c.ClearHiddenTests.enforce_metadata = False
c.GenerateFeedback.preprocessors = [
    GetGrades,
    ClearHiddenTests,
    HideTestTracebacks,
    CSSHTMLHeaderPreprocessor,
]
# the kernel sees no folder of the course: its own submission is copied into its sandbox
