"""Memory layouts for the Numba kernels.

Activations reach the kernels as (N, C, ...) arrays in one of two memory layouts: NCHW-contiguous,
or channel-major (a transposed view of (C, N, ...) memory, as conv2d produces). A Numba kernel is
compiled for C-contiguous arrays and a flag ``cm``: it gets the C-contiguous array itself, indexed
(N, C, ...) when cm is False and (C, N, ...) when cm is True, so its inner loops always run over
contiguous rows. Any other strides are copied once into the nearer of the two layouts.
"""
import numpy as np

__all__ = ["is_channel_major", "canonical", "restore", "to_planes", "from_planes"]


def is_channel_major(a):
    """Whether (N, C, ...) array a is laid out as (C, N, ...) in memory. An array that is both
    (N or C is 1) counts as NCHW."""
    return not a.flags.c_contiguous and abs(a.strides[1]) > abs(a.strides[0])


def canonical(a, cm):
    """The C-contiguous (C, N, ...) (cm) or (N, C, ...) (not cm) form of a: a view when a already is
    laid out that way, else a copy."""
    return np.ascontiguousarray(a.swapaxes(0, 1) if cm else a)


def restore(a, cm):
    """Inverse of canonical: the (N, C, ...) view of a canonical array."""
    return a.swapaxes(0, 1) if cm else a


def to_planes(a, cm):
    """The (N*C, H, W) C-contiguous planes of (N, C, H, W) a, in (c, n) order when cm; for kernels that
    treat every plane alike (pooling)."""
    return canonical(a, cm).reshape(-1, *a.shape[2:])


def from_planes(p, n, c, cm):
    """Inverse of to_planes: the (N, C, h, w) view of planes p (N*C, h, w)."""
    return restore(p.reshape(((c, n) if cm else (n, c)) + p.shape[1:]), cm)
