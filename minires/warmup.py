"""The evaluation's kernels compiled ahead, in a second process, while a first run trains.

Into an empty Numba cache, a first ``minires train`` compiles every kernel it calls, one after the
other: Numba compiles under one lock per process, on one core, while the other core waits. The
kernels the evaluation after the first epoch needs and the training steps do not (Winograd's
transforms where the evaluation's batches are large enough for them, batch norm in eval mode) are
compiled meanwhile by a second process: one eval-mode forward of the same model on a batch of zeros
of the evaluation's shape, which writes them to the shared cache. The training process then loads
them from there when it first evaluates. With a warm cache the second process only loads them and
exits. It runs at a lower priority (nice 10): it takes the core the compiling leaves idle, and
yields to the training's threads. Off: MINIRES_WARMUP=0 (minires/runtime.py).

    python -m minires.warmup MODEL NUM_CLASSES N,C,H,W DTYPE [--small-input]
"""
import argparse
import ctypes
import os
import signal
import subprocess
import sys

import numpy as np

from . import models, runtime
from .autograd.tensor import Tensor, no_grad
from .fusion import fuse


def start(model, num_classes, shape, dtype, small_input):
    """Start the second process for an evaluation of zoo model ``model`` on batches of ``shape``
    (N, C, H, W) and ``dtype``; None where nothing would be compiled (the NumPy kernels) or it is off.
    The caller stops it with stop() at the end of the run."""
    if not runtime.WARMUP or runtime.get_kernels() != "numba":
        return None
    argv = [sys.executable, "-m", "minires.warmup", model, str(num_classes), ",".join(map(str, shape)),
            np.dtype(dtype).name] + (["--small-input"] if small_input else [])
    return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop(process):
    """End the second process if it still runs (the run ended first); None passes."""
    if process is not None and process.poll() is None:
        process.kill()
        process.wait()


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m minires.warmup", description=__doc__.splitlines()[0])
    p.add_argument("model")
    p.add_argument("num_classes", type=int)
    p.add_argument("shape", type=lambda s: tuple(int(v) for v in s.split(",")))
    p.add_argument("dtype")
    p.add_argument("--small-input", action="store_true")
    args = p.parse_args(argv)
    _end_with_parent()
    os.nice(10)
    model = fuse(getattr(models, args.model)(num_classes=args.num_classes, small_input=args.small_input), inplace=True)
    model.to(np.dtype(args.dtype)).eval()
    with no_grad():
        model(Tensor(np.zeros(args.shape, args.dtype)))
    return 0


def _end_with_parent():
    """Have Linux kill this process when the run that started it ends, however it ends (a SIGKILL
    gives the run no chance to call stop()). Elsewhere nothing: the process ends after its forward."""
    if sys.platform.startswith("linux"):
        parent = os.getppid()
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the parent ended before the line above
            sys.exit(0)


if __name__ == "__main__":
    sys.exit(main())
