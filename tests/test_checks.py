"""The grade cells' checks (``rnncourse.checks``), run in this process without nbgrader.

* every grade cell is short and self-contained: a ``Check that`` docstring, one import,
  and no name that another grade cell binds;
* the instructor's solution passes every grade cell, hidden tests included;
* each wrong answer of ``tests/submissions.py`` fails the grade cells it must lose, with
  its own message (the fragment ``MESSAGES`` names);
* the gradient references (``keras_rnn_gradients``) agree with finite differences, and
  ``check_gradients`` fails on a wrong gradient and names it;
* an error raised inside a student's function still gets the check's hint.
"""

from __future__ import annotations

import ast
import builtins

import numpy as np
import pytest
from submissions import EXPECTED, MESSAGES, answers

from rnncourse import course
from rnncourse.grading import (
    FLOAT64_TOL,
    call_student,
    check_array,
    check_gradients,
    keras_rnn,
    keras_rnn_gradients,
    random_rnn_problem,
)

ASSIGNMENTS = sorted(EXPECTED)


def _notebook(assignment: str) -> dict:
    return course.read_notebook(course.REPO / "solutions" / assignment / f"{assignment}.ipynb")


def _meta(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


def _text(cell) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def grade_cells(assignment: str) -> dict[str, str]:
    """``grade_id`` → source of every code grade cell, hidden tests included."""
    return {_meta(c)["grade_id"]: _text(c) for c in _notebook(assignment)["cells"]
            if c["cell_type"] == "code" and _meta(c).get("grade")}


def student_namespace(assignment: str, edits=()) -> dict:
    """Run the notebook's setup and answer cells (answers edited as in submissions.py)."""
    notebook = _notebook(assignment)
    code = answers(notebook)
    for grade_id, old, new in edits:
        assert old in code[grade_id], f"edit for {grade_id} does not apply"
        code[grade_id] = code[grade_id].replace(old, new, 1)
    namespace = {"__name__": "__main__"}
    for cell in notebook["cells"]:
        if cell["cell_type"] != "code" or _meta(cell).get("grade"):
            continue
        source = code.get(_meta(cell).get("grade_id"), _text(cell))
        exec(compile(source, f"<{assignment}: {_meta(cell).get('grade_id')}>", "exec"), namespace)  # noqa: S102
    return namespace


def run_grade_cell(assignment: str, grade_id: str, namespace: dict) -> None:
    exec(compile(grade_cells(assignment)[grade_id], f"<{grade_id}>", "exec"), dict(namespace))  # noqa: S102


# --- the cells themselves --------------------------------------------------------------------

def _bound_names(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
    return names


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_grade_cells_are_short_and_self_contained(assignment):
    notebook = _notebook(assignment)
    student = set()  # what the setup and answer cells bind: the student's functions, np, keras
    for cell in notebook["cells"]:
        if cell["cell_type"] == "code" and not _meta(cell).get("grade"):
            student |= _bound_names(ast.parse(_text(cell)))
    for grade_id, source in grade_cells(assignment).items():
        tree = ast.parse(source)
        assert len(source.splitlines()) <= 15, f"{grade_id} has {len(source.splitlines())} lines"
        assert ast.get_docstring(tree, clean=False).startswith("Check"), grade_id
        imports = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
        assert len(imports) == 1 and imports[0].module.startswith("rnncourse.checks."), grade_id
        assert not [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef))], (
            f"{grade_id} defines a function or class: it belongs in rnncourse.checks")
        own = _bound_names(tree)
        used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
        foreign = used - own - student - set(vars(builtins))
        assert not foreign, f"{grade_id} uses names bound by another grade cell: {foreign}"
        assert "### BEGIN HIDDEN TESTS" in source, f"{grade_id} has no hidden tests"


# --- the solution and the known mistakes ----------------------------------------------------

# keras.ops.convert_to_numpy on a Keras variable warns (NumPy 2 copy keyword) inside Keras;
# the graders see no such warning as an error, so neither do these tests
keras_warnings = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


@keras_warnings
@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_the_solution_passes_every_grade_cell(assignment, capsys):
    namespace = student_namespace(assignment)
    for grade_id in grade_cells(assignment):
        run_grade_cell(assignment, grade_id, namespace)
    assert "Error" not in capsys.readouterr().err


def mistakes():
    return [(a, s) for a in ASSIGNMENTS for s, (edits, lost) in EXPECTED[a].items() if lost]


@keras_warnings
@pytest.mark.parametrize("assignment, scenario", mistakes(), ids=[f"{a}: {s}" for a, s in mistakes()])
def test_each_mistake_fails_its_grade_cells_with_its_own_message(assignment, scenario):
    edits, lost = EXPECTED[assignment][scenario]
    namespace = student_namespace(assignment, edits)
    messages = []
    for grade_id in sorted(lost):
        with pytest.raises(AssertionError) as failure:
            run_grade_cell(assignment, grade_id, namespace)
        messages.append(str(failure.value))
    fragment = MESSAGES.get(assignment, {}).get(scenario)
    if fragment:
        assert any(fragment in m for m in messages), f"{scenario}: {fragment!r} not in {messages}"


