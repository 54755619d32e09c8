"""Checks for the ``parallel_scan`` assignment (minGRU, sequential and as a parallel scan).

The minGRU of Feng et al. (2024), in the log-space form of their appendix: with
``k = x_t @ K + b`` and ``K`` (D, 2H) holding the blocks [z | h],

    z = sigmoid(k_z),  h_tilde = g(k_h),  h_t = (1 - z) * h_{t-1} + z * h_tilde,

where ``g(v) = v + 0.5`` for ``v >= 0`` and ``sigmoid(v)`` otherwise keeps ``h_tilde``
positive, so that a positive ``h0`` gives positive states whose logarithms exist.

References are TensorFlow computations in float64 (a step-by-step loop, and
``tf.GradientTape`` for the backward pass), never a NumPy copy of the solution. The
wrong variants below exist only to name a student's mistake in a failure message.
"""

from __future__ import annotations

import numpy as np

from rnncourse.grading import call_student, check_array

#: float64 against float64: tight enough to catch an off-by-one in a single entry.
TOL = {"atol": 1e-9, "rtol": 1e-9}


def g(v):
    """Feng et al.'s positive candidate activation: v + 0.5 for v >= 0, sigmoid(v) below."""
    v = np.asarray(v, dtype=float)
    return np.where(v >= 0, v + 0.5, 1.0 / (1.0 + np.exp(-np.minimum(v, 0.0))))


def min_gru_problem(B: int, T: int, D: int, H: int, seed: int, gate_bias: float = 0.0) -> dict:
    """Random float64 ``x`` (B, T, D), ``K`` (D, 2H), ``b`` (2H,) and a positive ``h0`` (B, H).

    ``gate_bias`` is added to the update-gate block of ``b``: a large value makes every
    ``z`` close to 1, so that ``cumsum(log(1 - z))`` grows large over a long sequence.
    """
    rng = np.random.default_rng(seed)
    b = 0.5 * rng.normal(size=2 * H)
    b[:H] += gate_bias
    return {"x": rng.normal(size=(B, T, D)), "K": 0.5 * rng.normal(size=(D, 2 * H)), "b": b,
            "h0": rng.uniform(0.1, 1.5, size=(B, H))}


def tf_min_gru(x, K, b, h0, convention: str = "minGRU", candidate: str = "g",
               gate_from_state: bool = False) -> np.ndarray:
    """The minGRU, one step after the other in TensorFlow (float64); returns h (B, T, H).

    The keyword arguments give known mistakes: ``convention="keras"`` mixes with
    ``z * h_prev + (1 - z) * h_tilde``; ``candidate="linear"`` drops ``g``;
    ``gate_from_state`` adds ``h_prev`` to the gate's pre-activation.
    """
    import tensorflow as tf

    H = np.shape(h0)[1]
    k = tf.tensordot(tf.constant(x, tf.float64), tf.constant(K, tf.float64), 1) + b
    v = k[..., H:]
    h_tilde = v if candidate == "linear" else tf.where(v >= 0, v + 0.5, tf.sigmoid(v))
    h = tf.constant(h0, tf.float64)
    states = []
    for t in range(np.shape(x)[1]):
        z = tf.sigmoid(k[:, t, :H] + (h if gate_from_state else 0.0))
        if convention == "keras":
            h = z * h + (1 - z) * h_tilde[:, t]
        else:
            h = (1 - z) * h + z * h_tilde[:, t]
        states.append(h)
    return tf.stack(states, axis=1).numpy()


def _sequence_suspects(p: dict) -> dict[str, np.ndarray]:
    x, K, b, h0 = p["x"], p["K"], p["b"], p["h0"]
    return {
        "Keras's GRU convention, z * h_prev + (1 - z) * h_tilde; the minGRU (Feng et al.) "
        "keeps the old state where z is close to 0: h_t = (1 - z) * h_prev + z * h_tilde":
            tf_min_gru(x, K, b, h0, convention="keras"),
        "the candidate used without g (h_tilde = x_t K_h + b_h); the log-space minGRU needs "
        "h_tilde = g(x_t K_h + b_h) > 0": tf_min_gru(x, K, b, h0, candidate="linear"),
        "the gate computed from h_prev as well as x_t; in the minGRU the gates depend on x_t "
        "only (that is what makes the recurrence linear in h)":
            tf_min_gru(x, K, b, h0, gate_from_state=True),
        "the states shifted by one step: h_{t-1} returned in place of h_t":
            np.concatenate([h0[:, None], tf_min_gru(x, K, b, h0)[:, :-1]], axis=1),
    }


