"""im2col / col2im: unfold the sliding windows of an image batch into one GEMM-ready matrix, and back.

Layout: col[(c, i, j), (n, y, x)] = xpad[n, c, y*sh + i*dh, x*sw + j*dw], shape (C*kh*kw, N*Ho*Wo), so
that conv2d over the whole batch is ONE GEMM  weight (Cout, C*kh*kw) @ col  giving y in channel-major
(Cout, N, Ho, Wo) memory, which the engine exposes as an (N, C, H, W) view without copying.
Inputs may have any strides (NCHW or channel-major memory).
"""
from ._dispatch import kernel
from ._geometry import conv_out_size, crop, out_hw, pad, tap_slices
from ._xp import array_module

__all__ = ["im2col", "col2im", "conv_out_size"]


@kernel
def im2col(x, ksize, stride, padding, dilation):
    """x (N, C, H, W) -> col (C*kh*kw, N*Ho*Wo), a new C-contiguous array. One strided copy per tap."""
    xp = array_module(x)
    n, c, h, w = x.shape
    (kh, kw), ohw = ksize, out_hw((h, w), ksize, stride, padding, dilation)
    xpad = pad(xp, x, padding).transpose(1, 0, 2, 3)
    col = xp.empty((c, kh, kw, n) + ohw, dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            col[:, i, j] = xpad[(..., *tap_slices(i, j, ohw, stride, dilation))]
    return col.reshape(c * kh * kw, n * ohw[0] * ohw[1])


@kernel
def col2im(col, x_shape, ksize, stride, padding, dilation):
    """The adjoint of im2col: col (C*kh*kw, N*Ho*Wo) -> gx (N, C, H, W) in channel-major memory,
    summing the taps that overlap."""
    xp = array_module(col)
    n, c, h, w = x_shape
    (kh, kw), (ph, pw) = ksize, padding
    ohw = out_hw((h, w), ksize, stride, padding, dilation)
    col = col.reshape((c, kh, kw, n) + ohw)
    gx = xp.zeros((c, n, h + 2 * ph, w + 2 * pw), dtype=col.dtype)
    for i in range(kh):
        for j in range(kw):
            gx[(..., *tap_slices(i, j, ohw, stride, dilation))] += col[:, i, j]
    return xp.ascontiguousarray(crop(gx, padding)).transpose(1, 0, 2, 3)
