"""Loaders for the real data sets of the application pages (text, speech, time series).

Every file read here ships inside an installed package, so the pages build offline:

* **text**: the Python standard library's own top-level modules (``Lib/*.py`` of the Python
  that runs the page), split into training and held-out text *by file*;
* **speech**: the UCI *Japanese Vowels* set (Kudo et al., 1999) as shipped by ``sktime``
  (``sktime/datasets/data/JapaneseVowels/*.ts``), read with a small parser so that a page
  does not pay for importing sktime (``tests/test_realdata.py`` checks the parser against
  sktime's own loader);
* **time series**: weekly atmospheric CO2 at Mauna Loa, 1958-2001, as shipped by
  ``statsmodels`` (``statsmodels/datasets/co2/co2.csv``), read without pandas.

Nothing here trains or teaches: the pages do that.
"""

from __future__ import annotations

import csv
import importlib.util
import string
import sysconfig
import zlib
from pathlib import Path

import numpy as np

__all__ = [
    "CO2_SPLIT",
    "TEXT_VOCAB",
    "co2_weekly",
    "decode_text",
    "encode_text",
    "japanese_vowels",
    "package_file",
    "split_by_time",
    "stdlib_corpus",
]


def package_file(package: str, *parts: str) -> Path:
    """Path of a data file inside an installed package, found without importing it.

    ``importlib.util.find_spec`` locates a top-level package without executing its
    ``__init__`` (sktime's takes seconds). Raises FileNotFoundError naming the package to
    install when the package or the file is missing.
    """
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"this data set ships inside the package {package!r}, which is "
                                "not installed: pip install 'rnncourse[data]' (the course's "
                                "Set up your computer page)")
    path = Path(next(iter(spec.submodule_search_locations)), *parts)
    if not path.is_file():
        raise FileNotFoundError(f"{path} is not in the installed {package!r}")
    return path


# --------------------------------------------------------------------------- speech
def _read_ts(path: Path) -> tuple[list[np.ndarray], np.ndarray]:
    """Parse a multivariate, unequal-length ``.ts`` file (sktime/UEA format).

    Each data line is ``dim_1:dim_2:...:dim_D:label`` where ``dim_k`` is the comma-separated
    values of one channel. Returns one (T_i, D) float32 array per line and the labels as
    strings.
    """
    sequences, labels = [], []
    in_data = False
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if not in_data:
                in_data = line.lower() == "@data"
                continue
            *channels, label = line.split(":")
            values = [np.array(ch.split(","), dtype=np.float32) for ch in channels]
            sequences.append(np.stack(values, axis=1))           # (T_i, D)
            labels.append(label)
    return sequences, np.array(labels)


def japanese_vowels(split: str) -> tuple[list[np.ndarray], np.ndarray]:
    """The Japanese Vowels speaker-identification set, one of its two published splits.

    split: ``"train"`` (270 utterances, 30 per speaker) or ``"test"`` (370 utterances,
    between 24 and 88 per speaker), the split of the UCI donors, kept by sktime.
    Returns ``(x, speaker)``: ``x`` a list of (T_i, 12) float32 arrays (12 LPC cepstrum
    coefficients per frame, T_i between 7 and 29), ``speaker`` (N,) int64 in 0..8 (the
    file's labels 1..9 minus one).
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', not {split!r}")
    path = package_file("sktime", "datasets", "data", "JapaneseVowels",
                        f"JapaneseVowels_{split.upper()}.ts")
    x, labels = _read_ts(path)
    return x, labels.astype(np.int64) - 1


# --------------------------------------------------------------------------- time series
#: The forecasting page's split in time: training before 1990, validation 1990-1995,
#: test 1996 to the end of the series (December 2001).
CO2_SPLIT = {"train": (None, "1990-01-01"), "validation": ("1990-01-01", "1996-01-01"),
             "test": ("1996-01-01", None)}


def co2_weekly(fill: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Weekly mean CO2 at Mauna Loa (ppm), 29 March 1958 to 29 December 2001.

    Returns ``(dates, co2)``: (N,) datetime64[D] and (N,) float64, one value per week
    (weeks end on Saturday). The file has weeks without a value (isolated weeks and a few
    runs of weeks); with ``fill=True`` each is filled by linear interpolation in time
    between the nearest weeks that have one, with ``fill=False`` they are NaN.
    """
    path = package_file("statsmodels", "datasets", "co2", "co2.csv")
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    dates = np.array([f"{r['date'][:4]}-{r['date'][4:6]}-{r['date'][6:]}" for r in rows],
                     dtype="datetime64[D]")
    co2 = np.array([float(r["co2"]) if r["co2"] else np.nan for r in rows])
    if fill:
        missing = np.isnan(co2)
        t = dates.astype(np.int64)
        co2[missing] = np.interp(t[missing], t[~missing], co2[~missing])
    return dates, co2


def split_by_time(dates: np.ndarray, split: dict[str, tuple] = CO2_SPLIT) -> dict[str, slice]:
    """Index slices of the parts of ``split`` (name -> [start, end) dates, None = open)."""
    dates = np.asarray(dates, dtype="datetime64[D]")
    out = {}
    for name, (start, end) in split.items():
        i = 0 if start is None else int(np.searchsorted(dates, np.datetime64(start)))
        j = len(dates) if end is None else int(np.searchsorted(dates, np.datetime64(end)))
        out[name] = slice(i, j)
    return out


# --------------------------------------------------------------------------- text
#: The text page's characters: the line break, printable ASCII, and one id (shown as "¤")
#: for every other character (tabs, accented letters in comments and strings: rare).
TEXT_VOCAB = "\n" + "".join(c for c in string.printable if c.isprintable()) + "¤"
_TEXT_ID = {c: i for i, c in enumerate(TEXT_VOCAB)}
_OTHER = len(TEXT_VOCAB) - 1


def encode_text(text: str) -> np.ndarray:
    """Character ids (int32) of ``text`` in TEXT_VOCAB; characters outside it map to "¤"."""
    return np.array([_TEXT_ID.get(c, _OTHER) for c in text], dtype=np.int32)


def decode_text(ids) -> str:
    """The inverse of encode_text (up to the characters it merged into "¤")."""
    return "".join(TEXT_VOCAB[int(i)] for i in ids)


def stdlib_corpus(heldout_every: int = 10) -> dict[str, list[tuple[str, str]]]:
    """The standard library's top-level modules as a text corpus, split by file.

    Reads every ``*.py`` file directly in the running Python's stdlib directory (no
    subpackages, no tests), in sorted order. A file is held out when the CRC-32 of its
    name is divisible by ``heldout_every``: deterministic, independent of which other
    files a Python version has, and never splitting a file. Returns
    ``{"train": [(name, text), ...], "heldout": [...]}``.
    """
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(stdlib.glob("*.py"))
    if not files:
        raise FileNotFoundError(f"no standard-library sources in {stdlib}")
    parts: dict[str, list[tuple[str, str]]] = {"train": [], "heldout": []}
    for path in files:
        part = "heldout" if zlib.crc32(path.name.encode()) % heldout_every == 0 else "train"
        parts[part].append((path.name, path.read_text(encoding="utf-8", errors="replace")))
    return parts
