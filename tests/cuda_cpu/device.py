"""A test-only device, "cudacpu": minires's CUDA kernel wrappers (minires.cuda.kernels) run on the CPU.

Its arrays are NumPy memory under a type of their own (CudaCpuArray, an ndarray subclass), its array
module wraps NumPy's functions so that the arrays they make are CudaCpuArrays (as tests/testdev.py
does), and its kernels are the wrappers that a GPU gets, registered with the loader of this folder:
launch.load compiles kernels/cuda/*.cu with g++ and the shim and calls a kernel as cupy.RawKernel
does, checking each argument against the kernel's C signature. So everything a "cuda" kernel call
does on a GPU, except the GPU, happens here: the layout and dtype conversions, the output
allocation through the array module, the grid, the argument list, the kernel's code.
"""
import numpy as np

import minires.cuda
from minires.device import Device, register_device

from . import launch

NAME = "cudacpu"
# The shim runs a launch's blocks one after another, each block's threads as OS threads meeting at
# barriers: a few small blocks (the kernels' grid-stride loops do the rest) keep whole models quick
# on the CPU. tests/test_cuda_wrappers.py also runs the GPU's grids and blocks.
MAX_GRID, BLOCK = 2, 32


class CudaCpuArray(np.ndarray):
    """An array of the cudacpu device: NumPy memory, another type."""
    __test__ = False  # not a pytest class


def _on_device(value):
    if type(value) is np.ndarray:
        return value.view(CudaCpuArray)
    if isinstance(value, tuple):
        return tuple(_on_device(v) for v in value)
    return value


used = set()  # the names looked up on the array module: CuPy must have them all (tests check)


class _ArrayModule:
    """NumPy's functions, making CudaCpuArrays: the cudacpu device's ``xp``."""
    __name__ = "cudacpu_numpy"

    def __getattr__(self, name):
        used.add(name)
        attr = getattr(np, name)
        if isinstance(attr, (type, np.ufunc)) or not callable(attr):
            return attr
        return lambda *args, **kwargs: _on_device(attr(*args, **kwargs))


def to_device(a):
    """A copy of host array ``a`` on the cudacpu device, with a's memory layout (strides kept)."""
    return np.array(a, order="K").view(CudaCpuArray)


def to_host(a):
    """A copy of cudacpu array ``a`` as a plain ndarray, with a's memory layout."""
    return np.array(a, order="K").view(np.ndarray)


class Copier:
    """The cudacpu device's copier (minires.data.prefetch's protocol), synchronous: a copy is done when
    copy() returns, so its event is nothing to wait for. It takes the prefetcher's pinned, stream and
    event path, as the GPU's StreamCopier does."""

    def pinned(self, shape, dtype):
        return np.empty(shape, dtype)

    def copy(self, host):
        return to_device(host), None

    def wait(self, event):
        pass

    def synchronize(self, event):
        pass


def install(max_grid=MAX_GRID, block=BLOCK):
    """Register the device, with what a GPU gets (minires.cuda.install: the CUDA kernel wrappers as its
    kernels, the GPU's convolution plans), again on each call: cheap. max_grid, block: blocks per grid
    axis at most and threads per block (minires.cuda.kernels.MAX_GRID and BLOCK: the GPU's)."""
    register_device(Device(NAME, CudaCpuArray, _ArrayModule(), to_host=to_host, from_host=to_device, copier=Copier))
    minires.cuda.install(NAME, launch.load, max_grid=max_grid, block=block)
