"""Memory reused from call to call for the large arrays the ops make for themselves (a
convolution's col), so that they skip the cost of fresh memory.

A fresh large NumPy array is new memory from the OS, and its first touch page-faults and is zeroed
by the kernel, which can cost as much as the work written into it (im2col, a memory-bound copy, is
the case in point; see benchmarks/RESULTS.md). Two kinds of reuse:
- scratch: one buffer per thread and array module, grown to the largest request, for an array that
  dies before its caller returns (col consumed by the forward's GEMM in inference). Valid until the
  next scratch call on that thread.
- pooled / recycle: buffers of an exact size, taken in the forward and given back after the backward
  (col kept for the weight's gradient instead of redone). After the first training step every take
  finds the buffer the previous step gave back. A take that finds no buffer of its size (another
  batch size) frees the pool's buffers, which then belong to shapes no longer in use.
Both hold their memory until ``release_scratch``. CuPy's memory pool already reuses device memory,
so there they only save pool lookups.
"""
import math
import threading

from ..device import array_module

__all__ = ["scratch", "pooled", "recycle", "release_scratch"]

_local = threading.local()
_pool, _pool_lock = {}, threading.Lock()  # (array module name, nbytes) -> free uint8 buffers


def _view(buffer, shape, dtype):
    return buffer[:array_module(buffer).dtype(dtype).itemsize * math.prod(shape)].view(dtype).reshape(shape)


def scratch(like, shape, dtype):
    """An uninitialized C-contiguous array of ``shape`` and ``dtype`` in the scratch buffer of
    ``like``'s array module and this thread. Valid until the next call to scratch on this thread."""
    xp = array_module(like)
    buffers = _local.__dict__.setdefault("buffers", {})
    nbytes = xp.dtype(dtype).itemsize * math.prod(shape)
    if buffers.get(xp.__name__) is None or buffers[xp.__name__].size < nbytes:
        buffers.pop(xp.__name__, None)  # freed before the larger one is allocated
        buffers[xp.__name__] = xp.empty(nbytes, dtype=xp.uint8)
    return _view(buffers[xp.__name__], shape, dtype)


def pooled(like, shape, dtype):
    """An uninitialized C-contiguous array of ``shape`` and ``dtype`` of ``like``'s array module, in a
    pooled buffer of exactly its size, or new. Hand it to ``recycle`` once nothing uses it."""
    xp = array_module(like)
    key = xp.__name__, xp.dtype(dtype).itemsize * math.prod(shape)
    with _pool_lock:
        free = _pool.get(key)
        if free:
            return _view(free.pop(), shape, dtype)
        _pool.clear()
    return _view(xp.empty(key[1], dtype=xp.uint8), shape, dtype)


def recycle(a):
    """Give an array from ``pooled`` back to the pool. The caller must hold no other reference to it."""
    buffer = a
    while buffer.base is not None:
        buffer = buffer.base
    with _pool_lock:
        _pool.setdefault((array_module(buffer).__name__, buffer.size), []).append(buffer)


def release_scratch():
    """Free this thread's scratch buffers and the pool."""
    _local.__dict__.pop("buffers", None)
    with _pool_lock:
        _pool.clear()
