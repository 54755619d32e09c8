"""nbgrader's configuration: this folder is the course directory.

Instructor source notebooks (solutions and hidden tests) live in ``solutions/``;
the student versions that ``nbgrader generate_assignment`` writes go to
``exercises/``. See chapters/instructors.md for the whole grading workflow.
"""

import os

# Keep TensorFlow's start-up log lines off stderr in every kernel nbgrader starts
# (kernels inherit this process's environment). DropTensorFlowLogs below removes
# whatever a student's code still makes TensorFlow print.
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
os.environ["TF_ENABLE_ONEDNN_OPTS"] = "0"

from nbconvert.preprocessors import ClearMetadataPreprocessor  # noqa: E402
from nbgrader.preprocessors import (  # noqa: E402
    AssignLatePenalties,
    CheckCellMetadata,
    ClearHiddenTests,
    Execute,
    GetGrades,
    LimitOutput,
    SaveAutoGrades,
)
from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor  # noqa: E402

from rnncourse.nbgrader_hooks import DropTensorFlowLogs, HideTestTracebacks  # noqa: E402

c = get_config()  # noqa: F821 (provided by traitlets when nbgrader loads this file)

c.CourseDirectory.root = os.path.dirname(os.path.abspath(__file__))
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "exercises"

# A cell that runs longer than this is stopped and scores 0 (an infinite loop
# costs one student two minutes, not the whole class the night).
c.ExecutePreprocessor.timeout = 120
c.Execute.timeout = 120

c.Autograde.autograde_preprocessors = [
    Execute,
    DropTensorFlowLogs,
    ClearMetadataPreprocessor,
    LimitOutput,
    SaveAutoGrades,
    AssignLatePenalties,
    CheckCellMetadata,
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
