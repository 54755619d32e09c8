"""Former home of the nbgrader plug-ins, now the package :mod:`rnncourse.grader`.

Kept so that existing imports (``from rnncourse.nbgrader_hooks import ...``) keep working.
"""

from rnncourse.grader import *
from rnncourse.grader import __all__  # noqa: F401
