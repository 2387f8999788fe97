"""minires/warmup.py: the second process that compiles kernels while a first run trains. Its speed
is measured in benchmarks/RESULTS.md; here: it compiles into the shared cache, it is started and
stopped by `minires train`, and it never outlives the run."""
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import minires
from minires import runtime, warmup
from minires.kernels import _dispatch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_the_forward_it_runs_fills_numba_s_cache(tmp_path):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path), PYTHONPATH=ROOT, MINIRES_KERNELS="numba")
    out = subprocess.run([sys.executable, "-m", "minires.warmup", "resnet18", "10", "4,3,8,8", "float32",
                          "--small-input"], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    cached = [name for _, _, files in os.walk(tmp_path) for name in files if name.endswith(".nbi")]
    for kernel in ("_bn_forward_chunk",  # eval-mode batch norm, which training never runs
                   "_bn_backward_chunk", "_relu_backward_loops", "_sgd_loops"):  # the stages' training steps
        assert any(kernel in name for name in cached), (kernel, cached)


def test_train_starts_it_and_stops_it(monkeypatch):
    started = []

    class Process:
        def poll(self):
            return None

        def kill(self):
            started.append("killed")

        def wait(self):
            started.append("waited")

    def popen(argv, env, **kw):
        started.append((argv[3:], env["NUMBA_NUM_THREADS"], env["OMP_NUM_THREADS"], env["OPENBLAS_NUM_THREADS"]))
        return Process()

    monkeypatch.setattr(warmup.subprocess, "Popen", popen)
    monkeypatch.setattr(runtime, "WARMUP", True)
    process = warmup.start("resnet18", 10, (64, 1, 8, 8), np.float32, True)
    warmup.stop(process)
    assert started == [(["resnet18", "10", "64,1,8,8", "float32", "--small-input"], "1", "1", "1"), "killed", "waited"]
    monkeypatch.setattr(runtime, "WARMUP", False)
    assert warmup.start("resnet18", 10, (64, 1, 8, 8), np.float32, True) is None


def test_it_ends_with_the_run_that_started_it(tmp_path):
    """A run SIGKILLed cannot stop it: Linux does (PR_SET_PDEATHSIG)."""
    code = ("import subprocess, sys, time; p = subprocess.Popen([sys.executable, '-m', 'minires.warmup', 'resnet50', "
            "'10', '64,3,224,224', 'float32']); print(p.pid, flush=True); time.sleep(60)")
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                              env=dict(os.environ, PYTHONPATH=ROOT, NUMBA_CACHE_DIR=str(tmp_path)))
    child = int(parent.stdout.readline())
    time.sleep(3)  # the child is importing or compiling
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 5  # at once, where its own forward would take far longer
    while time.monotonic() < deadline and _alive(child):
        time.sleep(0.1)
    assert not _alive(child)


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"  # a zombie has ended
    except FileNotFoundError:
        return False


def test_recording_lists_the_calls_and_runs_the_references(monkeypatch):
    """Inside recording(), a kernel call runs the NumPy reference (the Numba version, made to fail
    here, is not called) and is listed once, not the kernels the reference calls in turn; after it,
    calls dispatch as before."""
    inner = _dispatch.kernel(lambda x: x + 1)
    outer = _dispatch.kernel(lambda x, k: inner(x) * k)
    def fails(*args, **kwargs):
        raise AssertionError("a fast version ran")
    outer.register("numba")(fails)
    monkeypatch.setitem(runtime._settings, "kernels", "numba")
    x = np.ones(3)
    with _dispatch.recording() as calls:
        np.testing.assert_array_equal(outer(x, k=3), np.full(3, 6.0))
    assert calls == [(outer, x, (), {"k": 3})]
    with pytest.raises(AssertionError, match="a fast version ran"):
        outer(x, k=3)


def test_the_first_call_of_each_kind_is_kept():
    """Alike: one kernel, arrays of one dtype, shape and layout, equal other arguments."""
    a, b = _dispatch.kernel(lambda x, *args: x), _dispatch.kernel(lambda x, *args: x)
    x, y = np.zeros((2, 3), np.float32), np.zeros((3, 2), np.float32).T
    with _dispatch.recording(keep=warmup._first_of_each_kind()) as calls:
        for k, v, args in ((a, x, (1,)), (b, x, ()), (a, x.copy(), (1,)), (a, y, (1,)), (a, x, (2,)),
                           (a, x.astype(np.float64), (1,)), (b, x.copy(), ())):
            k(v, *args)
    assert [(k, v.strides, v.dtype, args) for k, v, args, _ in calls] == [
        (a, (12, 4), np.float32, (1,)), (b, (12, 4), np.float32, ()), (a, (4, 8), np.float32, (1,)),
        (a, (12, 4), np.float32, (2,)), (a, (24, 8), np.float64, (1,))]


def test_a_recorded_first_epoch_lists_the_kernel_calls_of_the_real_one(monkeypatch):
    """What the second process replays is what the training calls: the same kernels, in the same
    order (so that replaying it backwards starts from the training's far end)."""
    monkeypatch.setitem(runtime._settings, "kernels", "numba")
    model = minires.fuse(minires.models.resnet18(num_classes=10, small_input=True), inplace=True)
    x = np.zeros((4, 3, 8, 8), np.float32)
    with _dispatch.recording() as recorded:
        warmup._first_epoch(model, x)
    seen, call = [], _dispatch.Kernel.__call__
    monkeypatch.setattr(_dispatch.Kernel, "__call__", lambda self, *a, **kw: seen.append(self) or call(self, *a, **kw))
    warmup._first_epoch(model, x)
    assert [k for k, *_ in recorded] == seen and len(seen) > 50
