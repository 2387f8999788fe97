"""Winograd F(4x4, 3x3): a stride-1 3x3 convolution with 4x fewer multiplications than im2col + GEMM,
traded for cheap linear transforms of its input and output (Lavin and Gray, 2016; points 0, +-1,
+-2, inf).

The output is cut into 4x4 tiles; each reads a 6x6 input tile d (neighbours overlap by 2 pixels) and
    y_tile = A^T [ sum over c of (G g G^T) * (B^T d B) ] A        (* elementwise, 6x6)
For a whole layer the sum over input channels of the 36 elementwise products is 36 GEMMs:
    U = winograd_weights(weight)    (6, 6, Cout, C)     U[a, b] = (G g G^T)[a, b] per (k, c)
    V = winograd_input(x)           (6, 6, C, slots)    V[a, b] = (B^T d B)[a, b] per (c, tile)
    M[a, b] = U[a, b] @ V[a, b]     (6, 6, Cout, slots) one batched matmul (kernels/gemm.py)
    y = winograd_output(M)          (Cout, N, Ho, Wo)   A^T M A per tile, cropped to the map
th = ceil(Ho/4) rows of tw = ceil(Wo/4) tiles per image, stored in slots = th*tw*N, in (ty, tx, n)
order: tile (ty, tx) of every image side by side, so that the tiles of a channel are one long run
that the Numba transforms vectorize over (a row of tw tiles, or one small image's tiles, is too
short to fill the CPU's vector registers), and a tile's neighbour to the right is N slots on. No
slot is spare: the GEMMs' columns are the tiles. The transforms move about 2.25x the input and
output (im2col writes 9x the input), and the GEMMs do 36 multiply-adds per 16 outputs where
im2col's do 9 per output: 4x fewer, less the tiles' part outside the map. Rounding: the
transforms' constants (1/6, 1/24, ...) make float32 results differ from a direct convolution by
about 1e-6 of their magnitude (1e-15 in float64), against about 1e-7 for im2col + GEMM.
"""
import numpy as np
from numba import int64, njit, uint64

from ._dispatch import kernel
from .gemm import batched_matmul
from ._geometry import pad, valid_range
from ._layout import canonical, is_channel_major
from ._parallel import chunk_count, chunk_range, parallel_chunks
from ._scratch import scratch
from ..device import array_module

__all__ = ["winograd_conv3x3", "winograd_weight_grad", "winograd_weights", "winograd_input", "winograd_output",
           "winograd_grad_output", "winograd_grad_weights", "winograd_tiles", "winograd_slots"]

# y = A^T m A,  V = B^T d B,  U = G g G^T
AT = np.array([[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]], np.float64)
BT = np.array([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
               [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]], np.float64)
G = np.array([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
              [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]], np.float64)


def _out_hw(hw, padding):
    """(Ho, Wo) of a stride-1 3x3 convolution of (H, W) maps."""
    return hw[0] + 2 * padding[0] - 2, hw[1] + 2 * padding[1] - 2


