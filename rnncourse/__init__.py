"""Helpers shared by the course's pages, assignments and tests.

Importing this package before TensorFlow keeps TensorFlow's start-up log lines
(absl, oneDNN, CPU-feature notices) off stderr, so they never reach a rendered
page or a grade cell. Teaching code is *not* here: every equation is written in
the page that teaches it.
"""

import os

# Must happen before the first ``import tensorflow`` anywhere in the process. Level 3,
# not 2: on TensorFlow 2.21 with op determinism on (``seed_everything``), ``model.fit``
# with validation data logs an E-level line (node_def_util.cc, "NodeDef mentions
# attribute use_unbounded_threadpool") that level 2 lets through. Python exceptions
# are unaffected. oneDNN's start-up notice goes with it. The one place these are written:
# the grader, the tests and the benchmarks pass TF_ENV on to the processes they start.
TF_ENV = {"TF_CPP_MIN_LOG_LEVEL": "3", "TF_ENABLE_ONEDNN_OPTS": "0"}
os.environ.update(TF_ENV)
#: One TensorFlow thread (TensorFlow reads these when it starts) for kernels that run one per
#: core: the book's pages in a parallel build (_ext/parallel_pages.py) and the kernels of
#: classgrade's local workers. TensorFlow's default, pools as large as the machine in every
#: process, makes such kernels compete for the cores (numbers where each is set). Not set
#: here: a reader's or a student's notebook keeps TensorFlow's default.
TF_ONE_THREAD = {"TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1"}

from rnncourse.data import adding_problem, first_symbol
from rnncourse.seeding import seed_everything

__all__ = ["adding_problem", "first_symbol", "seed_everything"]
__version__ = "0.2.0"  # the one place; pyproject.toml and the set-up cells read it
