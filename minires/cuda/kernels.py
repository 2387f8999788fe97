"""minires's kernels on CUDA: Python wrappers that launch our kernels/cuda/*.cu.

``register(device, load)`` registers, under ``device``, a version of each kernel of minires.kernels
that has a CUDA counterpart: im2col, col2im, max and average pooling forward and backward, bn_stats,
bn_forward, bn_train_forward (bn_stats then bn_forward, as the reference composes them),
bn_backward, add_relu, relu_backward, sgd_update and adamw_update. conv_implicit, which no
minires.kernels kernel has, is called by its plan (minires/plans/implicit_gemm.py) directly.
``load(family)`` gives a compiled family (kernels.cuda.Module): kernels.cuda.load compiles it for
the GPU through CuPy; tests/cuda_cpu/launch.load compiles the same source for the CPU.

Each wrapper has its reference's signature and gives its results: shapes, dtypes and memory layout
(NCHW or channel-major, as the reference keeps its input's). It does three things:
  1. allocates its outputs with its input's array module (minires.device.array_module), never with
     numpy or cupy by name, so that it runs on CuPy arrays and on a test device's arrays alike;
  2. hands the kernel C-contiguous arrays of the kernel's element type: an (N, C, ...) map in the
     nearer of its two layouts (a copy only where it is in neither), the kernel told which by the
     element strides sn, sc between images and channels, or given the map as N*C planes;
  3. launches it: BLOCK threads per block, one block per channel (batch norm's sums) or enough
     blocks for one thread per element, at most MAX_GRID per grid axis (the kernels' grid-stride
     loops cover the rest), with every scalar a NumPy scalar of its parameter's C type (np.int32
     for int, np.int64 for long long, np.bool_ for bool, the element type for T).
Only float32 and float64 have kernels; any other dtype is a one-line TypeError.
"""
import math

import numpy as np

from .. import kernels
from ..device import array_module, device_of
from ..kernels._geometry import out_hw
from ..kernels._layout import is_channel_major
from ..kernels.cuda import C_TYPES
from ..kernels.im2col import _col_array

__all__ = ["register"]

BLOCK = 256  # threads per block: a multiple of the warp, as bn_stats' and bn_backward's block sums need
MAX_GRID = 65535  # blocks per grid axis (CUDA's limit on y); more would only queue up behind the first

_devices = {}  # device name -> (load, {family: compiled family})


def register(device, load, max_grid=MAX_GRID, block=BLOCK):
    """Make the wrappers below ``device``'s versions of minires's kernels, launching kernels that
    ``load(family)`` compiles (each family once), with at most ``max_grid`` blocks per grid axis and
    ``block`` threads per block (a multiple of 32). A device that runs a block's threads as OS
    threads, the CPU shim's, wants few of both: the kernels' grid-stride loops then cover the work
    with fewer, longer threads."""
    if block % 32 or not 32 <= block <= 1024:
        raise ValueError(f"register: block must be a multiple of 32 from 32 to 1024, got {block}")
    _devices[device] = (load, {}, max_grid, block)
    for name, wrapper in WRAPPERS.items():
        getattr(kernels, name).register(device)(wrapper)


# ---------------------------------------------------------------- launching

def _launch(a, family, name, grid, args):
    """Launch kernel ``name`` of ``family`` for a's dtype, as compiled for a's device: grid a tuple of
    block counts (none is launched when one is 0: nothing to do), the device's threads per block
    (BLOCK unless registered otherwise: grid-stride loops cover any shortfall)."""
    if a.dtype not in C_TYPES:
        raise TypeError(f"{name}: no CUDA kernel for dtype {a.dtype} (float32 and float64 only)")
    load, families, max_grid, block = _devices[device_of(a).name]
    if family not in families:
        families[family] = load(family)
    if min(grid) > 0:
        families[family].kernel(name, a.dtype)(tuple(min(g, max_grid) for g in grid), (block,), args)


def _threads(a):
    """Threads per block on a's device: BLOCK unless registered otherwise."""
    return _devices[device_of(a).name][3]


