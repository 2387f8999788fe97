"""The one dispatch point between the autograd ops and the compute kernels.

Each kernel is written first as a NumPy reference function, array-module generic (it runs on any
device's arrays). Faster versions register beside it under a name: a CPU kernel backend ("numba")
or a device ("cuda", or a test-only device). A call picks the version by the device of its first
array argument: on the CPU, the backend that minires.runtime.set_kernels selects; on another
device, that device's version. A name without a version of some kernel falls back to the
reference, so a backend or a device can be added one kernel at a time, and no op changes.
Numba's workqueue threading layer aborts the process if two threads enter it at once, so numba
kernels run under a lock. recording() lists the calls a block makes, without running their fast
versions (minires.warmup replays them to compile ahead).
"""
import contextlib
import functools
import threading

from .. import profiler, runtime
from ..device import device_of

_numba_lock = threading.Lock()
_recorded = None  # while recording() runs: (its list, its keep), or _IN_REFERENCE inside a reference
_IN_REFERENCE = object()


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
        if _recorded is not None:
            return _record(self, x, args, kwargs)
        device = device_of(x).name
        backend = runtime.get_kernels() if device == "cpu" else device
        f = self.impls.get(backend, self.impls["numpy"])
        if profiler.active is not None:  # recorded under the name of the version that runs
            name = f"{self.__name__} ({backend if backend in self.impls else 'numpy'})"
            return profiler.active.kernel(name, _call, f, backend, x, args, kwargs)
        return _call(f, backend, x, args, kwargs)


def _call(f, backend, x, args, kwargs):
    """f(x, *args, **kwargs), under the lock when it is a numba kernel."""
    if backend != "numba":
        return f(x, *args, **kwargs)
    with _numba_lock:
        return f(x, *args, **kwargs)


def _record(kernel, x, args, kwargs):
    """List the call (unless keep refuses it) and run the reference; kernel calls the reference makes
    in turn run their references too, unlisted."""
    global _recorded
    state = _recorded
    if state is not _IN_REFERENCE:
        calls, keep = state
        if keep is None or keep((kernel, x, args, kwargs)):
            calls.append((kernel, x, args, kwargs))
    _recorded = _IN_REFERENCE
    try:
        return kernel.impls["numpy"](x, *args, **kwargs)
    finally:
        _recorded = state


@contextlib.contextmanager
def recording(keep=None):
    """Inside the block, each kernel call runs the NumPy reference and is appended to the list
    yielded as (kernel, x, args, kwargs), if keep(call) is true (None: every call); the ops and plans
    choose as for the backend selected, so the list is what the block would call, compiling nothing.
    The recording is the process's: no other thread may call kernels meanwhile."""
    global _recorded
    outer, calls = _recorded, []
    _recorded = (calls, keep)
    try:
        yield calls
    finally:
        _recorded = outer


def kernel(reference):
    """Decorator turning a NumPy reference function into a dispatching ``Kernel``."""
    return Kernel(reference)
