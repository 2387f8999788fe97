"""The one dispatch point between the autograd ops and the compute kernels.

Each kernel is written first as a NumPy reference function, array-module generic (it also runs on
CuPy arrays). Faster versions register beside it under a backend name; a call picks the version by
the array type (CuPy arrays -> "cuda") and, on the CPU, by the switch ``set_kernels`` or the
environment variable ``MINIRES_KERNELS``. A backend without a version of some kernel falls back to
the reference, so a new backend can be added one kernel at a time.

Numba's parallel loops run on its OpenMP threading layer ("omp", GNU libgomp) where the system has
it, else on "workqueue" (unless NUMBA_THREADING_LAYER names one), with OMP_WAIT_POLICY=PASSIVE set
at import unless already set: idle OpenMP workers then sleep at once instead of spinning on the
cores that the next GEMM's BLAS threads need (spinning, a loop of bn_forward + a conv-sized GEMM ran
2.6x slower on 2 cores). Measured on 2 cores, a parallel loop on a tiny array costs 16 us to start
on passive OpenMP and 37 us on workqueue, whose workers also join a loop late; A/B, training steps
ran 1.10-1.23x faster (ResNet-18 at 32x32 makes about 145 kernel calls a step), ResNet-50 inference
1.10x. The variable is read when Numba loads libgomp, at the first parallel kernel; a libgomp
already loaded (PyTorch's, say) keeps its own setting. GNU OpenMP is not fork-safe: a process that forks after
running kernels must not run them in the child (Numba stops it with a message); such programs can
set NUMBA_THREADING_LAYER=workqueue. workqueue aborts the process if two threads enter it at once,
so numba kernels run under a lock.
"""
import functools
import os
import threading

import numba
import numpy as np

CPU_BACKENDS = ("numpy", "numba")
_cpu_backend = os.environ.get("MINIRES_KERNELS", "numba").strip().lower()
if _cpu_backend not in CPU_BACKENDS:
    raise ValueError(f"MINIRES_KERNELS must be one of {CPU_BACKENDS}, got {_cpu_backend!r}")
if "NUMBA_THREADING_LAYER" not in os.environ:
    numba.config.THREADING_LAYER_PRIORITY = ["omp", "workqueue", "tbb"]  # a permutation of all three
    numba.config.THREADING_LAYER = "default"  # the first of those that loads
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
_numba_lock = threading.Lock()


def set_kernels(name):
    """Select the CPU kernel implementation: "numba" (the default) or "numpy" (the reference)."""
    global _cpu_backend
    if name not in CPU_BACKENDS:
        raise ValueError(f"set_kernels: expected one of {CPU_BACKENDS}, got {name!r}")
    _cpu_backend = name


def get_kernels():
    """The name of the CPU kernel implementation in use."""
    return _cpu_backend


class Kernel:
    """A kernel: its NumPy reference plus any registered faster versions, callable as one function."""

    def __init__(self, reference):
        functools.update_wrapper(self, reference)
        self.impls = {"numpy": reference}

    def register(self, backend):
        """Decorator: register ``f`` as this kernel's version for ``backend``."""
        def deco(f):
            self.impls[backend] = f
            return f
        return deco

    def __call__(self, x, *args, **kwargs):
        backend = _cpu_backend if isinstance(x, np.ndarray) else "cuda"
        f = self.impls.get(backend, self.impls["numpy"])
        if backend != "numba":
            return f(x, *args, **kwargs)
        with _numba_lock:
            return f(x, *args, **kwargs)


def kernel(reference):
    """Decorator turning a NumPy reference function into a dispatching ``Kernel``."""
    return Kernel(reference)
