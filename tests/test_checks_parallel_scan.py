"""Fast tests of the parallel_scan assignment's checks: right answers pass, known mistakes are named."""

from __future__ import annotations

import numpy as np
import pytest

from rnncourse.checks import parallel_scan as ps


def sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


def g(v):
    return np.where(v >= 0, v + 0.5, sigmoid(np.minimum(v, 0.0)))


def loop(x, K, b, h0, keras_convention=False):
    """An independent NumPy minGRU loop (the test's own, not the harness's)."""
    H = h0.shape[1]
    h, out = h0, []
    for t in range(x.shape[1]):
        k = x[:, t] @ K + b
        z, h_tilde = sigmoid(k[:, :H]), g(k[:, H:])
        h = z * h + (1 - z) * h_tilde if keras_convention else (1 - z) * h + z * h_tilde
        out.append(h)
    return np.stack(out, axis=1)


def parallel(x, K, b, h0, shift=0):
    """minGRU by Heinsen's formula with NumPy's own running log-add-exp."""
    H = h0.shape[1]
    k = x @ K + b
    log_a = -np.logaddexp(0, k[..., :H])
    log_b = -np.logaddexp(0, -k[..., :H]) + np.log(g(k[..., H:]))
    a_star = np.cumsum(log_a, axis=1)
    values = np.concatenate([np.log(h0)[:, None], log_b - a_star], axis=1)
    lcse = np.logaddexp.accumulate(values, axis=1)
    return np.exp(a_star + (lcse[:, 1:] if shift == 0 else lcse[:, :-1]))


def test_tensorflow_reference_one_step_by_hand():
    p = ps.min_gru_problem(B=2, T=1, D=3, H=2, seed=0)
    k = p["x"][:, 0] @ p["K"] + p["b"]
    z = 1 / (1 + np.exp(-k[:, :2]))
    v = k[:, 2:]
    h_tilde = np.where(v >= 0, v + 0.5, 1 / (1 + np.exp(-v)))
    want = (1 - z) * p["h0"] + z * h_tilde
    np.testing.assert_allclose(ps.tf_min_gru(p["x"], p["K"], p["b"], p["h0"])[:, 0], want, rtol=1e-12)


def test_problem_has_positive_initial_state_and_strong_gates_when_asked():
    p = ps.min_gru_problem(B=3, T=4, D=2, H=5, seed=1, gate_bias=4.0)
    assert p["h0"].min() > 0
    assert p["b"][:5].min() > 2.0 and p["K"].shape == (2, 10)


def test_sequential_check_accepts_a_right_loop_and_names_known_mistakes():
    ps.check_min_gru_sequential(loop, B=2, T=6, D=3, H=4, seed=1)
    ps.check_min_gru_sequential(loop, B=1, T=1, D=2, H=3, seed=2)
    with pytest.raises(AssertionError, match="Keras's GRU convention"):
        ps.check_min_gru_sequential(lambda *a: loop(*a, keras_convention=True), B=2, T=6, D=3, H=4, seed=1)


def test_sequential_check_rejects_input_mutation():
    def mutating(x, K, b, h0):
        out = loop(x, K, b, h0)
        h0 *= 2
        return out

    with pytest.raises(AssertionError, match="in place"):
        ps.check_min_gru_sequential(mutating, B=2, T=3, D=2, H=2, seed=3)


def naive(v):
    out = np.asarray(v, float)
    k = 1
    while k < out.shape[1]:
        shifted = np.concatenate([np.full_like(out[:, :k], -np.inf), out[:, :-k]], axis=1)
        out = np.log(np.exp(out) + np.exp(shifted))
        k *= 2
    return out


