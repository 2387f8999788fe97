"""Our CUDA kernels: CUDA C sources, one family per file (im2col.cu, pooling.cu, ...), and a loader.

Each kernel is a template over the element type, compiled for float and double; a kernel's comment
names the NumPy reference it equals (kernels/*.py). The same source text runs in three places:
compiled by NVRTC through CuPy on a GPU (``load``), checked by NVRTC for sm_80 and sm_90 without a
GPU (tests/test_nvrtc.py), and compiled by g++ with a small shim for the CPU
(tests/cuda_cpu/launch.py), which runs every kernel against its reference under AddressSanitizer.

Calling convention (cupy.RawKernel's): ``f = load("im2col").kernel("im2col", x.dtype)``, then
``f(grid, block, args)`` with args a tuple of device arrays (passed as pointers; C-contiguous) and
scalars passed by value, each of its parameter's exact C type: NumPy scalars go as their dtype
(np.int32(n) for an int, np.float32(a) for a float), Python ints as long long, Python floats as
double. Nothing checks this on the GPU, so pass NumPy scalars; the CPU launcher checks every
argument against the kernel's signature.

This module imports nothing from CuPy until ``load`` is called.
"""
import functools
import re
from pathlib import Path

import numpy as np

__all__ = ["KERNELS", "FAMILIES", "source", "name_expression", "name_expressions", "load", "Module"]

HERE = Path(__file__).parent

# family (the .cu file's name) -> the kernels it defines, each a template over the element type
KERNELS = {
    "im2col": ("im2col", "col2im"),
    "conv_implicit": ("conv_implicit",),
    "pooling": ("maxpool_forward", "maxpool_backward", "avgpool_forward", "avgpool_backward"),
    "batchnorm": ("bn_stats", "bn_forward", "bn_backward"),
    "elementwise": ("add_relu", "relu_backward"),
    "optim": ("sgd_update", "adamw_update"),
}
FAMILIES = tuple(KERNELS)
C_TYPES = {np.dtype(np.float32): "float", np.dtype(np.float64): "double"}
NVRTC_OPTIONS = ("--std=c++17",)


@functools.lru_cache(maxsize=None)
def source(family):
    """The family's CUDA source as one self-contained text: its local includes ("common.cuh") pasted
    in, with #line markers so that compiler messages name the original file and line. One text, so
    that CuPy's compile cache (keyed by the text) sees a change to a header too."""
    path = HERE / f"{family}.cu"
    out = [f'#line 1 "kernels/cuda/{path.name}"']
    for number, line in enumerate(path.read_text().splitlines(), 1):
        include = re.fullmatch(r'#include "(\w+\.cuh)"', line.strip())
        if include:
            header = HERE / include[1]
            out += [f'#line 1 "kernels/cuda/{header.name}"', header.read_text(),
                    f'#line {number + 1} "kernels/cuda/{path.name}"']
        else:
            out.append(line)
    return "\n".join(out) + "\n"


def name_expression(kernel, dtype):
    """The C++ name of one instantiation, as NVRTC looks it up: name_expression("im2col", np.float32)
    is "im2col<float>"."""
    return f"{kernel}<{C_TYPES[np.dtype(dtype)]}>"


def name_expressions(family):
    """Every instantiation the family exports: each kernel for float and for double."""
    return [name_expression(k, t) for k in KERNELS[family] for t in C_TYPES]


class Module:
    """A compiled family: ``kernel(name, dtype)`` gives a function with the RawKernel calling
    convention. ``lookup`` maps a name expression to that function (a GPU module's get_function,
    or the CPU launcher's)."""

    def __init__(self, family, lookup):
        self.family, self._lookup = family, lookup

    def kernel(self, name, dtype):
        if name not in KERNELS[self.family]:
            raise KeyError(f"{self.family}.cu has no kernel {name!r}: it has {', '.join(KERNELS[self.family])}")
        return self._lookup(name_expression(name, dtype))


@functools.lru_cache(maxsize=None)
def load(family):
    """The family compiled for the current GPU by CuPy (NVRTC, cached on disk by CuPy). Needs CuPy
    and a GPU: CuPy asks the device for its architecture before compiling."""
    import cupy
    module = cupy.RawModule(code=source(family), options=NVRTC_OPTIONS, name_expressions=name_expressions(family))
    return Module(family, module.get_function)
