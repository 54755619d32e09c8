"""Checks for the keras_models assignment: parameter counts, a bidirectional tagger and a
stacked classifier, each against a reference model built from the specification."""

from __future__ import annotations

import numpy as np

from rnncourse.grading import call_student

#: The tagger's sizes in the visible checks.
SIZES = {"vocab_size": 20, "embed_dim": 5, "units": 6, "n_tags": 4}


def keras_counts(D: int, H: int) -> dict[str, int]:
    """count_params() of SimpleRNN, LSTM and GRU with H units built for D features."""
    import keras

    counts = {}
    for name in ("SimpleRNN", "LSTM", "GRU"):
        layer = getattr(keras.layers, name)(H)
        layer.build((None, None, D))
        counts[name] = layer.count_params()
    return counts


def check_counts(param_counts, D: int, H: int) -> None:
    """Compare param_counts(D, H) with the three Keras layers' count_params()."""
    got = call_student(param_counts, D, H)
    want = keras_counts(D, H)
    assert isinstance(got, dict) and set(got) == set(want), (
        f"param_counts should return a dict with the keys {sorted(want)}; got {got!r}")
    wrong = {name: (got[name], want[name]) for name in want if got[name] != want[name]}
    assert not wrong, f"param_counts({D}, {H}): " + "; ".join(
        f"{name} {g} but Keras has {w}" for name, (g, w) in wrong.items())


def reference_tagger(vocab_size: int, embed_dim: int, units: int, n_tags: int):
    """The tagger's specification, as the checks build it."""
    import keras

    tokens = keras.Input(shape=(None,), dtype="int32")
    x = keras.layers.Embedding(vocab_size, embed_dim, mask_zero=True)(tokens)
    x = keras.layers.Bidirectional(keras.layers.LSTM(units, return_sequences=True))(x)
    return keras.Model(tokens, keras.layers.Dense(n_tags, activation="softmax")(x))


def token_batch(B: int, T: int, vocab_size: int, seed: int, lengths=None) -> np.ndarray:
    """Random token ids in 1..vocab_size-1, padded with 0 after each sequence's length."""
    rng = np.random.default_rng(seed)
    tokens = rng.integers(1, vocab_size, size=(B, T)).astype("int32")
    for row, length in enumerate(lengths or []):
        tokens[row, length:] = 0
    return tokens


def check_tagger_structure(build_tagger, sizes: dict, B: int = 3, T: int = 7) -> None:
    """The tagger returns (B, T, n_tags) and has the specification's parameter count."""
    import keras

    model = build_tagger(**sizes)
    assert isinstance(model, keras.Model), f"build_tagger should return a keras.Model, not {type(model)}"
    out = keras.ops.convert_to_numpy(model(token_batch(B, T, sizes["vocab_size"], seed=0)))
    assert out.shape == (B, T, sizes["n_tags"]), (
        f"for token ids of shape {(B, T)} the tagger returns {out.shape}; expected (B, T, n_tags) = "
        f"{(B, T, sizes['n_tags'])}: one distribution per token (does the LSTM return sequences?)")
    want = reference_tagger(**sizes).count_params()
    assert model.count_params() == want, (
        f"the tagger has {model.count_params()} parameters; the specification has {want}: "
        "check the embedding size, that the LSTM is bidirectional, and the Dense layer")


def same_weights(model, reference) -> None:
    """Copy the reference's weights into the student's model (same shapes, same order)."""
    want = [w.shape for w in reference.get_weights()]
    got = [w.shape for w in model.get_weights()]
    assert got == want, (
        f"the model's weights have shapes {got}; the specification's are {want}: build the "
        "layers in the order given")
    model.set_weights(reference.get_weights())


def check_tagger_outputs(build_tagger, sizes: dict, B: int, T: int, seed: int) -> None:
    """With the specification's weights, the tagger computes what the specification computes."""
    import keras

    keras.utils.set_random_seed(seed)
    reference = reference_tagger(**sizes)
    model = build_tagger(**sizes)
    same_weights(model, reference)
    tokens = token_batch(B, T, sizes["vocab_size"], seed)
    got = keras.ops.convert_to_numpy(model(tokens))
    want = keras.ops.convert_to_numpy(reference(tokens))
    assert got.shape == want.shape, f"the tagger returns {got.shape}; expected {want.shape}"
    if not np.allclose(got, want, atol=1e-5, rtol=1e-5):
        hint = ""
        if not np.allclose(got.sum(axis=-1), 1.0, atol=1e-4):
            hint = " Each token's outputs should be probabilities that sum to 1: a softmax."
        raise AssertionError(
            "with the specification's weights the tagger's outputs differ (largest difference "
            f"{np.abs(got - want).max():.3g}).{hint}")