def check_min_gru_sequential(min_gru_sequential, B: int, T: int, D: int, H: int, seed: int,
                             gate_bias: float = 0.0) -> None:
    """``min_gru_sequential(x, K, b, h0)`` equals the TensorFlow loop on one random problem."""
    p = min_gru_problem(B, T, D, H, seed, gate_bias)
    want = tf_min_gru(p["x"], p["K"], p["b"], p["h0"])
    got = call_student(min_gru_sequential, p["x"], p["K"], p["b"], p["h0"])
    check_array("h", got, want, shape_names="B, T, H", suspects=_sequence_suspects(p),
                time_axis=1, hint="compare each line with the three equations above.", **TOL)


def logcumsumexp_doubling(v, pad: float = -np.inf, steps: int | None = None) -> np.ndarray:
    """A doubling (Hillis-Steele) log-cumsum-exp along axis 1; wrong ``pad``/``steps`` are mistakes."""
    out = np.asarray(v, dtype=float)
    T = out.shape[1]
    n = int(np.ceil(np.log2(T))) if steps is None else steps
    for j in range(n):
        k = 2 ** j
        shifted = np.concatenate([np.full_like(out[:, :k], pad), out[:, :-k]], axis=1)
        out = np.logaddexp(out, shifted)
    return out


def logcumsumexp_problem(B: int, T: int, H: int, seed: int, offset: float = 0.0) -> np.ndarray:
    """Random ``v`` (B, T, H): normal values around ``offset`` plus a ramp, like log h over time."""
    rng = np.random.default_rng(seed)
    return rng.normal(size=(B, T, H)) + offset + 0.3 * np.arange(T)[None, :, None]


def check_logcumsumexp(logcumsumexp, B: int, T: int, H: int, seed: int, offset: float = 0.0) -> None:
    """``logcumsumexp(v)`` equals log(cumsum(exp(v))) along the time axis, computed stably."""
    v = logcumsumexp_problem(B, T, H, seed, offset)
    want = np.logaddexp.accumulate(v, axis=1)
    with np.errstate(all="ignore"):
        got = call_student(logcumsumexp, v)
    try:
        finite = np.all(np.isfinite(np.asarray(got, dtype=float)))
    except (TypeError, ValueError):
        finite = True  # check_array explains
    if not finite and np.shape(got) == want.shape:
        raise AssertionError(
            "`logcumsumexp(v)` contains inf or NaN although every exact value is finite "
            f"(the inputs reach {v.max():.0f}): exp overflows above about 709. Subtract the "
            "larger of the two numbers before exponentiating (the stabilising max), "
            "m + log(exp(u - m) + exp(w - m)), or use np.logaddexp.")
    n = int(np.ceil(np.log2(T)))
    suspects = {
        "padding with 0 (log 1) where the identity of log-add-exp is -inf (log 0)":
            logcumsumexp_doubling(v, pad=0.0),
    }
    if T > 1 and 2 ** (n - 1) < T:
        suspects[f"too few doubling steps: with T = {T} the offsets 1, 2, 4, ... must reach "
                 f"{2 ** (n - 1)}, i.e. ceil(log2(T)) = {n} steps, not floor(log2(T))"] = \
            logcumsumexp_doubling(v, steps=int(np.floor(np.log2(T))))
    check_array("logcumsumexp(v)", got, want, shape_names="B, T, H", suspects=suspects,
                time_axis=1, hint="entry t must be log(exp(v_0) + ... + exp(v_t)).", **TOL)