def _blocks(count):
    """Blocks of BLOCK threads for one thread per element of ``count``, at most MAX_GRID."""
    return min(-(-count // BLOCK), MAX_GRID)


def _i32(name, *values):
    """values as the kernels' int parameters (np.int32); a one-line error for one that does not fit
    (the kernels index in 32 bits where they can: common.cuh)."""
    for v in values:
        if not -2**31 <= v < 2**31:
            raise ValueError(f"{name}: {v} is past the CUDA kernel's 32-bit index range")
    return tuple(np.int32(v) for v in values)


# ---------------------------------------------------------------- memory layouts

def _canonical(a, cm, dtype=None):
    """(N, C, ...) array a as C-contiguous (C, N, ...) memory if cm, else (N, C, ...) memory, in
    ``dtype`` (default a's): a itself (a view) where it already is, else a copy."""
    return array_module(a).ascontiguousarray(a.swapaxes(0, 1) if cm else a, dtype=dtype)


def _layout(a):
    """(cm, canonical a): whether a is channel-major (a of fewer than two axes never is) and a in the
    nearer of the two layouts."""
    cm = a.ndim >= 2 and is_channel_major(a)
    return cm, _canonical(a, cm)


def _restore(a, cm):
    """Inverse of _canonical: the (N, C, ...) view of canonical memory a."""
    return a.swapaxes(0, 1) if cm else a


def _strides(cm, n, c, plane):
    """(sn, sc) as np.int64: the element strides between images and between channels of canonical
    (N, C, plane) memory, NCHW or (cm) channel-major."""
    return (np.int64(plane), np.int64(n * plane)) if cm else (np.int64(c * plane), np.int64(plane))


def _planes(a, cm, dtype=None):
    """(N, C, H, W) a as its N*C contiguous (H, W) planes, (c, n) ordered if cm."""
    return _canonical(a, cm, dtype).reshape(-1, *a.shape[2:])


def _from_planes(p, n, c, cm):
    """Inverse of _planes: the (N, C, h, w) view of planes p."""
    return _restore(p.reshape(((c, n) if cm else (n, c)) + p.shape[1:]), cm)


def _check_shape(name, shape, **arrays):
    """A one-line error for an array whose shape is not ``shape``: the kernels would read past it."""
    for what, a in arrays.items():
        if a.shape != tuple(shape):
            raise ValueError(f"{name}: {what} has shape {a.shape}, expected {tuple(shape)}")


# ---------------------------------------------------------------- im2col.cu

def im2col(x, ksize, stride, padding, dilation, out=None, images=None):
    """x (N, C, H, W), NCHW or channel-major -> col (C*kh*kw, n*Ho*Wo), C-contiguous, into ``out`` if
    given; images=(n0, n1): of those images only (read in place, from image n0's first element).
    Launch: grid (col's columns / BLOCK, col's rows), a thread per col element."""
    n, c, h, w = x.shape
    n0, n1 = (0, n) if images is None else images
    cm, xc = _layout(x)
    sn, sc = _strides(cm, n, c, h * w)
    (kh, kw), ohw = ksize, out_hw((h, w), ksize, stride, padding, dilation)
    col = _col_array(x, n1 - n0, ksize, ohw, out).reshape(c * kh * kw, -1)  # the reference's checks of out
    _i32("im2col", *col.shape)  # the kernel counts rows and columns in int
    _launch(x, "im2col", "im2col", (_blocks(col.shape[1]), min(col.shape[0], MAX_GRID)),
            (xc.reshape(-1)[n0 * sn:], col, *_i32("im2col", n1 - n0, c, h, w), sn, sc,
             *_i32("im2col", *ksize, *stride, *padding, *dilation, *ohw)))
    return col


def col2im(col, x_shape, ksize, stride, padding, dilation):
    """col (C*kh*kw, N*Ho*Wo) -> gx (N, C, H, W) in channel-major memory, as the reference: each input
    element the sum of the col entries that read it, gathered (no atomics).
    Launch: grid (H*W / BLOCK, N*C planes), a thread per gx element."""
    n, c, h, w = x_shape
    (kh, kw), ohw = ksize, out_hw((h, w), ksize, stride, padding, dilation)
    xp = array_module(col)
    col = xp.ascontiguousarray(col.reshape(c * kh * kw, n * ohw[0] * ohw[1]))
    _i32("col2im", *col.shape, n * c, h * w)  # the kernel's counts in int
    gx = xp.empty((c, n, h, w), col.dtype)
    _launch(col, "im2col", "col2im", (_blocks(h * w), min(n * c, MAX_GRID)),
            (col, gx, *_i32("col2im", n, c, h, w), *_strides(True, n, c, h * w),
             *_i32("col2im", *ksize, *stride, *padding, *dilation, *ohw)))
    return gx.transpose(1, 0, 2, 3)


# ---------------------------------------------------------------- conv_implicit.cu

TILE_N, MICRO = 64, 4  # conv_implicit.cu's CONV_TILE_N (positions per tile) and CONV_MICRO


def conv_implicit(x, w, stride, padding, dilation, groups):
    """x (N, C, H, W), NCHW or channel-major, and w (Cout, C/groups, kh, kw) -> y (Cout, N, Ho, Wo),
    C-contiguous (channel-major): the convolution without bias, as im2col + GEMM, with no col.
    Launch: grid (position tiles of TILE_N, groups x channel tiles of threads / 16 * MICRO)."""
    n, c, h, wd = x.shape
    cout, _, kh, kw = w.shape
    cm, xc = _layout(x)
    ho, wo = out_hw((h, wd), (kh, kw), stride, padding, dilation)
    xp = array_module(x)
    y = xp.empty((cout, n, ho, wo), x.dtype)
    tile_m = _threads(x) // 16 * MICRO
    _i32("conv_implicit", n * ho * wo, c * kh * kw, cout)  # the kernel counts positions and the GEMM depth in int
    _launch(x, "conv_implicit", "conv_implicit",
            (-(-n * ho * wo // TILE_N), groups * -(-(cout // groups) // tile_m)),
            (xc, xp.ascontiguousarray(w, dtype=x.dtype), y, *_i32("conv_implicit", n, c, h, wd),
             *_strides(cm, n, c, h * wd),
             *_i32("conv_implicit", cout, groups, kh, kw, *stride, *padding, *dilation, ho, wo)))
    return y


# ---------------------------------------------------------------- pooling.cu

def _pool_args(name, planes, in_hw, ohw, *geometry):
    """A pooling kernel's scalars after its arrays: P (long long), H, W, Ho, Wo and the geometry pairs
    (int)."""
    _i32(name, in_hw[0] * in_hw[1], ohw[0] * ohw[1])  # a plane's offsets are int
    return (np.int64(planes), *_i32(name, *in_hw, *ohw, *(v for pair in geometry for v in pair)))


def maxpool_forward(x, ksize, stride, padding, dilation, ohw):
    """x (N, C, H, W) -> (y (N, C, Ho, Wo), argmax int32 tap i*kw + j), in x's layout; ties keep the
    first maximum, a NaN wins. Launch: 1-D, a thread per output element."""
    n, c, h, w = x.shape
    cm = is_channel_major(x)
    xp = array_module(x)
    y = xp.empty((n * c, *ohw), x.dtype)
    arg = xp.empty(y.shape, xp.int32)
    _launch(x, "pooling", "maxpool_forward", (_blocks(y.size),),
            (_planes(x, cm), y, arg, *_pool_args("maxpool_forward", n * c, (h, w), ohw, ksize, stride, padding, dilation)))
    return _from_planes(y, n, c, cm), _from_planes(arg, n, c, cm)


def maxpool_backward(gy, argmax, x_shape, ksize, stride, padding, dilation):
    """gy, argmax (N, C, Ho, Wo) -> gx (N, C, H, W) in gy's layout: each gy element added at the input
    element its window's argmax names. Launch: 1-D, a thread per gx element (a gather)."""
    n, c, h, w = x_shape
    _check_shape("maxpool_backward", gy.shape, argmax=argmax)
    cm = is_channel_major(gy)
    gx = array_module(gy).empty((n * c, h, w), gy.dtype)
    _launch(gy, "pooling", "maxpool_backward", (_blocks(gx.size),),
            (_planes(gy, cm), _planes(argmax, cm, np.int32), gx,
             *_pool_args("maxpool_backward", n * c, (h, w), gy.shape[2:], ksize, stride, padding, dilation)))
    return _from_planes(gx, n, c, cm)


def _divisor(like, divisor, ohw):
    """The (Ho, Wo) divisor (anything that broadcasts to it), contiguous, in like's dtype."""
    xp = array_module(like)
    return xp.ascontiguousarray(xp.broadcast_to(xp.asarray(divisor, dtype=like.dtype), tuple(ohw)))


def avgpool_forward(x, ksize, stride, padding, ohw, divisor):
    """x (N, C, H, W) -> y (N, C, Ho, Wo) in x's layout: window sums / divisor (Ho, Wo).
    Launch: 1-D, a thread per output element."""
    n, c, h, w = x.shape
    cm = is_channel_major(x)
    y = array_module(x).empty((n * c, *ohw), x.dtype)
    _launch(x, "pooling", "avgpool_forward", (_blocks(y.size),),
            (_planes(x, cm), _divisor(x, divisor, ohw), y,
             *_pool_args("avgpool_forward", n * c, (h, w), ohw, ksize, stride, padding)))
    return _from_planes(y, n, c, cm)


def avgpool_backward(gy, x_shape, ksize, stride, padding, divisor):
    """gy (N, C, Ho, Wo) -> gx (N, C, H, W) in gy's layout: gy / divisor spread over each window.
    Launch: 1-D, a thread per gx element (a gather)."""
    n, c, h, w = x_shape
    cm = is_channel_major(gy)
    gx = array_module(gy).empty((n * c, h, w), gy.dtype)
    _launch(gy, "pooling", "avgpool_backward", (_blocks(gx.size),),
            (_planes(gy, cm), _divisor(gy, divisor, gy.shape[2:]), gx,
             *_pool_args("avgpool_backward", n * c, (h, w), gy.shape[2:], ksize, stride, padding)))
    return _from_planes(gx, n, c, cm)


# ---------------------------------------------------------------- batchnorm.cu

def _vector(like, v, fill=None):
    """Per-channel vector v (C,) contiguous in like's dtype; ``fill`` everywhere when v is None (the
    kernels take an affine-free norm's weight and bias as ones and zeros)."""
    xp = array_module(like)
    if v is None:
        return xp.full(like.shape[1], fill, like.dtype)
    return xp.ascontiguousarray(v, dtype=like.dtype)


def _bn_stats(x, eps):
    """(3, C): mean, biased var and 1 / sqrt(var + eps) of x (N, C, L), in x's dtype.
    Launch: a block per channel, its threads summing the channel's N*L values."""
    n, c, length = x.shape
    cm, xc = _layout(x)
    stats = array_module(x).empty((3, c), x.dtype)
    _i32("bn_stats", n * length)  # the kernel counts a channel's values in int
    _launch(x, "batchnorm", "bn_stats", (min(c, MAX_GRID),),
            (xc, stats, *_i32("bn_stats", n, c, length), *_strides(cm, n, c, length), x.dtype.type(eps)))
    return stats


def bn_stats(x):
    """x (N, C, L) -> (mean, biased var), each (C,), in x's dtype (sums in float64, two passes)."""
    mean, var, _ = _bn_stats(x, 0.0)
    return mean, var


def bn_forward(x, mean, invstd, weight, bias, relu=False, residual=None):
    """x (N, C, L) -> y = x * scale + shift (scale = weight * invstd, shift = bias - mean * scale),
    plus residual (x's shape) if given, then max(y, 0) if relu; y in x's layout.
    Launch: 1-D over the elements in memory order, a thread each."""
    n, c, length = x.shape
    cm, xc = _layout(x)
    if residual is not None:
        _check_shape("bn_forward", x.shape, residual=residual)
    y = array_module(x).empty_like(xc)
    _launch(x, "batchnorm", "bn_forward", (_blocks(y.size),),
            (xc, _vector(x, mean), _vector(x, invstd), _vector(x, weight, 1), _vector(x, bias, 0),
             xc if residual is None else _canonical(residual, cm, x.dtype),  # unread without a residual
             y, np.int64(y.size), *_i32("bn_forward", c), _strides(cm, n, c, length)[1],
             np.bool_(residual is not None), np.bool_(relu)))
    return _restore(y, cm)


def bn_train_forward(x, weight, bias, eps, relu=False, residual=None):
    """bn_stats (with invstd = 1 / sqrt(var + eps)) then bn_forward: -> (y, mean, var, invstd)."""
    mean, var, invstd = _bn_stats(x, eps)
    return bn_forward(x, mean, invstd, weight, bias, relu, residual), mean, var, invstd


def bn_backward(gy, x, mean, invstd, weight, training, bias=None, relu=False):
    """gy, x (N, C, L) -> (gx in gy's layout, gweight (C,), gbias (C,)); relu: through the fused ReLU
    of bn_forward(relu=True), its mask recomputed from x. Launch: a block per channel, a pass for its
    two sums, then a pass writing its gx."""
    n, c, length = gy.shape
    _check_shape("bn_backward", gy.shape, x=x)
    cm, g = _layout(gy)
    xp = array_module(gy)
    gx, gweight, gbias = xp.empty_like(g), xp.empty(c, gy.dtype), xp.empty(c, gy.dtype)
    _i32("bn_backward", n * length)  # the kernel counts a channel's values in int
    _launch(gy, "batchnorm", "bn_backward", (min(c, MAX_GRID),),
            (g, _canonical(x, cm, gy.dtype), _vector(gy, mean), _vector(gy, invstd), _vector(gy, weight, 1),
             _vector(gy, bias, 0), gx, gweight, gbias, *_i32("bn_backward", n, c, length),
             *_strides(cm, n, c, length), np.bool_(training), np.bool_(relu)))
    return _restore(gx, cm), gweight, gbias


# ---------------------------------------------------------------- elementwise.cu

def _flat_pair(name, a, b, layout_of):
    """Kernel ``name`` (a, b, result, n) over a and b flattened in the memory layout of ``layout_of``
    (one of them): the result, of a's shape and dtype, in that layout. Launch: 1-D, a thread per
    element."""
    if a.shape != b.shape:
        raise ValueError(f"{name}: the arguments' shapes {a.shape} and {b.shape} differ")
    cm = layout_of.ndim >= 2 and is_channel_major(layout_of)
    ac, bc = _canonical(a, cm), _canonical(b, cm, a.dtype)
    result = array_module(a).empty_like(ac)
    _launch(a, "elementwise", name, (_blocks(result.size),), (ac, bc, result, np.int64(result.size)))
    return _restore(result, cm).reshape(a.shape)  # reshape: a 0-d array comes back 1-d from ascontiguousarray


def add_relu(a, b):
    """a, b of one shape -> max(a + b, 0) (NaN kept), in a's layout."""
    return _flat_pair("add_relu", a, b, layout_of=a)


def relu_backward(g, out):
    """g where the ReLU's output ``out`` > 0, else 0, in out's layout."""
    return _flat_pair("relu_backward", g, out, layout_of=out)


# ---------------------------------------------------------------- optim.cu

def _writable(a, dtype):
    """a itself where a kernel can update it in place (C-contiguous, of ``dtype``), else a copy that is."""
    if a.flags.c_contiguous and a.dtype == dtype:
        return a
    return array_module(a).ascontiguousarray(a, dtype=dtype)


def sgd_update(p, grad, buf, lr, momentum, dampening, weight_decay, nesterov, first):
    """One SGD step in place on p and the momentum buffer buf (None without momentum), as the
    reference. Arrays that are not C-contiguous are updated through contiguous copies, copied back.
    Launch: 1-D, a thread per element."""
    if momentum and buf is None:
        raise ValueError("sgd_update: momentum needs a buffer (buf is None)")
    _check_shape("sgd_update", p.shape, grad=grad, **({} if buf is None else {"buf": buf}))
    t = p.dtype.type
    pc = _writable(p, p.dtype)
    bc = pc if buf is None else _writable(buf, p.dtype)  # unread without momentum
    _launch(p, "optim", "sgd_update", (_blocks(p.size),),
            (pc, array_module(p).ascontiguousarray(grad, dtype=p.dtype), bc, np.int64(p.size), t(lr), t(momentum),
             t(1 - dampening), t(weight_decay), np.bool_(nesterov), np.bool_(first)))
    for array, updated in ((p, pc), (buf, bc)):
        if array is not None and updated is not array:
            array[...] = updated


def adamw_update(p, grad, m, v, vmax, lr, beta1, beta2, eps, weight_decay, t):
    """One AdamW step in place on p and its state m, v (and vmax with amsgrad, else None), as the
    reference. Arrays that are not C-contiguous are updated through contiguous copies, copied back.
    Launch: 1-D, a thread per element."""
    _check_shape("adamw_update", p.shape, grad=grad, m=m, v=v, **({} if vmax is None else {"vmax": vmax}))
    c = p.dtype.type
    pc, mc, vc = (_writable(a, p.dtype) for a in (p, m, v))
    wc = vc if vmax is None else _writable(vmax, p.dtype)  # unread without amsgrad
    _launch(p, "optim", "adamw_update", (_blocks(p.size),),
            (pc, array_module(p).ascontiguousarray(grad, dtype=p.dtype), mc, vc, wc, np.int64(p.size),
             c(1 - lr * weight_decay), c(beta1), c(1 - beta1), c(beta2), c(1 - beta2), c(lr / (1 - beta1 ** t)),
             c(math.sqrt(1 - beta2 ** t)), c(eps), np.bool_(vmax is not None)))
    for array, updated in ((p, pc), (m, mc), (v, vc), (vmax, wc)):
        if array is not None and updated is not array:
            array[...] = updated


WRAPPERS = {f.__name__: f for f in (
    im2col, col2im, maxpool_forward, maxpool_backward, avgpool_forward, avgpool_backward,
    bn_stats, bn_forward, bn_train_forward, bn_backward, add_relu, relu_backward, sgd_update, adamw_update)}
