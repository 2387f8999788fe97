"""benchmarks/models.py measures each framework alone: PyTorch's worker process never imports minires
(so it gets none of minires's process-wide settings), and rounds interleave the frameworks."""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
import fresh  # noqa: E402

MODELS_PY = os.path.join(ROOT, "benchmarks", "models.py")


def _worker(side, task, weights, pythonpath):
    env = dict(os.environ, PYTHONPATH=pythonpath, OMP_NUM_THREADS="1", NUMBA_NUM_THREADS="1")
    return subprocess.run([sys.executable, MODELS_PY, "--worker", side, "resnet18:2:32:small", task, "--runs", "1",
                           "--weights", weights], env=env, capture_output=True, text=True)


def test_torch_worker_imports_no_minires(tmp_path):
    """With a minires that fails on import first on the path, PyTorch's worker still measures (on the
    weights a real minires worker wrote), and minires's own worker fails: the trap works."""
    pytest.importorskip("torch")
    weights = str(tmp_path / "w.npz")
    made = _worker("minires", "weights", weights, ROOT)
    assert made.returncode == 0, made.stderr
    trap = tmp_path / "trap" / "minires"
    trap.mkdir(parents=True)
    (trap / "__init__.py").write_text("raise ImportError('this process imported minires')\n")
    path = str(tmp_path / "trap") + os.pathsep + ROOT
    torch_run = _worker("torch", "infer", weights, path)
    assert torch_run.returncode == 0, torch_run.stderr
    result = json.loads(torch_run.stdout.splitlines()[-1])
    assert list(result) == ["torch"] and len(result["torch"]["times"]) == 1
    mine = _worker("minires", "infer", weights, path)
    assert mine.returncode != 0 and "this process imported minires" in mine.stderr


def test_rounds_alternate_the_order():
    assert list(fresh.interleaved(("minires", "torch"), 3)) == ["minires", "torch", "torch", "minires",
                                                                 "minires", "torch"]
    assert list(fresh.interleaved(("a", "b", "c"), 2)) == ["a", "b", "c", "c", "b", "a"]