# --- the gradient checks --------------------------------------------------------------------

def _loss(kind, x, weights, states, dh, dc_T=None, **kwargs) -> float:
    outputs, *final = keras_rnn(kind, x, weights, states, **kwargs)
    loss = float(np.sum(outputs * dh))
    if dc_T is not None:
        loss += float(np.sum(final[1] * dc_T))
    return loss


@pytest.mark.parametrize("kind, gates, bias_shape, kwargs", [
    ("SimpleRNN", 1, None, {}),
    ("LSTM", 4, None, {}),
    ("GRU", 3, (2, 6), {}),
    ("GRU", 3, None, {"reset_after": False}),
])
def test_keras_rnn_gradients_agree_with_finite_differences(kind, gates, bias_shape, kwargs):
    """Directional derivatives of the loss (central differences) against the tape's gradients."""
    B, T, D, H = 2, 3, 2, 2
    p = random_rnn_problem(B=B, T=T, D=D, H=H, gates=gates, seed=7, bias_shape=bias_shape)
    rng = np.random.default_rng(8)
    dh = rng.normal(size=(B, T, H))
    states = [p["h0"]] + ([rng.normal(size=(B, H))] if kind == "LSTM" else [])
    dc_T = rng.normal(size=(B, H)) if kind == "LSTM" else None
    grads = keras_rnn_gradients(kind, p["x"], [p["K"], p["U"], p["b"]], states, dh,
                                d_final_state=[None, dc_T] if kind == "LSTM" else None, **kwargs)
    inputs = {"dx": p["x"], "dK": p["K"], "dU": p["U"], "db": p["b"], "dh0": states[0]}
    if kind == "LSTM":
        inputs["dc0"] = states[1]
    assert set(grads) == set(inputs)
    eps = 1e-6
    for name, value in inputs.items():
        direction = rng.normal(size=value.shape)

        def loss_at(sign, name=name, value=value, direction=direction):
            moved = {n: (v + sign * eps * direction if n == name else v) for n, v in inputs.items()}
            state = [moved["dh0"]] + ([moved["dc0"]] if kind == "LSTM" else [])
            return _loss(kind, moved["dx"], [moved["dK"], moved["dU"], moved["db"]], state, dh,
                         dc_T, **kwargs)

        numeric = (loss_at(+1) - loss_at(-1)) / (2 * eps)
        assert np.sum(grads[name] * direction) == pytest.approx(numeric, rel=1e-6, abs=1e-7), name


def _gradients(seed=0):
    rng = np.random.default_rng(seed)
    return {"dx": rng.normal(size=(2, 5, 3)), "dK": rng.normal(size=(3, 4)), "db": rng.normal(size=4)}


def test_check_gradients_passes_the_right_gradients():
    want = _gradients()
    check_gradients({k: v.copy() for k, v in want.items()}, want, **FLOAT64_TOL)


def test_check_gradients_names_the_wrong_gradient_and_the_right_ones():
    want = _gradients()
    got = {k: v.copy() for k, v in want.items()}
    got["dK"][1, 2] += 1e-4  # a small slip, far above the float64 tolerance
    with pytest.raises(AssertionError) as failure:
        check_gradients(got, want, context="my_backward", **FLOAT64_TOL)
    message = str(failure.value)
    assert message.startswith("my_backward: `dK` has the right shape but wrong values")
    assert "(dx, db are right.)" in message


def test_check_gradients_gives_the_hint_the_pattern_of_wrong_names():
    want = _gradients()
    got = {"dx": want["dx"], "dK": want["dK"], "db": 2 * want["db"]}
    seen = []

    def hint(wrong, first_bad_step):
        seen.append((wrong, dict(first_bad_step)))
        return "look at db"

    with pytest.raises(AssertionError, match="Hint: look at db"):
        check_gradients(got, want, hint=hint, **FLOAT64_TOL)
    assert seen == [({"db"}, {"db": None})]


def test_check_gradients_names_a_suspected_mistake():
    want = _gradients()
    doubled = {k: 2 * v for k, v in want.items()}
    with pytest.raises(AssertionError, match="it looks like every gradient doubled"):
        check_gradients(doubled, want, suspects={"every gradient doubled": doubled}, **FLOAT64_TOL)
    calls = []

    def suspects():
        calls.append(1)
        return {"every gradient doubled": doubled}

    check_gradients(want, want, suspects=suspects, **FLOAT64_TOL)  # right: never computed
    assert calls == []
    with pytest.raises(AssertionError, match="it looks like every gradient doubled"):
        check_gradients(doubled, want, suspects=suspects, **FLOAT64_TOL)
    assert calls == [1]


