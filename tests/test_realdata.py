"""The real-data loaders of rnncourse.realdata, checked on the real files.

Where the shipping package has its own loader (sktime, statsmodels), the parsers here are
compared with it; counts and dates come from the data sets' own documentation.
"""

import binascii

import numpy as np
import pytest

from rnncourse import realdata


# ----------------------------------------------------------------------------- speech
@pytest.mark.parametrize("split, n, per_speaker", [
    ("train", 270, [30] * 9),                                   # UCI: 30 blocks per speaker
    ("test", 370, [31, 35, 88, 44, 29, 24, 40, 50, 29]),        # UCI: ae.test block counts
])
def test_japanese_vowels_shapes_and_documented_split(split, n, per_speaker):
    x, speaker = realdata.japanese_vowels(split)
    assert len(x) == n and speaker.shape == (n,)
    assert speaker.dtype == np.int64
    assert np.bincount(speaker, minlength=9).tolist() == per_speaker
    lengths = np.array([len(s) for s in x])
    assert lengths.min() >= 7 and lengths.max() <= 29
    for s in x:
        assert s.dtype == np.float32 and s.ndim == 2 and s.shape[1] == 12
        assert np.all(np.isfinite(s))
    # the UCI files list the speakers in blocks: speaker 0 first, speaker 8 last
    assert np.all(np.diff(speaker) >= 0)


def test_japanese_vowels_equals_sktime_loader():
    pytest.importorskip("sktime")
    from sktime.datasets import load_japanese_vowels

    for split in ("train", "test"):
        x, speaker = realdata.japanese_vowels(split)
        X, y = load_japanese_vowels(split=split, return_X_y=True)
        assert len(X) == len(x)
        np.testing.assert_array_equal(speaker, y.astype(int) - 1)
        for i in (0, 1, len(x) // 2, len(x) - 1):
            theirs = np.stack([X.iloc[i, k].to_numpy() for k in range(12)], axis=1)
            theirs = theirs[~np.isnan(theirs).any(axis=1)]          # sktime may pad with NaN
            np.testing.assert_allclose(x[i], theirs, rtol=1e-6)


def test_japanese_vowels_rejects_unknown_split():
    with pytest.raises(ValueError, match="split"):
        realdata.japanese_vowels("validation")


# ----------------------------------------------------------------------------- time series
def test_co2_weekly_dates_values_and_gaps():
    dates, raw = realdata.co2_weekly(fill=False)
    assert dates.dtype == np.dtype("datetime64[D]") and raw.dtype == np.float64
    assert str(dates[0]) == "1958-03-29" and str(dates[-1]) == "2001-12-29"
    assert np.all(np.diff(dates) == np.timedelta64(7, "D"))     # one value per week, no gaps
    assert len(dates) == (dates[-1] - dates[0]).astype(int) // 7 + 1
    n_missing = int(np.isnan(raw).sum())
    assert 0 < n_missing < 0.05 * len(raw)
    _, filled = realdata.co2_weekly()
    assert not np.isnan(filled).any()
    np.testing.assert_array_equal(filled[~np.isnan(raw)], raw[~np.isnan(raw)])
    assert 300 < filled.min() and filled.max() < 380              # ppm, 1958-2001


def test_co2_equals_statsmodels_loader():
    pytest.importorskip("statsmodels")
    pytest.importorskip("pandas")
    from statsmodels.datasets import co2

    frame = co2.load_pandas().data                                # DatetimeIndex, column co2
    dates, raw = realdata.co2_weekly(fill=False)
    assert len(frame) == len(dates)
    np.testing.assert_array_equal(frame.index.values.astype("datetime64[D]"), dates)
    np.testing.assert_array_equal(np.isnan(frame["co2"].to_numpy()), np.isnan(raw))
    expected = frame["co2"].interpolate(method="time").to_numpy()
    np.testing.assert_allclose(realdata.co2_weekly()[1], expected, rtol=1e-12)


def test_co2_split_is_in_time_and_covers_everything():
    dates, _ = realdata.co2_weekly()
    parts = realdata.split_by_time(dates)
    assert list(parts) == ["train", "validation", "test"]
    assert parts["train"].start == 0 and parts["test"].stop == len(dates)
    assert parts["train"].stop == parts["validation"].start
    assert parts["validation"].stop == parts["test"].start
    assert str(dates[parts["train"]][-1]) < "1990-01-01" <= str(dates[parts["validation"]][0])
    assert str(dates[parts["validation"]][-1]) < "1996-01-01" <= str(dates[parts["test"]][0])
    assert str(dates[parts["test"]][0])[:4] == "1996"


# ----------------------------------------------------------------------------- text
def test_stdlib_corpus_split_by_file():
    parts = realdata.stdlib_corpus()
    train_names = {name for name, _ in parts["train"]}
    heldout_names = {name for name, _ in parts["heldout"]}
    assert not train_names & heldout_names
    assert "os.py" in train_names | heldout_names
    for name in heldout_names:                    # the documented rule, computed independently
        assert binascii.crc32(name.encode()) % 10 == 0
    n_train = sum(len(text) for _, text in parts["train"])
    n_heldout = sum(len(text) for _, text in parts["heldout"])
    assert n_train + n_heldout > 1_000_000                        # "at least about 1 MB"
    assert 0.03 < n_heldout / (n_train + n_heldout) < 0.3
    assert realdata.stdlib_corpus() == parts                      # deterministic


def test_encode_decode_text():
    ids = realdata.encode_text("def f(x):\n    return x  # ok")
    assert ids.dtype == np.int32
    assert realdata.decode_text(ids) == "def f(x):\n    return x  # ok"
    assert realdata.decode_text(realdata.encode_text("é\t")) == "¤¤"
    assert len(realdata.TEXT_VOCAB) == 97          # newline + 95 printable ASCII + other
    assert realdata.TEXT_VOCAB[0] == "\n" and realdata.TEXT_VOCAB[-1] == "¤"


def test_missing_package_names_it():
    with pytest.raises(FileNotFoundError, match="no_such_package_xyz"):
        realdata.package_file("no_such_package_xyz", "data.csv")