def check_min_gru_parallel(min_gru_parallel, B: int, T: int, D: int, H: int, seed: int,
                           gate_bias: float = 0.0) -> None:
    """``min_gru_parallel(x, K, b, h0)`` equals the TensorFlow loop on one random problem."""
    p = min_gru_problem(B, T, D, H, seed, gate_bias)
    want = tf_min_gru(p["x"], p["K"], p["b"], p["h0"])
    with np.errstate(all="ignore"):
        got = call_student(min_gru_parallel, p["x"], p["K"], p["b"], p["h0"])
    try:
        finite = np.all(np.isfinite(np.asarray(got, dtype=float)))
    except (TypeError, ValueError):
        finite = True
    if not finite and np.shape(got) == want.shape:
        raise AssertionError(
            f"`h` contains inf or NaN on a sequence of T = {T} steps with update gates close "
            "to 1: there cumsum(log(1 - z)) reaches large negative values and "
            "log h0 - cumsum(log(1 - z)) large positive ones. Is your logcumsumexp stable "
            "(the stabilising max)?")
    H = p["h0"].shape[1]
    one_minus_z = 1.0 / (1.0 + np.exp(p["x"] @ p["K"][:, :H] + p["b"][:H]))
    h_prev = np.concatenate([p["h0"][:, None], want[:, :-1]], axis=1)
    suspects = _sequence_suspects(p)
    suspects["an off-by-one in the scan: h_t came out as (1 - z_t) * h_{t-1}, without z_t * "
             "h_tilde_t, so the logcumsumexp was read one entry too early (its T + 1 entries "
             "start with log h0: keep entries 1 .. T)"] = one_minus_z * h_prev
    check_array("h", got, want, shape_names="B, T, H", suspects=suspects,
                time_axis=1, hint="log h_t = a*_t + logcumsumexp([log h0, log b_1 - a*_1, ..., "
                "log b_t - a*_t]) with a*_t = log(1 - z_1) + ... + log(1 - z_t).", **TOL)


def linear_scan_problem(B: int, T: int, H: int, seed: int) -> dict:
    """Random ``a`` in (0, 1), ``b``, ``h0`` and upstream gradient ``dh``, all float64."""
    rng = np.random.default_rng(seed)
    return {"a": rng.uniform(0.05, 0.95, size=(B, T, H)), "b": rng.normal(size=(B, T, H)),
            "h0": rng.normal(size=(B, H)), "dh": rng.normal(size=(B, T, H))}


def tf_linear_scan_gradients(a, b, h0, dh) -> dict[str, np.ndarray]:
    """States of h_t = a_t * h_{t-1} + b_t and tf.GradientTape's gradients of sum(h * dh)."""
    import tensorflow as tf

    a_, b_, h0_ = (tf.Variable(np.asarray(v, dtype=np.float64)) for v in (a, b, h0))
    with tf.GradientTape() as tape:
        h, states = h0_, []
        for t in range(np.shape(a)[1]):
            h = a_[:, t] * h + b_[:, t]
            states.append(h)
        h_all = tf.stack(states, axis=1)
        loss = tf.reduce_sum(h_all * dh)
    da, db, dh0 = tape.gradient(loss, [a_, b_, h0_])
    return {"h": h_all.numpy(), "da": da.numpy(), "db": db.numpy(), "dh0": dh0.numpy()}


def check_linear_scan_backward(linear_scan_backward, B: int, T: int, H: int, seed: int) -> None:
    """``linear_scan_backward(dh, a, h0, h)`` returns tf.GradientTape's (da, db, dh0)."""
    p = linear_scan_problem(B, T, H, seed)
    ref = tf_linear_scan_gradients(p["a"], p["b"], p["h0"], p["dh"])
    result = call_student(linear_scan_backward, p["dh"], p["a"], p["h0"], ref["h"])
    if not isinstance(result, (tuple, list)) or len(result) != 3:
        raise AssertionError("`linear_scan_backward` should return the tuple (da, db, dh0).")
    h_prev = np.concatenate([p["h0"][:, None], ref["h"][:, :-1]], axis=1)
    hints = {
        "da": "da_t = g_t * h_{t-1}, the state *before* step t (h0 at t = 0), where g_t is "
              "the whole gradient reaching h_t",
        "db": "db_t = g_t = dh_t + a_{t+1} * g_{t+1}: the backward pass is the same linear "
              "recurrence run from t = T-1 down to 0",
        "dh0": "dh0 = a_0 * g_0",
    }
    wrong_da = ref["da"] / np.where(h_prev == 0, 1, h_prev) * ref["h"]
    for name, got, want in zip(("da", "db", "dh0"), result, (ref["da"], ref["db"], ref["dh0"])):
        suspects = {}
        if name == "da":
            suspects["da_t taken from h_t instead of h_{t-1} (an off-by-one in time)"] = wrong_da
        check_array(name, got, want, suspects=suspects, time_axis=1 if want.ndim == 3 else None,
                    hint=hints[name] + ".", **TOL)
