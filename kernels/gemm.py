"""Batched matrix products, out[i] = a[i] @ b[i] over a stack of equal-shaped matrices: the 36 GEMMs
of a Winograd convolution (kernels/winograd.py).

    a (B, M, K), b (B, K, N), any strides -> out (B, M, N), C-contiguous

The reference is the array module's matmul. NumPy runs a stack as one BLAS call per matrix, and
each call hands its product to BLAS's threads and waits for them to finish: on small matrices (a
64-channel layer on 8x8 maps gives 36 products of 64x64 by 64x384) that hand-off costs more than
the arithmetic. Recent OpenBLAS releases also have a strided batched GEMM: one call, the stack
dealt out to the threads at once. The fast version calls it in NumPy's OpenBLAS (found by
minires.runtime.openblas(), called through ctypes), and is the reference wherever that library or
function is missing, the arrays' strides are not a strided batch, or the matrices are small:
OpenBLAS sends products of at most 100^3 multiply-adds to its small-matrix kernels, which its
batched GEMM fails to look up in builds for several CPUs (NumPy's) and crashes (fixed in
OpenMathLib/OpenBLAS#5980); NumPy's matmul runs those on one thread anyway. Each product is the
same GEMM either way, so the two agree to the rounding of the BLAS kernel chosen.
Registered under the CPU's fast kernel backend, "numba", though it needs no Numba.
"""
import ctypes
import functools

import numpy as np

from ._dispatch import kernel
from .. import runtime
from ..device import array_module

__all__ = ["batched_matmul"]


@kernel
def batched_matmul(a, b, out):
    """a (B, M, K), b (B, K, N) -> out (B, M, N), C-contiguous: out[i] = a[i] @ b[i]."""
    _check(a, b, out)
    return array_module(a).matmul(a, b, out=out)


def _check(a, b, out):
    shapes = f"a {a.dtype} {a.shape} and b {b.dtype} {b.shape}"
    if a.ndim != 3 or b.ndim != 3 or out.ndim != 3 or b.shape[:2] != a.shape[::2]:
        raise ValueError(f"batched_matmul: {shapes}: need stacks (B, M, K) and (B, K, N)")
    nb, m, k = a.shape
    if out.shape != (nb, m, b.shape[2]) or not out.flags.c_contiguous or not out.flags.writeable \
            or not a.dtype == b.dtype == out.dtype:
        raise ValueError(f"batched_matmul: {shapes} need a writeable C-contiguous out of shape "
                         f"{(nb, m, b.shape[2])} and their dtype, got {out.dtype} {out.shape}")


def available(dtype):
    """Whether batched_matmul's fast version has a batched GEMM for ``dtype`` here."""
    return np.dtype(dtype).type in _openblas_batched()


@batched_matmul.register("numba")
def _batched_matmul_blas(a, b, out):
    _check(a, b, out)
    gemm = _openblas_batched().get(out.dtype.type) if out.dtype.isnative else None
    ops = (_operand(a), _operand(b))
    nb, m, n = out.shape
    k = a.shape[2]
    if gemm is None or None in ops or nb == 0 or m * n * k <= SMALL or not _fits((m, n, k), ops, nb) \
            or np.may_share_memory(out, a) or np.may_share_memory(out, b):
        return np.matmul(a, b, out=out)
    (ta, lda, sa), (tb, ldb, sb) = ops
    gemm(_ROW_MAJOR, ta, tb, m, n, k, 1.0, a.ctypes.data, lda, sa, b.ctypes.data, ldb, sb,
         0.0, out.ctypes.data, n, m * n, nb)
    return out


def _fits(sizes, ops, nb):
    """Whether every integer OpenBLAS takes or computes (a size, a leading dimension, a matrix's
    offset index * batch stride, in a, b and out) fits its integer type: ctypes would truncate it."""
    m, n, _ = sizes
    largest = 2 ** (8 * ctypes.sizeof(runtime.openblas().integer) - 1) - 1
    return max(*sizes, nb * m * n, *(ld for _, ld, _ in ops), *((nb - 1) * s for _, _, s in ops)) <= largest


SMALL = 100 ** 3  # OpenBLAS's small-matrix bound on M*N*K (see the module's docstring)
_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112  # CBLAS's enum values


def _operand(x):
    """(transpose flag, leading dimension, batch stride) in elements of (B, R, C) x as CBLAS takes a
    row-major operand, or None when its strides are none of these: each matrix row-major (unit
    stride along C) or transposed (unit stride along R), the matrices one constant stride apart."""
    item, (nb, r, c), (s0, s1, s2) = x.itemsize, x.shape, x.strides
    if not x.flags.aligned or any(s % item for s in (s0, s1, s2)) or (nb > 1 and s0 < 0):
        return None
    batch = s0 // item if nb > 1 else 0
    if s2 == item or c == 1:
        ld = s1 // item if r > 1 else c
        if ld >= max(c, 1):
            return _NO_TRANS, ld, batch
    if s1 == item or r == 1:
        ld = s2 // item if c > 1 else r
        if ld >= max(r, 1):
            return _TRANS, ld, batch
    return None


@functools.cache
def _openblas_batched():
    """{np.float32: sgemm, np.float64: dgemm}: the strided batched GEMMs of NumPy's OpenBLAS, as
    ctypes functions; {} where there are none (another BLAS, an OpenBLAS without them)."""
    lib, found = runtime.openblas(), {}
    for dtype, scalar, name in ((np.float32, ctypes.c_float, "cblas_sgemm_batch_strided"),
                                (np.float64, ctypes.c_double, "cblas_dgemm_batch_strided")):
        if lib is not None and hasattr(lib, name):
            f, i, p = getattr(lib, name), lib.integer, ctypes.c_void_p
            f.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, i, i, i, scalar, p, i, i, p, i, i,
                          scalar, p, i, i, i]
            f.restype = None
            found[dtype] = f
    return found