def test_check_gradients_reports_a_missing_or_misshapen_gradient():
    want = _gradients()
    with pytest.raises(AssertionError, match="`dK` is None"):
        check_gradients({"dx": want["dx"], "db": want["db"]}, want, **FLOAT64_TOL)
    with pytest.raises(AssertionError, match=r"`dK` has shape \(4, 3\)"):
        check_gradients({**want, "dK": want["dK"].T}, want, **FLOAT64_TOL)


def test_backward_messages_count_time_steps_back_from_the_last():
    want = _gradients()
    got = {k: v.copy() for k, v in want.items()}
    got["dx"][:, :3] += 1.0  # right at t = 4 and 3, wrong from t = 2 down to 0
    with pytest.raises(AssertionError, match=r"Walking back from the last step \(t=4\), the values "
                                              r"first go wrong at time step t=2\."):
        check_gradients(got, want, backward=True, **FLOAT64_TOL)
    got["dx"][:, 4] += 1.0
    with pytest.raises(AssertionError, match=r"t=4 \(already at the last step\)"):
        check_gradients(got, want, backward=True, **FLOAT64_TOL)
    with pytest.raises(AssertionError, match="Values first differ at time step t=0"):
        check_array("h", got["dx"], want["dx"], time_axis=1, **FLOAT64_TOL)


def test_an_error_inside_the_student_function_still_gets_the_hint():
    def broken(b):
        return b[0][1]  # IndexError: invalid index to scalar variable

    with pytest.raises(IndexError):
        call_student(broken, np.zeros(3))
    with pytest.raises(AssertionError, match=r"`broken` raised IndexError .* Hint: pass it on") as failure:
        call_student(broken, np.zeros(3), hint="pass it on")
    assert isinstance(failure.value.__cause__, IndexError)

    def hungry():
        raise MemoryError("too big")

    def not_written_yet():
        raise NotImplementedError()  # what the student's release holds

    with pytest.raises(MemoryError):
        call_student(hungry, hint="unused")
    with pytest.raises(NotImplementedError):
        call_student(not_written_yet, hint="unused")


def test_a_gru_forward_that_drops_reset_after_and_crashes_gets_the_hint():
    """The careful student's case: their gru_step indexes b[0][:H], which fails for b (3H,)."""
    from rnncourse.checks.gru import check_gru_forward

    namespace = student_namespace("gru")
    sigmoid = namespace["sigmoid"]

    def gru_step(x_t, h_prev, K, U, b, reset_after=True):
        H = h_prev.shape[1]
        if reset_after:
            xz, hz = x_t @ K + b[0][:3 * H], h_prev @ U + b[1][:3 * H]
            z, r = sigmoid(xz[:, :H] + hz[:, :H]), sigmoid(xz[:, H:2 * H] + hz[:, H:2 * H])
            return z * h_prev + (1 - z) * np.tanh(xz[:, 2 * H:] + r * hz[:, 2 * H:])
        return namespace["gru_step"](x_t, h_prev, K, U, b, reset_after=False)

    def gru_forward(x, K, U, b, h0=None, reset_after=True):
        h_t = np.zeros((x.shape[0], U.shape[0])) if h0 is None else h0
        states = []
        for t in range(x.shape[1]):
            h_t = gru_step(x[:, t], h_t, K, U, b)  # reset_after forgotten
            states.append(h_t)
        return np.stack(states, axis=1)

    check_gru_forward(gru_forward, B=2, T=5, D=3, H=4, seed=3, reset_after=True)
    with pytest.raises(AssertionError, match="pass reset_after on to gru_step") as failure:
        check_gru_forward(gru_forward, B=2, T=5, D=3, H=4, seed=4, reset_after=False)
    assert isinstance(failure.value.__cause__, IndexError)


def test_the_lstm_cell_text_shows_a_callable_initializer_that_works():
    """The example the lstm_cell assignment gives for add_weight's callable initializer."""
    import keras
    import tensorflow as tf

    def halves(shape, dtype=None):
        return tf.fill(shape, tf.constant(0.5, dtype=dtype))

    class Holder(keras.layers.Layer):
        def build(self, input_shape):
            self.w = self.add_weight(shape=(3,), initializer=halves, name="w")

        def call(self, inputs):
            return inputs * self.w

    for dtype in ("float32", "float64"):
        layer = Holder(dtype=dtype)
        layer.build((None, 3))
        assert layer.w.numpy().tolist() == [0.5, 0.5, 0.5]
        assert layer.w.dtype == dtype
    text = "".join(_text(c) for c in _notebook("lstm_cell")["cells"] if c["cell_type"] == "markdown")
    assert "return tf.fill(shape, tf.constant(0.5, dtype=dtype))" in text
