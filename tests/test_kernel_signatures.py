"""Compile cost into an empty cache: a Winograd convolution and its weight's gradient, in float32, compile
each of the transforms' row helpers once (a literal argument at one call site would make a second
specialisation of the helper)."""
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CODE = """
import importlib, json
import numpy as np
import minires
from minires import kernels
W = importlib.import_module("minires.kernels.winograd")
x = np.random.default_rng(0).standard_normal((2, 8, 8, 8)).astype(np.float32)
w = np.random.default_rng(1).standard_normal((8, 8, 3, 3)).astype(np.float32)
out = np.empty((8, 2, 8, 8), np.float32)
v = np.empty((6, 6, 8, 2 * W.winograd_slots((8, 8))), np.float32)
kernels.winograd_conv3x3(x, w, (1, 1), out, v)
kernels.winograd_weight_grad(out.transpose(1, 0, 2, 3), v)
print(json.dumps({f.__name__: len(f.signatures) for f in (W._bt_rows, W._at_rows, W._a_rows)}))
"""


def test_winograd_row_helpers_compile_once(tmp_path):
    # an empty cache of its own: kernels that other tests compiled would load from the shared one, and
    # their helpers would not be compiled at all
    env = dict(os.environ, PYTHONPATH=ROOT, MINIRES_KERNELS="numba", NUMBA_CACHE_DIR=str(tmp_path))
    out = subprocess.run([sys.executable, "-c", CODE], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.splitlines()[-1]) == {"_bt_rows": 1, "_at_rows": 1, "_a_rows": 1}
