"""minires/warmup.py: the second process that compiles kernels while a first run trains. Its speed
is measured in benchmarks/RESULTS.md; here: it compiles into the shared cache, it is started and
stopped by `minires train`, and it never outlives the run."""
import os
import signal
import subprocess
import sys
import time

import numpy as np

from minires import runtime, warmup

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_the_forward_it_runs_fills_numba_s_cache(tmp_path):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path), PYTHONPATH=ROOT, MINIRES_KERNELS="numba")
    out = subprocess.run([sys.executable, "-m", "minires.warmup", "resnet18", "10", "4,3,8,8", "float32",
                          "--small-input"], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    cached = [name for _, _, files in os.walk(tmp_path) for name in files if name.endswith(".nbi")]
    for kernel in ("_bn_forward_loops",  # eval-mode batch norm, which training never runs
                   "_bn_backward_loops", "_relu_backward_loops", "_sgd_loops"):  # the stages' training steps
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

    monkeypatch.setattr(warmup.subprocess, "Popen", lambda argv, **kw: started.append(argv[3:]) or Process())
    monkeypatch.setattr(runtime, "WARMUP", True)
    process = warmup.start("resnet18", 10, (64, 1, 8, 8), np.float32, True)
    warmup.stop(process)
    assert started == [["resnet18", "10", "64,1,8,8", "float32", "--small-input"], "killed", "waited"]
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
