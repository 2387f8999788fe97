"""Scratch memory reused from call to call, for arrays that die before their kernel's caller returns
(a convolution's col, consumed by its GEMM).

A fresh large NumPy array is new memory from the OS, and its first touch page-faults: im2col of a
ResNet-18 layer1 batch ran 1.6x slower into fresh memory than into reused memory. One buffer per
thread and array module, grown to the largest request, removes that cost; it stays allocated
(its size: the largest col of the model) until ``release_scratch``. CuPy's memory pool already
reuses device memory, so there the buffer only saves pool lookups.
"""
import math
import threading

from ._xp import array_module

__all__ = ["scratch", "release_scratch"]

_local = threading.local()


def scratch(like, shape, dtype):
    """An uninitialized C-contiguous array of ``shape`` and ``dtype`` in the scratch buffer of
    ``like``'s array module and this thread. Valid until the next call to scratch on this thread."""
    xp = array_module(like)
    buffers = _local.__dict__.setdefault("buffers", {})
    nbytes = xp.dtype(dtype).itemsize * math.prod(shape)
    if buffers.get(xp.__name__) is None or buffers[xp.__name__].size < nbytes:
        buffers.pop(xp.__name__, None)  # freed before the larger one is allocated
        buffers[xp.__name__] = xp.empty(nbytes, dtype=xp.uint8)
    return buffers[xp.__name__][:nbytes].view(dtype).reshape(shape)


def release_scratch():
    """Free this thread's scratch buffers."""
    _local.__dict__.pop("buffers", None)
