"""The course's nbgrader plug-ins, one job per module (``nbgrader_config.py`` switches them on).

* :mod:`.tflogs` - :class:`DropTensorFlowLogs`: TensorFlow's own log lines never zero a test;
* :mod:`.feedback` - :class:`HideTestTracebacks`: feedback without the hidden tests' code;
* :mod:`.repair` - :class:`RepairNotebookStructure`: deleted, duplicated, moved or re-typed
  instructor cells put back before anything runs;
* :mod:`.scan` - :class:`ReportSuspiciousCode`: code that could tamper with the tests, listed;
* :mod:`.output` - :class:`LimitOutputSize`: every output cut to a bounded size;
* :mod:`.guard` - :class:`KernelGuard`: inside the kernel, restores what the tests use;
* :mod:`.sandbox` - :class:`SandboxedKernelManager`: a bubblewrap allow-list sandbox and resource limits;
* :mod:`.execute` - :class:`GuardedExecute`: nbgrader's ``Execute`` with the two above, and a
  new kernel when one dies; :mod:`.warm` - kernels started ahead for a grading process;
* :mod:`.version` - the course version a submission was made with.

Each plug-in logs what it did on a line with ``RNNCOURSE-NOTE`` (:func:`.common.note`), which
``python -m rnncourse.classgrade`` copies into the submission's status file.
"""

from .common import NOTE_MARKER, note
from .execute import GuardedExecute
from .feedback import HideTestTracebacks
from .guard import KernelGuard, kernel_guard_source
from .output import LimitOutputSize
from .repair import RepairNotebookStructure
from .sandbox import SandboxedKernelManager, isolation_available
from .scan import ReportSuspiciousCode, suspicious_code
from .tflogs import DropTensorFlowLogs, strip_tensorflow_log_lines
from .version import submission_version

__all__ = ["NOTE_MARKER", "DropTensorFlowLogs", "GuardedExecute", "HideTestTracebacks", "KernelGuard",
           "LimitOutputSize", "RepairNotebookStructure", "ReportSuspiciousCode", "SandboxedKernelManager",
           "isolation_available", "kernel_guard_source", "note", "strip_tensorflow_log_lines",
           "submission_version", "suspicious_code"]