def check_tagger_padding(build_tagger, sizes: dict, lengths: list[int], T: int, seed: int) -> None:
    """Padding (id 0) after a sentence changes none of the tagger's outputs for its tokens."""
    import keras

    keras.utils.set_random_seed(seed)
    model = build_tagger(**sizes)
    padded = token_batch(len(lengths), T, sizes["vocab_size"], seed, lengths=lengths)
    out_padded = keras.ops.convert_to_numpy(model(padded))
    assert out_padded.shape == (len(lengths), T, sizes["n_tags"]), (
        f"the tagger returns {out_padded.shape}; expected (B, T, n_tags) = {(len(lengths), T, sizes['n_tags'])}")
    for row, length in enumerate(lengths):
        alone = keras.ops.convert_to_numpy(model(padded[row:row + 1, :length]))[0]
        assert np.allclose(out_padded[row, :length], alone, atol=1e-5), (
            f"a sentence of {length} tokens gets other tags when padded to {T} with zeros: the "
            "padding reaches the LSTM (the backward direction reads it first). Mask the padding "
            "id 0 in the Embedding (mask_zero=True).")


def reference_classifier(n_features: int, units: int):
    """The classifier's specification, as the checks build it."""
    import keras

    sequences = keras.Input(shape=(None, n_features))
    x = keras.layers.Masking(mask_value=0.0)(sequences)
    x = keras.layers.LSTM(units, return_sequences=True)(x)
    x = keras.layers.LSTM(units)(x)
    return keras.Model(sequences, keras.layers.Dense(1, activation="sigmoid")(x))


def signal_batch(B: int, T: int, n_features: int, seed: int, lengths=None) -> np.ndarray:
    """Random float32 sequences, zero after each sequence's length."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(B, T, n_features)).astype("float32")
    for row, length in enumerate(lengths or []):
        x[row, length:] = 0.0
    return x


def check_classifier_structure(build_classifier, n_features: int, units: int, B: int = 3,
                               T: int = 6) -> None:
    """The classifier returns (B, 1) and has the specification's parameter count."""
    import keras

    model = build_classifier(n_features, units)
    assert isinstance(model, keras.Model), f"build_classifier should return a keras.Model, not {type(model)}"
    out = keras.ops.convert_to_numpy(model(signal_batch(B, T, n_features, seed=0)))
    assert out.shape == (B, 1), (
        f"for sequences of shape {(B, T, n_features)} the classifier returns {out.shape}; "
        f"expected (B, 1): one probability per sequence")
    want = reference_classifier(n_features, units).count_params()
    assert model.count_params() == want, (
        f"the classifier has {model.count_params()} parameters; the specification has {want}: "
        "two LSTM layers of `units` units, then Dense(1)")


def check_classifier_outputs(build_classifier, n_features: int, units: int, B: int, T: int,
                             seed: int) -> None:
    """With the specification's weights, the classifier computes what the specification computes."""
    import keras

    keras.utils.set_random_seed(seed)
    reference = reference_classifier(n_features, units)
    model = build_classifier(n_features, units)
    same_weights(model, reference)
    x = signal_batch(B, T, n_features, seed)
    got = keras.ops.convert_to_numpy(model(x))
    want = keras.ops.convert_to_numpy(reference(x))
    assert got.shape == want.shape, f"the classifier returns {got.shape}; expected {want.shape}"
    assert np.allclose(got, want, atol=1e-5, rtol=1e-5), (
        "with the specification's weights the classifier's outputs differ (largest difference "
        f"{np.abs(got - want).max():.3g}): check the order of the layers and the sigmoid.")


def check_classifier_padding(build_classifier, n_features: int, units: int, lengths: list[int],
                             T: int, seed: int) -> None:
    """Zero steps padded at the end change none of the classifier's outputs."""
    import keras

    keras.utils.set_random_seed(seed)
    model = build_classifier(n_features, units)
    padded = signal_batch(len(lengths), T, n_features, seed, lengths=lengths)
    out = keras.ops.convert_to_numpy(model(padded))
    assert out.shape == (len(lengths), 1), f"the classifier returns {out.shape}; expected (B, 1)"
    for row, length in enumerate(lengths):
        alone = keras.ops.convert_to_numpy(model(padded[row:row + 1, :length]))
        assert np.allclose(out[row], alone[0], atol=1e-5), (
            f"a sequence of {length} steps gets another probability when padded to {T} steps with "
            "zeros: the LSTMs read the padding. Mask it (Masking(mask_value=0.0)).")
