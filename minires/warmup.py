"""Kernels compiled ahead, in a second process, while a first run trains.

Into an empty Numba cache, a first ``minires train`` compiles every kernel it calls, one after the
other: Numba compiles under one lock per process, on one core, while the other core waits. A second
process compiles the same kernels from the other end, into the shared cache: it lists the kernel
calls of one training step on zeros of the run's batch shape, an SGD update and an eval-mode
forward (the evaluation after the first epoch), running NumPy's reference kernels to do so
(kernels/_dispatch.recording), then runs each distinct call on the Numba kernels, the last one first.
The training, compiling its first layers' forward kernels, meanwhile, then loads the rest from the
cache, the two meeting in the middle. With a warm cache the second process only loads them and
exits. It runs on one thread at a lower priority (nice 10): it takes the core the compiling leaves
idle, and yields to the training's threads (with threads of its own, its OpenMP regions and
OpenBLAS calls waited at barriers for a core the training held). Off: MINIRES_WARMUP=0
(minires/runtime.py).

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
from .functional import cross_entropy
from .fusion import fuse
from .kernels import _dispatch
from .optim import SGD


def start(model, num_classes, shape, dtype, small_input):
    """Start the second process for an evaluation of zoo model ``model`` on batches of ``shape``
    (N, C, H, W) and ``dtype``; None where nothing would be compiled (the NumPy kernels) or it is off.
    The caller stops it with stop() at the end of the run."""
    if not runtime.WARMUP or runtime.get_kernels() != "numba":
        return None
    argv = [sys.executable, "-m", "minires.warmup", model, str(num_classes), ",".join(map(str, shape)),
            np.dtype(dtype).name] + (["--small-input"] if small_input else [])
    one_thread = dict(os.environ, NUMBA_NUM_THREADS="1", OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    return subprocess.Popen(argv, env=one_thread, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


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
    with _dispatch.recording(keep=_first_of_each_kind()) as calls:
        _first_epoch(model, np.zeros(args.shape, args.dtype))
    # The last the run needs, first, on the arrays recorded: pooled and scratch buffers among them may
    # hold other values by now, which only kernels that index with their data could mind (none does:
    # index arrays come from an op's saved results or cached tables). A call that fails compiles
    # nothing; the next ones still do.
    for kernel, x, args_, kwargs in reversed(calls):
        try:
            kernel(x, *args_, **kwargs)
        except Exception:
            continue
    return 0


def _first_epoch(model, x):
    """What a first epoch calls: a training step on batch ``x`` (forward, cross-entropy, backward, an
    SGD update), then an eval-mode forward."""
    model.train()
    cross_entropy(model(Tensor(x)), Tensor(np.zeros(len(x), np.int64))).backward()
    SGD(model.parameters(), lr=0.0, momentum=0.9, weight_decay=1e-4).step()
    model.eval()
    with no_grad():
        model(Tensor(x))


def _first_of_each_kind():
    """A keep for recording(): true for the first call of each kind (one kernel; arrays of one dtype,
    shape and layout; other arguments equal), the calls that compile something or choose another
    loop; the others are not kept, nor their arrays."""
    seen = set()

    def keep(call):
        key = _key(call)
        new = key not in seen
        seen.add(key)
        return new
    return keep


def _key(v):
    """What of a call's argument v can change what it compiles or which loop it takes: an array's
    dtype, shape, strides, writeability and alignment; a number's or string's value; an object's
    identity."""
    if isinstance(v, np.ndarray):
        return "array", v.dtype.str, v.shape, v.strides, v.flags.writeable, v.flags.aligned
    if isinstance(v, (tuple, list)):
        return type(v), tuple(_key(a) for a in v)
    if isinstance(v, dict):
        return dict, tuple((k, _key(a)) for k, a in sorted(v.items()))
    return type(v), v if isinstance(v, (int, float, str, bool, type(None), np.generic, np.dtype)) else id(v)


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
