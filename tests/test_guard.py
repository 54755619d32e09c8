"""The guard's set-up in a real kernel: what it imports, and what it leaves to the student."""

from __future__ import annotations

import ast
import json

import pytest
from jupyter_client.manager import start_new_kernel

from rnncourse import TF_ENV
from rnncourse.grader.warm import guard_setup_expression

pytestmark = pytest.mark.slow


def _evaluate(client, expression: str, timeout: float = 120):
    reply = client.execute_interactive("", silent=True, store_history=False, timeout=timeout,
                                       user_expressions={"value": expression})
    value = reply["content"]["user_expressions"]["value"]
    assert value["status"] == "ok", value
    return ast.literal_eval(value["data"]["text/plain"])


def test_keras_loads_without_its_optional_extras_and_a_cell_still_imports_them(monkeypatch):
    for key, value in TF_ENV.items():
        monkeypatch.setenv(key, value)
    manager, client = start_new_kernel(kernel_name="python3")
    try:
        assert json.loads(_evaluate(client, guard_setup_expression())) == []
        loaded = json.loads(_evaluate(client, "__import__('json').dumps(sorted(m for m in "
                                               "('sklearn', 'pandas', 'matplotlib', 'keras', 'tensorflow') "
                                               "if m in __import__('sys').modules))"))
        assert loaded == ["keras", "tensorflow"]
        # a student's cell: each of them imports as usual, and Keras computes
        reply = client.execute_interactive(
            "import pandas, sklearn, matplotlib.pyplot as plt\n"
            "import keras, numpy as np\n"
            "out = keras.layers.GRU(3)(np.zeros((1, 2, 4), 'float32'))\n"
            "result = (pandas.__name__, sklearn.__name__, plt.__name__, tuple(out.shape))\n",
            timeout=120)
        assert reply["content"]["status"] == "ok", reply["content"]
        assert _evaluate(client, "result") == ("pandas", "sklearn", "matplotlib.pyplot", (1, 3))
        assert _evaluate(client, "len([f for f in __import__('sys').meta_path "
                                 "if type(f).__name__ == '_NotNow'])") == 0
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
