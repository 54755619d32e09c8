"""Checks used by the assignments' grade cells.

Every check raises ``AssertionError`` with a message in the student's terms: which
array is wrong, how (shape, dtype, NaN, values), and, where the wrong value matches
a known mistake, which mistake it looks like. References come from Keras layers
(see :func:`keras_rnn`), never from a NumPy copy of the solution.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

#: Tolerances for comparing with a float32 Keras layer (shared/KERAS_RNN.md, measured).
FLOAT32_TOL = {"atol": 1e-5, "rtol": 1e-5}
#: Tolerances for comparing with a float64 Keras layer: tight enough to catch subtle slips.
FLOAT64_TOL = {"atol": 1e-8, "rtol": 1e-8}

_FORBIDDEN_PREFIXES = ("tensorflow", "keras", "tf_keras", "torch", "jax")


def _describe_shape(shape: tuple[int, ...], names: str | None) -> str:
    return f"{tuple(shape)}" + (f" ({names})" if names else "")


def check_array(
    name: str,
    got: Any,
    want: np.ndarray,
    *,
    atol: float,
    rtol: float,
    shape_names: str | None = None,
    suspects: Mapping[str, np.ndarray] | Callable[[], Mapping[str, np.ndarray]] | None = None,
    time_axis: int | None = None,
    backward: bool = False,
    hint: str = "",
) -> None:
    """Assert that ``got`` equals ``want`` within tolerance, explaining any difference.

    ``suspects`` maps a description of a known mistake to the array that mistake
    produces; when ``got`` matches one of them the message names the mistake. It may be a
    function that returns that mapping: it is then called only for a wrong answer (the
    mistakes' arrays can cost a Keras run each, which a right answer never needs).
    ``time_axis``, when given, lets the message say at which time step the values
    first go wrong: counting forward from t=0, or, with ``backward`` (a gradient
    computed by walking back through time), counting back from the last step.
    """
    want = np.asarray(want)
    if got is None:
        raise AssertionError(f"`{name}` is None: did the function forget to `return` it?")
    if not isinstance(got, (np.ndarray, np.generic, float, int, list, tuple)):
        raise AssertionError(  # noqa: TRY004 (a failed check, reported to the student)
            f"`{name}` should be a NumPy array but is a {type(got).__module__}."
            f"{type(got).__qualname__}"
        )
    try:
        got = np.asarray(got, dtype=float)
    except (TypeError, ValueError) as error:
        raise AssertionError(f"`{name}` cannot be read as an array of numbers: {error}") from None
    if got.shape != want.shape:
        raise AssertionError(
            f"`{name}` has shape {tuple(got.shape)}; expected "
            f"{_describe_shape(want.shape, shape_names)}."
        )
    if not np.all(np.isfinite(got)):
        raise AssertionError(f"`{name}` contains NaN or infinite values.")
    if np.allclose(got, want, atol=atol, rtol=rtol):
        return
    for mistake, wrong in _suspected(suspects).items():
        wrong = np.asarray(wrong)
        if wrong.shape == got.shape and np.allclose(got, wrong, atol=atol, rtol=rtol):
            raise AssertionError(f"`{name}` is wrong: it looks like {mistake}.")
    error = np.abs(got - want)
    where = ""
    if time_axis is not None and got.ndim > time_axis:
        bad = np.moveaxis(error > atol + rtol * np.abs(want), time_axis, 0)
        where = _where_wrong(bad.reshape(bad.shape[0], -1).any(axis=1), backward)
    raise AssertionError(
        f"`{name}` has the right shape but wrong values (largest difference "
        f"{error.max():.3g}).{where}" + (f" {hint}" if hint else "")
    )


def _suspected(suspects) -> Mapping:
    """The known mistakes' arrays: ``suspects`` itself, or what it returns when a function."""
    return (suspects() if callable(suspects) else suspects) or {}


def _where_wrong(bad_steps: np.ndarray, backward: bool) -> str:
    """Where along time the values go wrong: the first wrong step, or, for a backward pass,
    the first one reached walking back from the last step."""
    if not backward:
        return f" Values first differ at time step t={int(np.argmax(bad_steps))}."
    last = len(bad_steps) - 1
    start = last - int(np.argmax(bad_steps[::-1]))
    return (f" Walking back from the last step (t={last}), the values first go wrong at time "
            f"step t={start}" + (" (already at the last step)." if start == last else "."))


class _CallWatcher:
    """Record calls into forbidden modules while a function runs (``sys.setprofile``)."""

    def __init__(self, prefixes: tuple[str, ...] = _FORBIDDEN_PREFIXES) -> None:
        self.prefixes = prefixes
        self.seen: list[str] = []

    def __call__(self, frame, event, arg):
        # A profile hook must never raise: an exception here would abort whatever
        # the student's code was doing (even half-way through an import).
        try:
            if event == "call":
                module = frame.f_globals.get("__name__")
            elif event == "c_call":
                module = getattr(arg, "__module__", None)
            else:
                return
            if isinstance(module, str) and module.startswith(self.prefixes) and len(self.seen) < 5:
                self.seen.append(module)
        except Exception:  # noqa: BLE001, S110 (never raise from a profile hook)
            pass


def _snapshot(value: Any) -> Any:
    """A copy of the arrays in ``value`` (an array, or a list/tuple of arrays), else None."""
    if isinstance(value, np.ndarray):
        return value.copy()
    if isinstance(value, (list, tuple)):
        return type(value)(_snapshot(v) for v in value)
    return None


def _unchanged(value: Any, copy: Any) -> bool:
    if copy is None:
        return True
    if isinstance(copy, np.ndarray):
        return isinstance(value, np.ndarray) and np.array_equal(value, copy, equal_nan=True)
    return len(value) == len(copy) and all(_unchanged(v, c) for v, c in zip(value, copy))


def call_student(
    function: Callable[..., Any],
    *args: Any,
    numpy_only: bool = True,
    forbidden: tuple[str, ...] = (),
    hint: str = "",
    **kwargs: Any,
) -> Any:
    """Call a student's function and check how it behaved, not just what it returned.

    * the arrays passed in are not modified (each argument is compared with a copy);
    * with ``numpy_only``, no TensorFlow/Keras (or other framework) code runs inside it;
    * no code from a module whose name starts with one of ``forbidden`` runs inside it
      (e.g. ``("keras.src.layers.rnn.lstm",)``: a "from scratch" cell may not borrow
      Keras's own LSTM);
    * with a ``hint``, an error raised inside the function (an ``IndexError`` in the
      student's own code) becomes an ``AssertionError`` that names it and gives the
      hint; the original error, with the student's lines, stays in the traceback.
      (``MemoryError``, and the release's ``NotImplementedError`` of a function not
      written yet, are passed on as they are.)
    """
    name = getattr(function, "__name__", "the function")
    before = [_snapshot(a) for a in args]
    before_kw = {k: _snapshot(v) for k, v in kwargs.items()}
    prefixes = (_FORBIDDEN_PREFIXES if numpy_only else ()) + tuple(forbidden)
    watcher = _CallWatcher(prefixes)
    previous = sys.getprofile()
    if prefixes:
        sys.setprofile(watcher)
    try:
        result = function(*args, **kwargs)
    except Exception as error:
        if not hint or isinstance(error, (MemoryError, NotImplementedError)):
            raise
        raise AssertionError(
            f"`{name}` raised {type(error).__name__} ({error}) inside your code. Hint: {hint}"
        ) from error
    finally:
        if prefixes:
            sys.setprofile(previous)
    if watcher.seen:
        if numpy_only:
            raise AssertionError(
                f"`{name}` calls {watcher.seen[0].split('.')[0]} ({watcher.seen[0]}): this "
                "exercise asks for NumPy only, written from scratch."
            )
        raise AssertionError(
            f"`{name}` uses {watcher.seen[0]}: this exercise asks you to write it from "
            "scratch, not to call the library's own implementation."
        )
    for position, (arg, copy) in enumerate(zip(args, before)):
        if not _unchanged(arg, copy):
            raise AssertionError(
                f"`{name}` modified its argument number {position + 1} in place; "
                "work on new arrays instead (e.g. `a = a + b`, not `a += b`)."
            )
    for key, copy in before_kw.items():
        if not _unchanged(kwargs[key], copy):
            raise AssertionError(f"`{name}` modified its argument `{key}` in place.")
    return result


def random_rnn_problem(
    B: int, T: int, D: int, H: int, *, gates: int = 1, seed: int = 0, scale: float = 0.5,
    bias_shape: tuple[int, ...] | None = None, dtype=np.float64,
) -> dict[str, np.ndarray]:
    """Random inputs and Keras-layout weights for a recurrent layer with ``gates`` blocks.

    Returns ``x`` (B, T, D), ``K`` (D, gates·H), ``U`` (H, gates·H), ``b`` and ``h0`` (B, H).
    The bias is random (not Keras's zeros) so a forgotten bias shows.
    """
    rng = np.random.default_rng(seed)
    k = gates * H
    return {
        "x": rng.normal(size=(B, T, D)).astype(dtype),
        "K": (scale * rng.normal(size=(D, k))).astype(dtype),
        "U": (scale * rng.normal(size=(H, k))).astype(dtype),
        "b": (scale * rng.normal(size=bias_shape or (k,))).astype(dtype),
        "h0": (0.5 * rng.normal(size=(B, H))).astype(dtype),
    }


def keras_rnn(
    kind: str,
    x: np.ndarray,
    weights: list[np.ndarray],
    initial_state: list[np.ndarray] | None = None,
    *,
    dtype: str = "float64",
    **layer_kwargs: Any,
) -> list[np.ndarray]:
    """Run ``keras.layers.<kind>`` with the given weights; return ``[outputs, *final_states]``.

    ``outputs`` is the whole sequence (B, T, H) (``return_sequences=True``).
    """
    import keras

    layer_class = getattr(keras.layers, kind)
    H = np.asarray(weights[1]).shape[0]
    layer = layer_class(
        H, return_sequences=True, return_state=True, dtype=dtype, **layer_kwargs
    )
    layer.build((None, None, np.asarray(x).shape[-1]))
    layer.set_weights([np.asarray(w, dtype=dtype) for w in weights])
    inputs = np.asarray(x, dtype=dtype)
    if initial_state is None:
        results = layer(inputs)
    else:
        results = layer(inputs, initial_state=[np.asarray(s, dtype=dtype) for s in initial_state])
    return [np.asarray(r) for r in results]


def check_gradients(
    got: Mapping[str, Any],
    want: Mapping[str, np.ndarray],
    *,
    atol: float,
    rtol: float,
    context: str = "",
    shape_names: Mapping[str, str] | None = None,
    hint: Callable[[set[str], Mapping[str, int | None]], str] | None = None,
    suspects: (Mapping[str, Mapping[str, np.ndarray]]
               | Callable[[], Mapping[str, Mapping[str, np.ndarray]]] | None) = None,
    backward: bool = False,
) -> None:
    """Check several named arrays at once and say which are right and which are wrong.

    ``suspects`` maps a known mistake to the arrays (by name) it would produce; when
    every returned array matches one of them, the message names that mistake (a function
    returning that mapping is called only when something is wrong).

    ``hint(wrong, first_bad_step)`` may add advice from the pattern of wrong names
    (e.g. ``{"dU"}`` alone); ``first_bad_step`` gives, for each wrong gradient with a
    time axis (axis 1, like ``dx``), the first time step at which it is wrong, and
    for the others ``None``. With ``backward`` (gradients of a backward pass through
    time) the messages count the time steps back from the last one, where the
    backward pass starts.
    """
    failures: dict[str, str] = {}
    first_bad: dict[str, int | None] = {}
    for name, expected in want.items():
        expected = np.asarray(expected)
        try:
            check_array(name, got.get(name), expected, atol=atol, rtol=rtol,
                        shape_names=(shape_names or {}).get(name),
                        time_axis=1 if expected.ndim == 3 else None, backward=backward)
        except AssertionError as error:
            failures[name] = str(error)
            step = None
            if expected.ndim == 3 and np.shape(got.get(name)) == expected.shape:
                bad = np.abs(np.asarray(got[name], float) - expected) > atol + rtol * np.abs(expected)
                step = int(np.argmax(bad.any(axis=(0, 2))))
            first_bad[name] = step
    if not failures:
        return
    for mistake, arrays in _suspected(suspects).items():
        if all(matches(got.get(name), arrays[name], atol, rtol) for name in want):
            raise AssertionError((f"{context}: " if context else "") +
                                 f"{', '.join(want)} are wrong: it looks like {mistake}.")
    right = [name for name in want if name not in failures]
    message = (f"{context}: " if context else "") + " ".join(failures.values())
    if right:
        message += f" ({', '.join(right)} {'is' if len(right) == 1 else 'are'} right.)"
    advice = hint(set(failures), first_bad) if hint else ""
    raise AssertionError(message + (f" Hint: {advice}" if advice else ""))


#: The same check, named for forward passes that return several arrays (h_t, c_t).
check_outputs = check_gradients


def matches(got: Any, want: np.ndarray, atol: float, rtol: float) -> bool:
    try:
        got = np.asarray(got, dtype=float)
    except (TypeError, ValueError):
        return False
    want = np.asarray(want)
    return got.shape == want.shape and bool(np.allclose(got, want, atol=atol, rtol=rtol))


def keras_rnn_gradients(
    kind: str,
    x: np.ndarray,
    weights: list[np.ndarray],
    initial_state: list[np.ndarray],
    dh: np.ndarray,
    *,
    d_final_state: list[np.ndarray | None] | None = None,
    dtype: str = "float64",
    **layer_kwargs: Any,
) -> dict[str, np.ndarray]:
    """Gradients of ``sum(outputs * dh) + sum_k sum(final_state_k * d_final_state[k])``.

    Computed by ``tf.GradientTape`` on ``keras.layers.<kind>`` with the given weights.
    ``outputs`` is the whole sequence of hidden states (B, T, H), so ``dh`` is the
    upstream gradient on every hidden state; ``d_final_state`` optionally adds upstream
    gradients on the final states (``[dh_T, dc_T]`` for an LSTM; ``None`` entries are
    skipped). Returns ``dx``, ``dK``, ``dU``, ``db`` and, per initial state, ``dh0``
    (and ``dc0`` for an LSTM).
    """
    import keras
    import tensorflow as tf

    layer = getattr(keras.layers, kind)(np.asarray(weights[1]).shape[0], return_sequences=True,
                                        return_state=True, dtype=dtype, **layer_kwargs)
    layer.build((None, None, np.asarray(x).shape[-1]))
    layer.set_weights([np.asarray(w, dtype=dtype) for w in weights])
    x_var = tf.constant(np.asarray(x, dtype=dtype))
    states = [tf.constant(np.asarray(s, dtype=dtype)) for s in initial_state]
    with tf.GradientTape() as tape:
        tape.watch([x_var, *states])
        outputs, *final_states = layer(x_var, initial_state=states)
        loss = tf.reduce_sum(outputs * tf.constant(np.asarray(dh, dtype=dtype)))
        for state, upstream in zip(final_states, d_final_state or []):
            if upstream is not None:
                loss += tf.reduce_sum(state * tf.constant(np.asarray(upstream, dtype=dtype)))
    kernel, recurrent, bias = layer.trainable_weights
    grads = tape.gradient(loss, [x_var, kernel, recurrent, bias, *states])
    names = ["dx", "dK", "dU", "db"] + ["dh0", "dc0"][: len(states)]
    return {name: np.asarray(g) for name, g in zip(names, grads)}
