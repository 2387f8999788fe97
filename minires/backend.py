"""Array-module helpers: the engine runs unchanged on NumPy (CPU) and CuPy (GPU) arrays."""
import sys

import numpy as np

from .kernels._xp import array_module

__all__ = ["array_module", "is_array"]


def is_array(x):
    """True for a NumPy ndarray or, when CuPy is loaded, a CuPy ndarray."""
    return isinstance(x, np.ndarray) or ("cupy" in sys.modules and isinstance(x, sys.modules["cupy"].ndarray))


def cupy_or_error(what):
    """The cupy module, or a clear error naming what is missing for ``what``."""
    try:
        import cupy
    except ImportError:
        raise RuntimeError(f"{what}: CuPy is not installed (pip install 'minires[gpu]')") from None
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            raise RuntimeError
    except Exception:
        raise RuntimeError(f"{what}: CuPy found no CUDA GPU on this machine") from None
    return cupy


def to_device(arr, device):
    """``arr`` on "cpu" (NumPy) or "cuda" (CuPy); the same array when it is already there."""
    if device == "cpu":
        return arr if isinstance(arr, np.ndarray) else arr.get()
    if device == "cuda":
        return cupy_or_error("to('cuda')").asarray(arr)
    raise ValueError(f"unknown device {device!r}: expected 'cpu' or 'cuda'")