def winograd_tiles(ohw):
    """(th, tw): the 4x4 output tiles covering an (Ho, Wo) map."""
    return -(-ohw[0] // 4), -(-ohw[1] // 4)


def winograd_slots(ohw):
    """Tile slots per image, th * tw (see the module's docstring: slots are in (ty, tx, n) order)."""
    th, tw = winograd_tiles(ohw)
    return th * tw


def _check(name, out, shape, dtype):
    if out.shape != shape or out.dtype != dtype or not out.flags.c_contiguous:
        raise ValueError(f"{name}: out must be a C-contiguous {dtype} array of shape {shape}, "
                         f"got {out.dtype} {out.shape}")
    return out


@kernel
def winograd_weights(w, out):
    """w (Cout, C, 3, 3) -> out (6, 6, Cout, C): U = G w G^T per filter."""
    xp = array_module(w)
    _check("winograd_weights", out, (6, 6, *w.shape[:2]), w.dtype)
    g = xp.asarray(G, dtype=w.dtype)
    out[...] = xp.einsum("ai,kcij,bj->abkc", g, w, g, optimize=True)
    return out


@kernel
def winograd_input(x, padding, out):
    """x (N, C, H, W), any strides -> out (6, 6, C, th*tw*N): V = B^T d B per 6x6 tile d of the
    zero-padded input, the tile of output tile (ty, tx) starting at row 4*ty, column 4*tx."""
    xp = array_module(x)
    n, c, h, w = x.shape
    ohw = _out_hw((h, w), padding)
    (th, tw), slots = winograd_tiles(ohw), winograd_slots(ohw)
    _check("winograd_input", out, (6, 6, c, n * slots), x.dtype)
    xpad = xp.zeros((c, n, 4 * th + 2, 4 * tw + 2), x.dtype)
    xpad[:, :, :h + 2 * padding[0], :w + 2 * padding[1]] = pad(xp, x, padding).transpose(1, 0, 2, 3)
    d = xp.stack([xp.stack([xpad[:, :, i:i + 4 * th:4, j:j + 4 * tw:4] for j in range(6)]) for i in range(6)])
    bt = xp.asarray(BT, dtype=x.dtype)
    out[...] = xp.einsum("ai,bj,ijcnyx->abcyxn", bt, bt, d, optimize=True).reshape(out.shape)
    return out


@kernel
def winograd_output(m, out):
    """m (6, 6, Cout, th*tw*N) -> out (Cout, N, Ho, Wo), C-contiguous: A^T m A per tile, the tiles
    cropped to the map."""
    xp = array_module(m)
    k, n, ho, wo = out.shape
    th, tw = winograd_tiles((ho, wo))
    _check("winograd_output", m, (6, 6, k, n * winograd_slots((ho, wo))), out.dtype)
    at = xp.asarray(AT, dtype=m.dtype)
    y = xp.einsum("ai,bj,ijkyxn->knyaxb", at, at, m.reshape(6, 6, k, th, tw, n), optimize=True)
    out[...] = y.reshape(k, n, 4 * th, 4 * tw)[:, :, :ho, :wo]
    return out


@kernel
def winograd_grad_output(gy, out):
    """gy (N, K, Ho, Wo), any strides -> out (6, 6, K, th*tw*N): GY = A gy A^T per 4x4 tile of gy (zero
    beyond the map), the adjoint of winograd_output."""
    xp = array_module(gy)
    n, k, ho, wo = gy.shape
    th, tw = winograd_tiles((ho, wo))
    _check("winograd_grad_output", out, (6, 6, k, n * winograd_slots((ho, wo))), gy.dtype)
    gpad = xp.zeros((k, n, 4 * th, 4 * tw), gy.dtype)
    gpad[:, :, :ho, :wo] = gy.transpose(1, 0, 2, 3)
    tiles = gpad.reshape(k, n, th, 4, tw, 4)
    at = xp.asarray(AT, dtype=gy.dtype)
    out[...] = xp.einsum("ia,jb,knyixj->abkyxn", at, at, tiles, optimize=True).reshape(out.shape)
    return out


@kernel
def winograd_grad_weights(du, out):
    """du (6, 6, K, C) -> out (K, C, 3, 3): G^T du G per (k, c), the adjoint of winograd_weights."""
    xp = array_module(du)
    _check("winograd_grad_weights", out, (*du.shape[2:], 3, 3), du.dtype)
    g = xp.asarray(G, dtype=du.dtype)
    out[...] = xp.einsum("ai,abkc,bj->kcij", g, du, g, optimize=True)
    return out


# Numba versions. The input and output transforms work on whole channels over the batch, runs of
# them in parallel, and vectorize across the channel's tiles: each arithmetic loop computes one row
# of a transform over six (or four) unit-stride runs and stores one run (with more stores per loop,
# LLVM's alias checks give up on vectorizing it). Those rows are written out (_bt_rows, _at_rows,
# _a_rows) rather than taken as dot products with the matrices: B^T, A^T and A are half zeros and
# +-1, and the rows share sums such as d1 + d2, so a row costs 3-5 operations, not 11 (LLVM may not
# drop a product by a zero it does not know of, and with a NaN or inf in the data it must not). The
# helpers are called, not inlined: a call works on whole runs, so it costs nothing measurable, and
# each helper is compiled once rather than into each of the three kernels, which shortens their
# compile into an empty cache. Figures for both: benchmarks/RESULTS.md (the fourth session's
# "Winograd transforms without their zero terms"). The weight transforms keep the dot products: G is
# dense, and they are small. Runs are indexed with unsigned integers (see im2col); constants come in
# the data's dtype (float32 * a float64 constant is computed in float64). Integer constants passed to
# the helpers are wrapped in int64(): Numba compiles a callee once per distinct literal argument, and
# bare 0, 1 and 6 at two call sites compiled each helper twice into an empty cache.

@njit(inline="always")
def _dot6(c, r0, r1, r2, r3, r4, r5):
    return c[0] * r0 + c[1] * r1 + c[2] * r2 + c[3] * r3 + c[4] * r4 + c[5] * r5


@njit(cache=True)
def _bt_rows(dst, e, de, dc, od, src, sc, r, o, n):
    """dst[e + a*de, dc, od + f] = (B^T d)[a] for a < 6, f < n, where d[i] = src[r[i], sc, o[i] + f]. dst
    and src are C-contiguous 3-D arrays, so that LLVM knows the runs are unit-stride (a 2-D view of
    one channel would not tell it, and ran scalar)."""
    t = dst.dtype.type
    k2, k4, k5 = t(2), t(4), t(5)
    r0, r1, r2, r3, r4, r5 = r
    o0, o1, o2, o3, o4, o5 = o
    for f in range(n):
        dst[e, dc, od + f] = k4 * src[r0, sc, o0 + f] - k5 * src[r2, sc, o2 + f] + src[r4, sc, o4 + f]
    for f in range(n):
        dst[e + de, dc, od + f] = ((src[r3, sc, o3 + f] + src[r4, sc, o4 + f])
                                   - k4 * (src[r1, sc, o1 + f] + src[r2, sc, o2 + f]))
    for f in range(n):
        dst[e + 2 * de, dc, od + f] = ((src[r4, sc, o4 + f] - src[r3, sc, o3 + f])
                                       + k4 * (src[r1, sc, o1 + f] - src[r2, sc, o2 + f]))
    for f in range(n):
        dst[e + 3 * de, dc, od + f] = ((src[r4, sc, o4 + f] - src[r2, sc, o2 + f])
                                       + k2 * (src[r3, sc, o3 + f] - src[r1, sc, o1 + f]))
    for f in range(n):
        dst[e + 4 * de, dc, od + f] = ((src[r4, sc, o4 + f] - src[r2, sc, o2 + f])
                                       + k2 * (src[r1, sc, o1 + f] - src[r3, sc, o3 + f]))
    for f in range(n):
        dst[e + 5 * de, dc, od + f] = k4 * src[r1, sc, o1 + f] - k5 * src[r3, sc, o3 + f] + src[r5, sc, o5 + f]


@njit(cache=True)
def _at_rows(dst, e, de, dc, src, sc, r, n):
    """dst[e + i*de, dc, f] = (A^T m)[i] for i < 4, f < n, where m[a] = src[r[a], sc, f] (as _bt_rows)."""
    t = dst.dtype.type
    k2, k4, k8 = t(2), t(4), t(8)
    r0, r1, r2, r3, r4, r5 = r
    for f in range(n):
        dst[e, dc, f] = (src[r0, sc, f] + (src[r1, sc, f] + src[r2, sc, f])) + (src[r3, sc, f] + src[r4, sc, f])
    for f in range(n):
        dst[e + de, dc, f] = (src[r1, sc, f] - src[r2, sc, f]) + k2 * (src[r3, sc, f] - src[r4, sc, f])
    for f in range(n):
        dst[e + 2 * de, dc, f] = (src[r1, sc, f] + src[r2, sc, f]) + k4 * (src[r3, sc, f] + src[r4, sc, f])
    for f in range(n):
        dst[e + 3 * de, dc, f] = ((src[r1, sc, f] - src[r2, sc, f]) + k8 * (src[r3, sc, f] - src[r4, sc, f])
                                  + src[r5, sc, f])


@njit(cache=True)
def _a_rows(dst, e, de, dc, src, sc, r, n):
    """dst[e + a*de, dc, f] = (A g)[a] for a < 6, f < n, where g[i] = src[r[i], sc, f] (A = (A^T)^T, 6x4; as
    _bt_rows)."""
    t = dst.dtype.type
    k2, k4, k8 = t(2), t(4), t(8)
    r0, r1, r2, r3 = r
    for f in range(n):
        dst[e, dc, f] = src[r0, sc, f]
    for f in range(n):
        dst[e + de, dc, f] = (src[r0, sc, f] + src[r2, sc, f]) + (src[r1, sc, f] + src[r3, sc, f])
    for f in range(n):
        dst[e + 2 * de, dc, f] = (src[r0, sc, f] + src[r2, sc, f]) - (src[r1, sc, f] + src[r3, sc, f])
    for f in range(n):
        dst[e + 3 * de, dc, f] = (src[r0, sc, f] + k4 * src[r2, sc, f]) + (k2 * src[r1, sc, f] + k8 * src[r3, sc, f])
    for f in range(n):
        dst[e + 4 * de, dc, f] = (src[r0, sc, f] + k4 * src[r2, sc, f]) - (k2 * src[r1, sc, f] + k8 * src[r3, sc, f])
    for f in range(n):
        dst[e + 5 * de, dc, f] = src[r3, sc, f]


@winograd_weights.register("numba")
def _winograd_weights_numba(w, out):
    _check("winograd_weights", out, (6, 6, *w.shape[:2]), w.dtype)
    parallel_chunks(_weights_chunk, chunk_count(w.shape[0]), np.ascontiguousarray(w.transpose(0, 2, 3, 1)),
                    G.astype(w.dtype), out)
    return out


@njit(cache=True, error_model="numpy")
def _weights_chunk(w, g, u, chunk, chunks):
    """w (K, 3, 3, C) (channels last, so that each filter tap is a unit-stride run over C), g = G
    -> u (6, 6, K, C), for this chunk's filters: G w down the columns into gw[a, j], then along the
    rows. Loops: filters k > transform rows > c. The row loops run to G's shape, not to the constants
    6 and 3: LLVM unrolls constant loops around the vectorized c loop into dozens of copies, which
    multiplied the kernel's compile time into an empty cache for no speed (see benchmarks/RESULTS.md)."""
    k_out, c_in = w.shape[0], w.shape[3]
    rows, taps = g.shape
    gw = np.empty((rows, taps, c_in), w.dtype)
    for k in range(*chunk_range(k_out, chunk, chunks)):
        for a in range(rows):
            g0, g1, g2 = g[a, 0], g[a, 1], g[a, 2]
            for j in range(taps):
                for c in range(uint64(c_in)):
                    gw[a, j, c] = g0 * w[k, 0, j, c] + g1 * w[k, 1, j, c] + g2 * w[k, 2, j, c]
        for a in range(rows):
            for b in range(rows):
                g0, g1, g2 = g[b, 0], g[b, 1], g[b, 2]
                for c in range(uint64(c_in)):
                    u[a, b, k, c] = g0 * gw[a, 0, c] + g1 * gw[a, 1, c] + g2 * gw[a, 2, c]


@winograd_grad_weights.register("numba")
def _winograd_grad_weights_numba(du, out):
    _check("winograd_grad_weights", out, (*du.shape[2:], 3, 3), du.dtype)
    parallel_chunks(_grad_weights_chunk, chunk_count(du.shape[2]), np.ascontiguousarray(du),
                    np.ascontiguousarray(G.T, dtype=du.dtype), out.reshape(out.shape[0], -1))
    return out


@njit(cache=True, error_model="numpy")
def _grad_weights_chunk(du, gt, out, chunk, chunks):
    """du (6, 6, K, C), gt = G^T (3, 6) -> out (K, C*9), for this chunk's filters: G^T down the
    columns into t[3*i + b], then along the rows into s[3*i + j] (9, C), each a unit-stride run over
    c; then s's columns are the filters' 9 taps, stored in (c, tap) order. Loops: filters k > rows > c.
    At 256 and 512 channels the reference's einsum is a large part of the weight's gradient, hence
    this kernel (see benchmarks/RESULTS.md)."""
    k_out, c_in = du.shape[2], du.shape[3]
    t, s = np.empty((18, c_in), du.dtype), np.empty((9, c_in), du.dtype)
    for k in range(*chunk_range(k_out, chunk, chunks)):
        for e in range(18):
            c_, b = gt[e // 6], e % 6
            for c in range(uint64(c_in)):
                t[e, c] = _dot6(c_, du[0, b, k, c], du[1, b, k, c], du[2, b, k, c], du[3, b, k, c],
                                du[4, b, k, c], du[5, b, k, c])
        for e in range(9):
            c_, i6 = gt[e % 3], e // 3 * 6
            for c in range(uint64(c_in)):
                s[e, c] = _dot6(c_, t[i6, c], t[i6 + 1, c], t[i6 + 2, c], t[i6 + 3, c], t[i6 + 4, c], t[i6 + 5, c])
        for c in range(c_in):
            for e in range(9):
                out[k, 9 * c + e] = s[e, c]


@winograd_input.register("numba")
def _winograd_input_numba(x, padding, out):
    n, c = x.shape[:2]
    ohw = _out_hw(x.shape[2:], padding)
    _check("winograd_input", out, (6, 6, c, n * winograd_slots(ohw)), x.dtype)
    cm = is_channel_major(x)
    parallel_chunks(_input_chunk, chunk_count(c), canonical(x, cm), cm, out.reshape(36, c, -1), winograd_tiles(ohw)[0],
                    *padding)
    return out


@njit(cache=True, error_model="numpy")
def _input_chunk(x, cm, v, th, ph, pw, chunk, chunks):
    """x (C, N, H, W) if cm else (N, C, H, W), C-contiguous -> v (36, C, th*tw*N), for this chunk's
    channels. Per channel: its zero-padded planes are split by row and column phase (mod 4) into
    rows q[4*ri + rj], element (4*Y + ri, 4*X + rj) of image n at q[4*ri + rj, (Y*(tw + 1) + X)*N + n]
    (one block of 4 more per row and column than there are tiles: a tile's last two rows and columns
    are the next block's first two), so that element (i, j) of row ty's tiles is one unit-stride
    run: tile (ty, tx, n) reads q[4*(i % 4) + j % 4, ((ty + i // 4)*(tw + 1) + tx + j // 4)*N + n].
    Then B^T down the tiles' columns into s[6*a + j], a row of tiles at a time, and B along their
    rows into v[6*a + b], the whole channel at once. Every channel writes the same elements of q, so
    its zeros (the padding) are made once per chunk."""
    c_in, slots = v.shape[1:]
    nb, h, w = (x.shape[1], x.shape[2], x.shape[3]) if cm else (x.shape[0], x.shape[2], x.shape[3])
    run = slots // th  # tw*N: a row of tiles
    qrow = run + nb  # (tw + 1)*N: a row of blocks in q
    ns, nr, z, step = uint64(slots), uint64(run), uint64(0), uint64(nb)
    q, s = np.zeros((16, 1, (th + 1) * qrow), x.dtype), np.empty((36, 1, slots), x.dtype)
    first, count = np.empty(4, np.int64), np.empty(4, np.uint64)  # column phase rj: its blocks inside the map
    for rj in range(4):
        b0, b1 = valid_range(rj - pw, 4, w, run // nb + 1)
        first[rj], count[rj] = b0, b1 - b0
    for c in range(*chunk_range(c_in, chunk, chunks)):
        for n in range(nb):
            src = x[c, n] if cm else x[n, c]
            for yy in range(ph, ph + h):  # the padded rows that hold the image's
                row = src[yy - ph]
                for rj in range(4):
                    b0 = first[rj]
                    o, r = q[yy % 4 * 4 + rj, 0, yy // 4 * qrow + b0 * nb + n:], row[4 * b0 + rj - pw:]
                    for b in range(count[rj]):
                        o[b * step] = r[4 * b]
        for ty in range(th):  # s[6*a + j] = (B^T d)[a], d: column j of row ty's tiles
            for j in range(6):
                rj, o0 = j % 4, uint64(ty * qrow + j // 4 * nb)
                o1 = o0 + uint64(qrow)
                _bt_rows(s, j, int64(6), int64(0), uint64(ty * run), q, int64(0),
                         (rj, 4 + rj, 8 + rj, 12 + rj, rj, 4 + rj), (o0, o0, o0, o0, o1, o1), nr)
        for a6 in range(0, 36, 6):  # v[a6 + b] = (B^T s_a)[b], s_a: the six rows s[a6:a6 + 6]
            _bt_rows(v, a6, int64(1), c, z, s, int64(0), (a6, a6 + 1, a6 + 2, a6 + 3, a6 + 4, a6 + 5),
                     (z, z, z, z, z, z), ns)


@winograd_output.register("numba")
def _winograd_output_numba(m, out):
    k, n, ho, wo = out.shape
    _check("winograd_output", m, (6, 6, k, n * winograd_slots((ho, wo))), out.dtype)
    parallel_chunks(_output_chunk, chunk_count(k), m.reshape(36, k, -1), out, winograd_tiles((ho, wo))[0])
    return out


@njit(cache=True, error_model="numpy")
def _output_chunk(m, y, th, chunk, chunks):
    """m (36, K, th*tw*N) -> y (K, N, Ho, Wo), for this chunk's output channels. Per channel: A^T down
    the tiles' columns into r[6*i + b], A along their rows into t[4*i + j], then each output row
    gathers its four column phases (tile (ty, tx, n) at slot (ty*tw + tx)*N + n)."""
    k_out, slots = m.shape[1:]
    nb, ho, wo = y.shape[1:]
    run = slots // th  # tw*N: a row of tiles
    ns, step = uint64(slots), uint64(nb)
    r, t = np.empty((24, 1, slots), m.dtype), np.empty((16, 1, slots), m.dtype)
    for k in range(*chunk_range(k_out, chunk, chunks)):
        for b in range(6):  # r[6*i + b] = (A^T m)[i] down column b of the tiles
            _at_rows(r, b, int64(6), int64(0), m, k, (b, 6 + b, 12 + b, 18 + b, 24 + b, 30 + b), ns)
        for i in range(4):  # t[4*i + j] = (A^T r_i)[j], r_i: the six rows r[6*i:6*i + 6]
            i6 = 6 * i
            _at_rows(t, 4 * i, int64(1), int64(0), r, int64(0), (i6, i6 + 1, i6 + 2, i6 + 3, i6 + 4, i6 + 5), ns)
        for n in range(nb):
            for yy in range(ho):
                dst, t0 = y[k, n, yy], uint64(yy // 4 * run + n)
                for j in range(4):
                    src, o = t[yy % 4 * 4 + j, 0], dst[j:]
                    for tx in range(uint64((wo - j + 3) // 4)):
                        o[4 * tx] = src[t0 + tx * step]


@winograd_grad_output.register("numba")
def _winograd_grad_output_numba(gy, out):
    n, k, ho, wo = gy.shape
    _check("winograd_grad_output", out, (6, 6, k, n * winograd_slots((ho, wo))), gy.dtype)
    cm = is_channel_major(gy)
    parallel_chunks(_grad_output_chunk, chunk_count(k), canonical(gy, cm), cm, out.reshape(36, k, -1),
                    winograd_tiles((ho, wo))[0])
    return out


@njit(cache=True, error_model="numpy")
def _grad_output_chunk(g, cm, out, th, chunk, chunks):
    """g (K, N, Ho, Wo) if cm else (N, K, Ho, Wo), C-contiguous -> out (36, K, th*tw*N), for this
    chunk's channels. Per channel: split by row and column phase into q[4*i + j] (tile (ty, tx, n) at
    slot (ty*tw + tx)*N + n; zero beyond the map, made once per chunk, as every channel writes the
    same elements), A down the tiles' columns into r[4*a + j], A^T along their rows into out[6*a + b]."""
    k_out, slots = out.shape[1:]
    nb, ho, wo = (g.shape[1], g.shape[2], g.shape[3]) if cm else (g.shape[0], g.shape[2], g.shape[3])
    run = slots // th  # tw*N: a row of tiles
    ns, step = uint64(slots), uint64(nb)
    q, r = np.zeros((16, 1, slots), g.dtype), np.empty((24, 1, slots), g.dtype)
    for k in range(*chunk_range(k_out, chunk, chunks)):
        for n in range(nb):
            src = g[k, n] if cm else g[n, k]
            for yy in range(ho):
                for j in range(4):
                    o, rw = q[yy % 4 * 4 + j, 0, yy // 4 * run + n:], src[yy, j:]
                    for tx in range(uint64((wo - j + 3) // 4)):
                        o[tx * step] = rw[4 * tx]
        for j in range(4):  # r[4*a + j] = (A g)[a] down column j of the tiles
            _a_rows(r, j, int64(4), int64(0), q, int64(0), (j, 4 + j, 8 + j, 12 + j), ns)
        for a in range(6):  # out[6*a + b] = (A r_a)[b], r_a: the four rows r[4*a:4*a + 4]
            _a_rows(out, 6 * a, int64(1), k, r, int64(0), (4 * a, 4 * a + 1, 4 * a + 2, 4 * a + 3), ns)


def winograd_conv3x3(x, weight, padding, out, v=None, swapped=False):
    """Stride-1 3x3 convolution: x (N, C, H, W), any strides, weight (K, C, 3, 3) -> out (K, N, Ho, Wo),
    C-contiguous (channel-major y), Ho = H + 2*ph - 2. V goes into ``v`` (6, 6, C, N*slots) if given
    (kept by the caller for winograd_weight_grad), else with U and M into this thread's scratch buffer.
    swapped: weight comes as (C, K, 3, 3), the forward's layout when this computes an input's
    gradient; U is made in that layout and the GEMMs read it transposed, which spares transposing
    the weight's two channel axes in memory."""
    (n, c), k = x.shape[:2], weight.shape[1 if swapped else 0]
    ohw = _out_hw(x.shape[2:], padding)
    t = n * winograd_slots(ohw)
    if weight.shape != ((c, k) if swapped else (k, c)) + (3, 3) or out.shape != (k, n, *ohw) \
            or (v is not None and v.shape != (6, 6, c, t)):
        raise ValueError(f"winograd_conv3x3: x {x.shape}, weight {weight.shape}{' (swapped)' if swapped else ''} "
                         f"and padding {padding} give y of shape {(k, n, *ohw)} (channel-major) and V "
                         f"{(6, 6, c, t)}, got out {out.shape}" + ("" if v is None else f" and v {v.shape}"))
    buf = scratch(x, (36 * (k * c + k * t + (0 if v is not None else c * t)),), x.dtype)
    u = winograd_weights(weight, buf[:36 * k * c].reshape(6, 6, *weight.shape[:2])).reshape(36, *weight.shape[:2])
    m = buf[36 * k * c:36 * (k * c + k * t)].reshape(6, 6, k, t)
    v = winograd_input(x, padding, buf[36 * (k * c + k * t):].reshape(6, 6, c, t) if v is None else v)
    batched_matmul(u.swapaxes(1, 2) if swapped else u, v.reshape(36, c, t), m.reshape(36, k, t))
    return winograd_output(m, out)


def winograd_weight_grad(gy, v):
    """The weight's gradient of winograd_conv3x3: gy (N, K, Ho, Wo), any strides, and the forward's
    V (6, 6, C, N*slots) -> gw (K, C, 3, 3). With GY = A gy A^T per 4x4 tile of gy (winograd_grad_output),
        gw = G^T [ sum over tiles of GY * V ] G      (per (k, c); the sums are 36 GEMMs, GY @ V^T)."""
    xp = array_module(gy)
    n, k = gy.shape[:2]
    c, t = v.shape[2:]
    slots = n * winograd_slots(gy.shape[2:])
    if v.shape[:2] != (6, 6) or t != slots:
        raise ValueError(f"winograd_weight_grad: gy {gy.shape} needs V of shape (6, 6, C, {slots}), got {v.shape}")
    gyt = winograd_grad_output(gy, scratch(gy, (6, 6, k, t), gy.dtype))
    du = batched_matmul(gyt.reshape(36, k, t), v.reshape(36, c, t).swapaxes(1, 2), xp.empty((36, k, c), gy.dtype))
    return winograd_grad_weights(du.reshape(6, 6, k, c), xp.empty((k, c, 3, 3), gy.dtype))
