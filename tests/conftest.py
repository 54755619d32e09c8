import sys
from pathlib import Path

# tests/submissions.py is imported by the grading tests as a plain module.
sys.path.insert(0, str(Path(__file__).parent))