def test_logcumsumexp_check_accepts_numpy_and_names_mistakes():
    ps.check_logcumsumexp(lambda v: np.logaddexp.accumulate(v, axis=1), B=2, T=5, H=3, seed=1, offset=800.0)
    ps.check_logcumsumexp(lambda v: np.logaddexp.accumulate(v, axis=1), B=1, T=1, H=2, seed=2)
    with np.errstate(all="ignore"), pytest.raises(AssertionError, match="stabilising max"):
        ps.check_logcumsumexp(naive, B=2, T=6, H=2, seed=3, offset=800.0)
    ps.check_logcumsumexp(naive, B=2, T=6, H=2, seed=3)  # harmless at small values
    with pytest.raises(AssertionError, match="identity of log-add-exp is -inf"):
        ps.check_logcumsumexp(lambda v: ps.logcumsumexp_doubling(v, pad=0.0), B=2, T=8, H=3, seed=4)
    with pytest.raises(AssertionError, match=r"ceil\(log2\(T\)\) = 3"):
        ps.check_logcumsumexp(lambda v: ps.logcumsumexp_doubling(v, steps=2), B=2, T=5, H=3, seed=5)


def test_doubling_helper_is_exact_and_its_floor_variant_only_wrong_off_powers_of_two():
    v = np.random.default_rng(0).normal(size=(2, 9, 3))
    np.testing.assert_allclose(ps.logcumsumexp_doubling(v), np.log(np.cumsum(np.exp(v), axis=1)), rtol=1e-12)
    w = v[:, :8]
    np.testing.assert_allclose(ps.logcumsumexp_doubling(w, steps=3), np.log(np.cumsum(np.exp(w), axis=1)))
    assert not np.allclose(ps.logcumsumexp_doubling(v, steps=3), np.log(np.cumsum(np.exp(v), axis=1)))


def test_parallel_check_accepts_heinsen_form_and_names_the_shift():
    ps.check_min_gru_parallel(parallel, B=2, T=6, D=3, H=4, seed=2)
    ps.check_min_gru_parallel(parallel, B=2, T=300, D=3, H=4, seed=33, gate_bias=4.0)
    with pytest.raises(AssertionError, match="read one entry too early"):
        ps.check_min_gru_parallel(lambda *a: parallel(*a, shift=1), B=2, T=6, D=3, H=4, seed=2)


def test_strong_gates_overflow_a_naive_exponential():
    p = ps.min_gru_problem(B=2, T=300, D=3, H=4, seed=33, gate_bias=4.0)
    k = p["x"] @ p["K"] + p["b"]
    a_star = np.cumsum(-np.logaddexp(0, k[..., :4]), axis=1)
    assert -a_star.min() > 710, "the long hidden case no longer reaches exp's overflow"


def backward(dh, a, h0, h, da_from_h=False):
    h_prev = np.concatenate([h0[:, None], h[:, :-1]], axis=1)
    da, db, g_t = np.zeros_like(dh), np.zeros_like(dh), np.zeros_like(h0)
    for t in reversed(range(dh.shape[1])):
        g_t = dh[:, t] + g_t
        db[:, t] = g_t
        da[:, t] = g_t * (h[:, t] if da_from_h else h_prev[:, t])
        g_t = a[:, t] * g_t
    return da, db, g_t


def test_tape_gradients_by_hand_for_two_steps():
    p = ps.linear_scan_problem(B=1, T=2, H=1, seed=0)
    a0, a1 = p["a"][0, :, 0]
    b0 = p["b"][0, 0, 0]
    h0, (d0, d1) = p["h0"][0, 0], p["dh"][0, :, 0]
    h1 = a0 * h0 + b0
    ref = ps.tf_linear_scan_gradients(p["a"], p["b"], p["h0"], p["dh"])
    # loss = d0 * h1 + d1 * (a1 * h1 + b1)
    assert ref["dh0"][0, 0] == pytest.approx((d0 + d1 * a1) * a0)
    assert ref["da"][0, 1, 0] == pytest.approx(d1 * h1)
    assert ref["db"][0, 0, 0] == pytest.approx(d0 + d1 * a1)


def test_backward_check_accepts_a_right_answer_and_names_the_off_by_one():
    ps.check_linear_scan_backward(backward, B=2, T=5, H=3, seed=3)
    ps.check_linear_scan_backward(backward, B=1, T=1, H=2, seed=4)
    with pytest.raises(AssertionError, match="da_t taken from h_t"):
        ps.check_linear_scan_backward(lambda *a: backward(*a, da_from_h=True), B=2, T=5, H=3, seed=3)
    with pytest.raises(AssertionError, match=r"tuple \(da, db, dh0\)"):
        ps.check_linear_scan_backward(lambda *a: backward(*a)[:2], B=2, T=5, H=3, seed=3)
