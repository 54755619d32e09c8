"""Fast unit tests of the helper package (run with `make test-fast`)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import rnncourse
from rnncourse.data import ADDING_BASELINE_MSE, adding_problem, first_symbol
from rnncourse.grader import DropTensorFlowLogs, HideTestTracebacks, strip_tensorflow_log_lines
from rnncourse.grading import FLOAT64_TOL, call_student, check_array, keras_rnn, random_rnn_problem


# --- data -----------------------------------------------------------------------------------
def test_adding_problem_marks_two_steps_one_per_half_and_sums_them():
    x, y = adding_problem(500, T=30, seed=3)
    assert x.shape == (500, 30, 2) and y.shape == (500, 1) and x.dtype == np.float32
    markers = x[..., 1]
    assert np.all(markers.sum(axis=1) == 2)
    assert np.all(markers[:, :15].sum(axis=1) == 1) and np.all(markers[:, 15:].sum(axis=1) == 1)
    np.testing.assert_allclose(y[:, 0], (x[..., 0] * markers).sum(axis=1), rtol=1e-6)
    # the documented baseline: predicting 1.0 gives an MSE near 1/6
    _big_x, big_y = adding_problem(20000, T=10, seed=4)
    assert abs(np.mean((big_y - 1.0) ** 2) - ADDING_BASELINE_MSE) < 0.01


def test_tasks_are_seeded():
    np.testing.assert_array_equal(adding_problem(5, 8, seed=1)[0], adding_problem(5, 8, seed=1)[0])
    assert not np.array_equal(adding_problem(5, 8, seed=1)[0], adding_problem(5, 8, seed=2)[0])
    np.testing.assert_array_equal(first_symbol(5, 8, seed=1)[0], first_symbol(5, 8, seed=1)[0])


def test_first_symbol_labels_the_first_step():
    x, y = first_symbol(300, lag=12, n_symbols=5, seed=0)
    assert x.shape == (300, 13, 5)
    np.testing.assert_array_equal(x.sum(axis=-1), 1.0)
    np.testing.assert_array_equal(x[:, 0].argmax(axis=-1), y)
    assert set(np.unique(y)) == set(range(5))


@pytest.mark.parametrize("call", [lambda: adding_problem(3, 1), lambda: first_symbol(3, -1),
                                  lambda: first_symbol(3, 2, n_symbols=1)])
def test_tasks_reject_bad_sizes_with_a_message(call):
    with pytest.raises(ValueError, match="need|must"):
        call()


def test_importing_the_package_quiets_tensorflow():
    """Importing rnncourse first keeps TensorFlow silent, even through a seeded model.fit.

    With op determinism on (seed_everything), fit() with validation data logs an E-level
    line (node_def_util.cc) on TF 2.21 that TF_CPP_MIN_LOG_LEVEL=2 lets through.
    """
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "3"
    script = (
        "import rnncourse, numpy as np, keras\n"
        "rnncourse.seed_everything(0)\n"
        "m = keras.Sequential([keras.Input((3, 2)), keras.layers.SimpleRNN(2), keras.layers.Dense(1)])\n"
        "m.compile('adam', 'mse')\n"
        "x = np.zeros((256, 3, 2)); y = np.zeros((256, 1))\n"
        "m.fit(x, y, validation_data=(x, y), epochs=1, batch_size=32, verbose=0)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "0"}, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", result.stderr


# --- grading checks -------------------------------------------------------------------------
def test_check_array_passes_equal_and_explains_each_kind_of_difference():
    want = np.arange(12.0).reshape(2, 3, 2)
    check_array("h", want + 1e-12, want, **FLOAT64_TOL)
    with pytest.raises(AssertionError, match=r"shape \(3, 2\); expected \(2, 3, 2\) \(B, T, H\)"):
        check_array("h", want[0], want, shape_names="B, T, H", **FLOAT64_TOL)
    with pytest.raises(AssertionError, match="forget to `return`"):
        check_array("h", None, want, **FLOAT64_TOL)
    with pytest.raises(AssertionError, match="NaN"):
        check_array("h", want * np.nan, want, **FLOAT64_TOL)
    wrong = want.copy()
    wrong[:, 2] += 1
    with pytest.raises(AssertionError, match="first differ at time step t=2"):
        check_array("h", wrong, want, time_axis=1, **FLOAT64_TOL)
    with pytest.raises(AssertionError, match="it looks like the bias was left out"):
        check_array("h", wrong, want, suspects={"the bias was left out": wrong}, **FLOAT64_TOL)
    with pytest.raises(AssertionError, match="should be a NumPy array"):
        check_array("h", "not an array", want, **FLOAT64_TOL)


def test_suspects_given_as_a_function_are_computed_for_a_wrong_answer_only():
    want = np.arange(6.0).reshape(2, 3)
    wrong = want + 1
    calls = []

    def suspects():
        calls.append(1)
        return {"every value one too large": wrong}

    check_array("h", want, want, suspects=suspects, **FLOAT64_TOL)
    assert calls == []
    with pytest.raises(AssertionError, match="it looks like every value one too large"):
        check_array("h", wrong, want, suspects=suspects, **FLOAT64_TOL)
    assert calls == [1]


def test_call_student_catches_mutation_and_framework_calls():
    def mutates(a):
        a += 1
        return a

    def uses_keras(a):
        import keras

        return keras.ops.convert_to_numpy(keras.ops.tanh(a))

    with pytest.raises(AssertionError, match="modified its argument number 1"):
        call_student(mutates, np.zeros(3))
    def mutates_a_list_element(grads):
        for g in grads:
            g *= 2
        return grads

    with pytest.raises(AssertionError, match="modified its argument number 2"):
        call_student(lambda a, grads: mutates_a_list_element(grads), np.zeros(2), [np.ones(2)])
    with pytest.raises(AssertionError, match="NumPy only"):
        call_student(uses_keras, np.zeros(3))
    assert call_student(uses_keras, np.zeros(3), numpy_only=False).shape == (3,)
    np.testing.assert_array_equal(call_student(np.tanh, np.zeros(2)), np.zeros(2))


def test_call_student_can_forbid_the_librarys_own_layer_only():
    import keras

    def borrowed_cell():
        cell = keras.layers.LSTMCell(2)
        cell.build((None, 3))
        return cell

    def own_dense():
        layer = keras.layers.Dense(2)
        layer.build((None, 3))
        return layer

    forbidden = ("keras.src.layers.rnn.lstm",)
    with pytest.raises(AssertionError, match="keras.src.layers.rnn.lstm.*from scratch"):
        call_student(borrowed_cell, numpy_only=False, forbidden=forbidden)
    assert call_student(own_dense, numpy_only=False, forbidden=forbidden).units == 2


def test_keras_rnn_reference_is_the_simple_rnn_equation():
    p = random_rnn_problem(B=3, T=6, D=2, H=4, seed=5)
    h, h_last = keras_rnn("SimpleRNN", p["x"], [p["K"], p["U"], p["b"]], [p["h0"]])
    state, states = p["h0"], []
    for t in range(6):  # written here from the equation in shared notation, not imported
        state = np.tanh(p["x"][:, t] @ p["K"] + state @ p["U"] + p["b"])
        states.append(state)
    np.testing.assert_allclose(h, np.stack(states, 1), atol=1e-12)
    np.testing.assert_allclose(h_last, states[-1], atol=1e-12)


# --- nbgrader hooks -------------------------------------------------------------------------
def test_tensorflow_log_lines_are_recognised_and_nothing_else():
    chatty = subprocess.run(
        [sys.executable, "-c", "import tensorflow as tf; tf.constant(1.0) + 1"],
        capture_output=True, text=True, check=False,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "0", "TF_ENABLE_ONEDNN_OPTS": "1"},
    ).stderr
    assert chatty.strip(), "TensorFlow printed nothing to strip: the test would prove nothing"
    assert strip_tensorflow_log_lines(chatty).strip() == ""
    other = "UserWarning: something real\nTraceback (most recent call last):\n"
    assert strip_tensorflow_log_lines(chatty + other) == other


def _cell(outputs, grade=True, count=7):
    from nbformat.v4 import new_code_cell, new_output

    cell = new_code_cell("check()", execution_count=count)
    cell.metadata["nbgrader"] = {"grade": grade, "grade_id": "t", "points": 1}
    cell.outputs = [new_output(**o) for o in outputs]
    return cell


def test_drop_tensorflow_logs_keeps_other_stderr():
    log = "I0000 00:00:1795580864.201153    2163 port.cc:153] oneDNN custom operations are on.\n"
    cell, _ = DropTensorFlowLogs().preprocess_cell(
        _cell([{"output_type": "stream", "name": "stderr", "text": log},
               {"output_type": "stream", "name": "stderr", "text": log + "real warning\n"},
               {"output_type": "stream", "name": "stdout", "text": "hello\n"}]), {}, 0)
    assert [(o.name, o.text) for o in cell.outputs] == [("stderr", "real warning\n"), ("stdout", "hello\n")]


def test_hide_test_tracebacks_keeps_student_frames_and_message():
    frames = ["\x1b[31m-----\x1b[39m", "AssertionError    Traceback (most recent call last)",
              "\x1b[36mCell\x1b[39m\x1b[36m \x1b[39m\x1b[32mIn[7]\x1b[39m, line 3\n----> 3 hidden_secret()",
              f"File {os.path.dirname(rnncourse.__file__)}/grading.py:79, in check_array\n  raise",
              "Cell In[4], line 2, in rnn_step\n----> 2 return student_code()",
              "AssertionError: `h` is wrong"]
    cell, _ = HideTestTracebacks().preprocess_cell(
        _cell([{"output_type": "error", "ename": "AssertionError", "evalue": "`h` is wrong",
                "traceback": frames}]), {}, 0)
    shown = "\n".join(cell.outputs[0].traceback)
    assert "hidden_secret" not in shown and "grading.py" not in shown
    assert "student_code()" in shown and shown.endswith("AssertionError: `h` is wrong")
    assert shown.count("not shown") == 1


def test_kernels_whose_grading_process_died_are_reaped(tmp_path, monkeypatch):
    """A sandboxed kernel started ahead by a grading process that was then killed is stopped."""
    import tempfile

    from rnncourse.grader import sandbox

    monkeypatch.setattr(tempfile, "gettempdir", lambda: str(tmp_path))
    parent = tmp_path / f"rnncourse-kernels-{os.getuid()}"
    # an owner that cannot be alive: above the kernel's largest process id (a real dead
    # process's id may already be reused in a long test run)
    dead = int(Path("/proc/sys/kernel/pid_max").read_text()) + 1
    orphan, owned = parent / "k-orphan", parent / "k-owned"
    for folder, owner in ((orphan, str(dead)), (owned, str(os.getpid()))):
        folder.mkdir(parents=True)
        (folder / sandbox.OWNER).write_text(owner)
    # stand-ins for the kernels: processes whose command line names their folder
    kernels = {f: subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)",
                                    str(f / "kernel.json")]) for f in (orphan, owned)}
    try:
        assert sandbox.reap_orphan_kernels() == 1
        assert kernels[orphan].wait(timeout=10) == -9
        assert not orphan.exists()
        assert kernels[owned].poll() is None and owned.exists(), "a live owner's kernel was stopped"
    finally:
        for process in kernels.values():
            process.kill()
            process.wait()


def test_the_course_setup_cell_is_not_reported_but_an_edited_one_is():
    import nbformat

    from rnncourse import __version__, setupcell
    from rnncourse.grader.scan import course_setup_cell, suspicious_code

    cell = nbformat.from_dict(setupcell.make_cell(__version__))
    assert suspicious_code(cell.source), "the set-up cell uses importlib: a plain scan flags it"
    assert course_setup_cell(cell)
    cell.source += "\nimportlib.import_module('rnncourse.grading').FLOAT64_TOL.update(atol=9)\n"
    assert not course_setup_cell(cell)
