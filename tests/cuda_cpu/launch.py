"""Compile a family of kernels/cuda/*.cu with g++ and the shim, and call its kernels as cupy.RawKernel
does: ``load("im2col").kernel("im2col", np.float32)(grid, block, args, shared_mem=0)``.

args: NumPy arrays (C-contiguous; passed as pointers, and written in place as device memory would
be) and scalars passed by value. Each argument is checked against the kernel's C signature, which
the shim reports: a NumPy scalar must have its parameter's exact type (np.int32 for int, np.float32
for float, ...), a Python int passes as long long, a Python float as double, a bool as bool, as
CuPy packs them. CuPy checks none of this on a GPU (a wrong width is a silent wrong value there),
so passing the test here means the argument list is right for the GPU as well.

The shared library is generated, not written: the family's source (kernels.cuda.source), then per
kernel instantiation two extern "C" functions, signature_<name> and launch_<name>, that hand the
template to shim::signature and shim::launch. It is cached under the temp dir by a hash of its text
and the compiler flags. sanitize=True builds it with AddressSanitizer, which must already be in
the process (see worker.py): a library that brings its own ASan runtime late cannot be loaded.
"""
import ctypes
import hashlib
import os
import re
import subprocess
import tempfile
import threading
from pathlib import Path

import numpy as np

from minires.kernels import cuda

SHIM = Path(__file__).with_name("shim.h")
CXX = os.environ.get("CXX", "g++")
FLAGS = ("-std=c++20", "-shared", "-fPIC", "-pthread", "-g", "-Wall", "-Wextra", "-Werror")
SANITIZE_FLAGS = ("-O1", "-fsanitize=address", "-fno-omit-frame-pointer")
CACHE = Path(os.environ.get("MINIRES_CUDA_CPU_CACHE", Path(tempfile.gettempdir()) / "minires-cuda-cpu"))

# the C type codes of the shim's signatures -> the NumPy dtype an argument must have
PARAMETER_DTYPES = {c: np.dtype(c) for c in "?iqfd"}
PYTHON_DTYPES = {bool: np.dtype("?"), int: np.dtype("q"), float: np.dtype("d")}  # as CuPy passes them

_launch_lock = threading.Lock()  # the shim's launch state (blockDim, the barrier) is global


def symbol(expression):
    """A C identifier for a name expression: "im2col<float>" -> "im2col_float"."""
    return re.sub(r"\W+", "_", expression).strip("_")


def wrapper_source(family):
    """The family's source plus its generated extern "C" entry points."""
    lines = [f'#include "{SHIM}"', cuda.source(family)]
    for e in cuda.name_expressions(family):
        s = symbol(e)
        lines += [f'extern "C" const char* signature_{s}() {{ return shim::signature({e}); }}',
                  f'extern "C" void launch_{s}(const unsigned* grid, const unsigned* block, void** args)',
                  f'{{ shim::launch({e}, grid, block, args); }}']
    return "\n".join(lines) + "\n"


def build(family, sanitize=False):
    """Path of the compiled shared library (compiled unless cached)."""
    flags = FLAGS + (SANITIZE_FLAGS if sanitize else ("-O2",))
    text = wrapper_source(family)
    key = hashlib.sha256("\0".join((text, SHIM.read_text(), CXX, *flags)).encode()).hexdigest()[:16]
    lib = CACHE / f"{family}-{key}.so"
    if not lib.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        src = CACHE / f"{family}-{key}.cpp"
        src.write_text(text)
        tmp = CACHE / f"{family}-{key}.{os.getpid()}.so"
        # run from the folder above kernels/, so that debug info (ASan's reports) names kernels/cuda/<family>.cu
        done = subprocess.run([CXX, *flags, str(src), "-o", str(tmp)], capture_output=True, text=True,
                              cwd=cuda.HERE.parent.parent)
        if done.returncode:
            raise RuntimeError(f"{CXX} failed on {family}.cu:\n{done.stderr}")
        os.replace(tmp, lib)  # atomic: a concurrent build of the same text writes the same file
    return lib


def asan_loaded():
    """Whether this process runs with AddressSanitizer's runtime (LD_PRELOAD, see worker.py)."""
    return "libasan" in Path("/proc/self/maps").read_text()


def load(family, sanitize=False):
    """The family compiled for the CPU, as a kernels.cuda.Module."""
    if sanitize and not asan_loaded():
        raise RuntimeError("sanitize=True needs AddressSanitizer preloaded: run in worker.Worker's child process")
    lib = ctypes.CDLL(str(build(family, sanitize)))
    return cuda.Module(family, lambda expression: Kernel(lib, expression))


class Kernel:
    """One kernel instantiation in a compiled library, callable as cupy.RawKernel."""

    def __init__(self, lib, expression):
        self.name = expression
        s = symbol(expression)
        getattr(lib, f"signature_{s}").restype = ctypes.c_char_p
        self.signature = getattr(lib, f"signature_{s}")().decode()
        self._launch = getattr(lib, f"launch_{s}")

    def __call__(self, grid, block, args, shared_mem=0):
        if shared_mem:
            raise ValueError(f"{self.name}: the CPU shim has no dynamic shared memory")
        if len(args) != len(self.signature):
            raise TypeError(f"{self.name} takes {len(self.signature)} arguments, got {len(args)}")
        values = [argument(self.name, k, code, a) for k, (code, a) in enumerate(zip(self.signature, args))]
        pointers = (ctypes.c_void_p * len(values))(*(v.ctypes.data for v in values))
        grid, block = dim3(grid), dim3(block)
        with _launch_lock:
            self._launch(grid, block, pointers)


def dim3(size):
    """A launch size as CUDA's dim3: an int or a tuple of up to three, missing ones 1."""
    size = (size,) if isinstance(size, (int, np.integer)) else tuple(size)
    if not 1 <= len(size) <= 3 or min(size) < 1:
        raise ValueError(f"a grid or block size must be 1 to 3 positive numbers, got {size}")
    return (ctypes.c_uint * 3)(*size, *(1,) * (3 - len(size)))


def argument(name, k, code, a):
    """Argument k as a NumPy array holding what the kernel's parameter k receives: for a pointer
    (code "p"), a 0-d array of the array's address; for a scalar, the scalar in its C type."""
    if code == "p":
        check_array(name, k, a)
        return np.array(a.ctypes.data, dtype=np.uintp)
    dtype = a.dtype if isinstance(a, np.generic) else PYTHON_DTYPES.get(type(a))
    if dtype != PARAMETER_DTYPES[code]:
        raise TypeError(f"{name}: argument {k} must be a {PARAMETER_DTYPES[code]} scalar, got {type(a).__name__} "
                        f"({dtype})")
    return np.array(a, dtype=dtype)


def check_array(name, k, a):
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name}: argument {k} must be an array, got {type(a).__name__}")
    if not a.flags.c_contiguous:
        raise ValueError(f"{name}: argument {k} must be C-contiguous (the caller copies, as on the GPU)")
