"""Kernels compiled ahead, in a second process, while a first run trains.

Into an empty Numba cache, a first ``minires train`` compiles every kernel it calls, one after the
other: Numba compiles under one lock per process, on one core, while the other core waits. The
kernels of the deeper layers, which the training compiles last, and those the evaluation after the
first epoch needs and the training steps do not (batch norm in eval mode) are compiled meanwhile by
a second process, which writes them to the shared cache: a training step on zeros of each stage of
the same model, the deepest first, and an SGD update, then one eval-mode forward on a batch of
zeros of the evaluation's shape. The training process, busy with its first layers' kernels, then
loads the rest from there. With a warm cache the second process only loads them and
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
from .explain import explain
from .fusion import fuse
from .optim import SGD


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
    model.to(np.dtype(args.dtype))
    model.train()
    _stage_training_steps(model, args.shape, np.dtype(args.dtype))
    model.eval()
    with no_grad():
        model(Tensor(np.zeros(args.shape, args.dtype)))
    return 0


def _stage_training_steps(model, shape, dtype):
    """A training step (forward and backward, on zeros) of each stage of ``model``, layer4 first (the
    training compiles its first layers' kernels first, and reaches the deepest ones' last), then an
    SGD update of their parameters. A model without ResNet's stages: nothing."""
    first, kernels = {}, runtime.get_kernels()
    runtime.set_kernels("numpy")  # the stages' input shapes, without compiling the first layers' kernels
    try:
        for row in explain(model, (2,) + tuple(shape[1:]), training=True):  # batch norm trains on 2 or more
            first.setdefault(row.module.split(".")[0], (shape[0],) + tuple(row.input_shape[1:]))
    finally:
        runtime.set_kernels(kernels)
    for name in ("layer4", "layer3", "layer2", "layer1"):
        if name in first:  # a top-level module of the model's, named by explain
            y = getattr(model, name)(Tensor(np.zeros(first[name], dtype), requires_grad=True))  # as in training
            y.backward(Tensor(np.zeros(y.shape, dtype)))
    params = [p for p in model.parameters() if p.grad is not None]
    if params:
        SGD(params, lr=0.0, momentum=0.9).step()


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
