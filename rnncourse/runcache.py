"""A cache for seeded training runs that several pages share.

Pages of the book execute in separate kernels, possibly at the same time (the book build
reads pages in parallel). Several pages show the same seeded run (the lag-50 SimpleRNN,
LSTM and GRU of the running example); with this cache the first page that needs a run
trains it and the others load it.

A run is keyed on everything that determines it: the function's name, every argument,
the source of the modules that compute it (:data:`SOURCES`) and the TensorFlow, Keras and
NumPy versions. Training is deterministic (``seed_everything`` turns on TensorFlow's op
determinism), so a loaded run is the run a page would have trained itself: no page's
numbers depend on which page ran first (``tests/test_runcache.py`` checks this).

The cache is off unless the environment variable ``RNNCOURSE_RUN_CACHE`` names a folder;
the book build sets it to ``_build/.run_cache``. A reader who runs a downloaded page trains
everything themselves, as the page says.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pickle
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

ENV = "RNNCOURSE_RUN_CACHE"
#: The modules whose code determines a cached run: a change to any of them is a new key.
SOURCES = ("experiments.py", "analysis.py", "data.py", "seeding.py", "runcache.py")


def folder() -> Path | None:
    """The cache folder, or ``None`` when caching is off."""
    value = os.environ.get(ENV, "").strip()
    return Path(value) if value else None


def _canonical(value: Any) -> Any:
    """A JSON-able form of an argument that identifies it, or raise ``TypeError``."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in sorted(value.items())}
    if hasattr(value, "get_config"):  # a Keras initializer, regularizer, constraint ...
        return {"class": type(value).__module__ + "." + type(value).__qualname__,
                "config": _canonical(value.get_config())}
    raise TypeError(f"cannot key a cached run on {type(value).__name__} {value!r}")


def _versions() -> dict[str, str]:
    import keras
    import numpy
    import tensorflow

    return {"keras": keras.__version__, "numpy": numpy.__version__,
            "tensorflow": tensorflow.__version__}


def key(name: str, arguments: dict[str, Any]) -> str:
    """The hex digest that identifies run ``name`` with ``arguments`` on this code."""
    here = Path(__file__).parent
    sources = {s: hashlib.sha256((here / s).read_bytes()).hexdigest() for s in SOURCES}
    blob = json.dumps({"name": name, "arguments": _canonical(arguments),
                       "sources": sources, "versions": _versions()}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


@contextlib.contextmanager
def _locked(path: Path):
    """Hold an exclusive lock on ``path`` (one writer per key across processes)."""
    import fcntl

    with open(path, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def cached(name: str, arguments: dict[str, Any], compute: Callable[[], Any]) -> Any:
    """``compute()``, or its pickled result from an earlier identical call.

    With caching off, or arguments that cannot be keyed, this is just ``compute()``.
    Two processes asking for the same key at once: one computes, the other waits and loads.
    """
    where = folder()
    if where is None:
        return compute()
    try:
        digest = key(name, arguments)
    except TypeError:
        return compute()
    where.mkdir(parents=True, exist_ok=True)
    result_path = where / f"{name}-{digest}.pkl"
    with _locked(where / f"{name}-{digest}.lock"):
        if result_path.exists():
            with open(result_path, "rb") as handle:
                return pickle.load(handle)
        result = compute()
        fd, tmp = tempfile.mkstemp(dir=where, suffix=".tmp")
        with os.fdopen(fd, "wb") as handle:
            pickle.dump(result, handle, pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, result_path)
        return result
