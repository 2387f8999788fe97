"""Winograd F(4x4, 3x3): its kernels (Numba against the NumPy reference, within rounding: the two sum
the transforms' terms in different orders), the whole convolution against im2col + GEMM, and conv2d's
use of it (forward and input gradient) against PyTorch, by gradcheck, and switched off."""
import importlib
import os
import subprocess
import sys

import numpy as np
import pytest

import minires
import minires.functional as F
from minires import kernels
from minires.kernels import winograd as wg
from minires import plans

from test_kernels import LAYOUTS, make

torch = pytest.importorskip("torch")

# (x shape, padding): maps not a multiple of 4, a 1x1 map, batch 1, padding 0/1/2, rectangular
CASES = [((2, 3, 13, 11), (1, 1)), ((1, 4, 8, 8), (1, 1)), ((3, 2, 6, 9), (0, 0)), ((2, 3, 5, 7), (2, 2)),
         ((2, 2, 1, 1), (1, 1)), ((1, 3, 9, 6), (2, 0)), ((2, 5, 24, 30), (1, 1))]
TOL = {np.float32: 1e-5, np.float64: 1e-12}  # relative to the largest magnitude


def assert_close(a, b, dtype):
    assert np.abs(a - b).max() <= TOL[dtype] * max(1.0, np.abs(b).max())


def direct(x, w, padding):
    """The im2col + GEMM convolution, channel-major (K, N, Ho, Wo)."""
    n, k = x.shape[0], w.shape[0]
    col = kernels.im2col(x, (3, 3), (1, 1), padding, (1, 1))
    return (w.reshape(k, -1) @ col).reshape(k, n, x.shape[2] + 2 * padding[0] - 2, -1)




@pytest.mark.parametrize("case", CASES, ids=str)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kernels_equal_reference(case, layout, dtype):
    rng = np.random.default_rng(5)
    (n, c, h, w), padding = case
    x, weight = make((n, c, h, w), layout, dtype, rng), rng.standard_normal((4, c, 3, 3)).astype(dtype)
    ohw = (h + 2 * padding[0] - 2, w + 2 * padding[1] - 2)
    slots = n * wg.winograd_slots(ohw)
    u = [wg.winograd_weights.impls[b](weight, np.empty((6, 6, 4, c), dtype)) for b in ("numba", "numpy")]
    assert_close(*u, dtype)
    du = rng.standard_normal((6, 6, 4, c)).astype(dtype)
    assert_close(*(wg.winograd_grad_weights.impls[b](du, np.empty((4, c, 3, 3), dtype)) for b in ("numba", "numpy")), dtype)
    v = [wg.winograd_input.impls[b](x, padding, np.empty((6, 6, c, slots), dtype)) for b in ("numba", "numpy")]
    assert_close(*v, dtype)
    m = np.matmul(u[1].reshape(36, 4, c), v[1].reshape(36, c, slots)).reshape(6, 6, 4, slots)
    y = [wg.winograd_output.impls[b](m, np.empty((4, n, *ohw), dtype)) for b in ("numba", "numpy")]
    assert_close(*y, dtype)
    assert_close(y[0], direct(x, weight, padding), dtype)


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_winograd_conv3x3_equals_im2col_gemm(backend, monkeypatch):
    monkeypatch.setitem(minires.runtime._settings, "kernels", backend)
    rng = np.random.default_rng(6)
    for dtype in (np.float32, np.float64):
        x, w = rng.standard_normal((3, 8, 26, 29)).astype(dtype), rng.standard_normal((5, 8, 3, 3)).astype(dtype)
        y = kernels.winograd_conv3x3(x, w, (1, 1), out=np.empty((5, 3, 26, 29), dtype))
        assert_close(y, direct(x, w, (1, 1)), dtype)
        swapped = np.ascontiguousarray(w.swapaxes(0, 1))  # (C, K, 3, 3): taken as its transpose
        y = kernels.winograd_conv3x3(x, swapped, (1, 1), out=np.empty((5, 3, 26, 29), dtype), swapped=True)
        assert_close(y, direct(x, w, (1, 1)), dtype)


def test_a_wrong_transform_is_caught():
    """The comparison can fail: the reference with one constant of A^T changed no longer matches."""
    rng = np.random.default_rng(7)
    x, w = rng.standard_normal((1, 2, 8, 8)), rng.standard_normal((3, 2, 3, 3))
    wrong = wg.AT.copy()
    wrong[3, 3] = 9
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(wg, "AT", wrong)
        mp.setitem(minires.runtime._settings, "kernels", "numpy")
        y = kernels.winograd_conv3x3(x, w, (1, 1), out=np.empty((3, 1, 8, 8)))
    assert np.abs(y - direct(x, w, (1, 1))).max() > 1e-3


def test_written_out_rows_are_the_matrices():
    """The Numba transforms' rows, written out without their zero terms, applied to the identity give
    back B^T, A^T and A exactly (so a mistyped constant or sign in them fails here)."""
    rows, zeros, n = tuple(range(6)), (np.uint64(0),) * 6, np.uint64(6)
    out = np.empty((6, 1, 6))  # the helpers' arrays are 3-D, (row, channel, run)
    wg._bt_rows(out, 0, 1, 0, np.uint64(0), np.eye(6)[:, None], 0, rows, zeros, n)
    np.testing.assert_array_equal(out[:, 0], wg.BT)
    out = np.empty((4, 1, 6))
    wg._at_rows(out, 0, 1, 0, np.eye(6)[:, None], 0, rows, n)
    np.testing.assert_array_equal(out[:, 0], wg.AT)
    out = np.empty((6, 1, 4))
    wg._a_rows(out, 0, 1, 0, np.eye(4)[:, None], 0, rows[:4], np.uint64(4))
    np.testing.assert_array_equal(out[:, 0], wg.AT.T)


def test_bad_shapes_are_refused():
    x, w = np.zeros((1, 2, 8, 8)), np.zeros((3, 2, 3, 3))
    with pytest.raises(ValueError, match=r"winograd_conv3x3: .*\(3, 1, 8, 8\).*got out \(3, 1, 7, 8\)"):
        kernels.winograd_conv3x3(x, w, (1, 1), out=np.empty((3, 1, 7, 8)))
    with pytest.raises(ValueError, match=r"winograd_conv3x3: x \(1, 2, 8, 8\), weight \(3, 2, 3, 3\) \(swapped\)"):
        kernels.winograd_conv3x3(x, w, (1, 1), out=np.empty((3, 1, 8, 8)), swapped=True)
    with pytest.raises(ValueError, match="winograd_input: out must be"):
        kernels.winograd_input(x, (1, 1), np.empty((6, 6, 2, 5)))
    with pytest.raises(ValueError, match="winograd_weights: out must be"):
        kernels.winograd_weights(w, np.empty((6, 6, 3, 2), np.float32))
    with pytest.raises(ValueError, match="winograd_grad_weights: out must be"):
        kernels.winograd_grad_weights(np.zeros((6, 6, 3, 2)), np.empty((2, 3, 3, 3)))


# ---------------------------------------------------------------- conv2d

@pytest.fixture
def winograd_at_any_size(monkeypatch):
    """Winograd in training for these small cases too, whatever the size rule (tested on its own)."""
    monkeypatch.setitem(plans.THRESHOLDS, "winograd_training", (0, 0, 0, 0))


WINOGRAD = plans.Winograd.name


def chosen(fn):
    """The names of the plans chosen while fn() runs."""
    with plans.recording() as seen:
        fn()
    return [p.name for p in seen]


def conv_both(x, w, padding, winograd):
    """minires's y, gx, gw with Winograd on or off, for the upstream gradient gy = y's cosine."""
    minires.set_winograd(winograd)
    try:
        mx, mw = minires.tensor(x, requires_grad=True), minires.tensor(w, requires_grad=True)
        with plans.recording() as seen:
            y = F.conv2d(mx, mw, padding=padding)
        assert [p.name == WINOGRAD for p in seen] == [winograd]
        y.backward(minires.tensor(np.cos(y.numpy())))
        return y.numpy(), mx.grad.numpy(), mw.grad.numpy()
    finally:
        minires.set_winograd(True)


@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-10), (np.float32, 1e-5)])
@pytest.mark.parametrize("shape, padding", [((8, 3, 24, 24), 1), ((4, 4, 27, 25), 2), ((6, 2, 26, 30), 0)])
def test_conv2d_matches_torch(dtype, rtol, shape, padding, winograd_at_any_size):
    rng = np.random.default_rng(8)
    x, w = rng.standard_normal(shape).astype(dtype), rng.standard_normal((5, shape[1], 3, 3)).astype(dtype)
    got = conv_both(x, w, padding, True)
    tx, tw = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    ty = torch.nn.functional.conv2d(tx, tw, padding=padding)
    ty.backward(torch.cos(ty.detach()))
    for a, b in zip(got, (ty.detach().numpy(), tx.grad.numpy(), tw.grad.numpy())):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * np.abs(b).max())


def test_conv2d_off_runs_im2col_and_agrees(winograd_at_any_size):
    rng = np.random.default_rng(9)
    x, w = rng.standard_normal((6, 3, 24, 28)), rng.standard_normal((4, 3, 3, 3))
    off = conv_both(x, w, 1, False)
    for a, b in zip(conv_both(x, w, 1, True), off):
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-11 * np.abs(b).max())


def test_conv2d_gradcheck_through_winograd(winograd_at_any_size):
    rng = np.random.default_rng(10)
    x = minires.tensor(rng.standard_normal((4, 2, 32, 32)), requires_grad=True)
    w = minires.tensor(rng.standard_normal((2, 2, 3, 3)), requires_grad=True)
    with plans.recording() as seen:
        assert minires.gradcheck(lambda x, w: F.conv2d(x, w, padding=1), [x, w], fast_mode=True)
    assert any(p.name == WINOGRAD and p.needs[:2] == (True, True) for p in seen)  # V kept for the weight's gradient


@pytest.mark.parametrize("shape, kwargs", [((2, 3, 16, 16), {"padding": 1}), ((64, 3, 5, 5), {"padding": 1}),
                                           ((8, 3, 60, 60), {"stride": 2}), ((8, 3, 60, 60), {"dilation": 2}),
                                           ((8, 4, 60, 60), {"groups": 2})])
def test_other_shapes_keep_im2col(shape, kwargs):
    x = minires.tensor(np.ones(shape, np.float32))
    w = minires.tensor(np.ones((4, shape[1] // kwargs.get("groups", 1), 3, 3), np.float32))
    assert chosen(lambda: F.conv2d(x, w, **kwargs)) == [plans.BlockedIm2colGemm.name]


@pytest.mark.parametrize("grad", [False, True], ids=["inference", "training"])
@pytest.mark.parametrize("batch, winograd", [(64, True), (12, False)])
def test_winograd_needs_enough_tile_slots(batch, winograd, grad):
    """8x8 maps, 4 channels: 4 tile slots per image, so 256 at batch 64 (Winograd pays) and 48 at
    batch 12 (it does not), in a forward alone and with the two backward passes alike."""
    x, w = np.ones((batch, 4, 8, 8), np.float32), np.ones((4, 4, 3, 3), np.float32)
    plan = chosen(lambda: F.conv2d(minires.tensor(x), minires.tensor(w, requires_grad=grad), padding=1))
    assert plan == [WINOGRAD if winograd else plans.BlockedIm2colGemm.name]


@pytest.mark.parametrize("batch, winograd", [(4, True), (3, False)])
def test_training_takes_winograd_with_enough_tile_slots(batch, winograd):
    """14x14 maps: 16 tile slots per image, 64 at batch 4, 48 at batch 3."""
    x = minires.tensor(np.ones((batch, 64, 14, 14), np.float32), requires_grad=True)
    w = minires.tensor(np.ones((4, 64, 3, 3), np.float32), requires_grad=True)
    assert (chosen(lambda: F.conv2d(x, w, padding=1)) == [WINOGRAD]) == winograd


@pytest.mark.parametrize("grad", [False, True], ids=["inference", "training"])
def test_the_tile_slot_threshold_is_exact(grad):
    """8x16 maps: 2 rows of 4 tiles, 8 slots per image: 64 at batch 8 (taken), 56 at batch 7 (not)."""
    def plan(batch):
        x, w = np.ones((batch, 4, 8, 16), np.float32), np.ones((4, 4, 3, 3), np.float32)
        return chosen(lambda: F.conv2d(minires.tensor(x), minires.tensor(w, requires_grad=grad), padding=1))
    assert plan(8) == [WINOGRAD] and plan(7) == [plans.BlockedIm2colGemm.name]


@pytest.mark.parametrize("grad", [False, True], ids=["inference", "training"])
@pytest.mark.parametrize("side, winograd", [(3, False), (4, True), (5, False), (6, True), (7, True)])
def test_small_maps_need_their_tiles_filled(side, winograd, grad):
    """Maps of 4 outputs a side and up, whose 4x4 tiles are at least half inside the map: 4x4 (all of
    one tile), 6x6 and 7x7 (36 and 49 of four tiles' 64) take Winograd at batch 64; 3x3 (below the
    least side) and 5x5 (25 of 64) keep im2col."""
    x, w = np.ones((64, 4, side, side), np.float32), np.ones((4, 4, 3, 3), np.float32)
    plan = chosen(lambda: F.conv2d(minires.tensor(x), minires.tensor(w, requires_grad=grad), padding=1))
    assert plan == [WINOGRAD if winograd else plans.BlockedIm2colGemm.name]


def test_training_without_a_batched_gemm_needs_more_work(monkeypatch):
    """Where BLAS has no batched GEMM (kernels/gemm.py), Winograd's 36 products are one call each, and
    training takes it only from slots x channels >= THRESHOLDS["winograd_training_per_matrix"]."""
    monkeypatch.setattr(minires.kernels.gemm, "available", lambda dtype: False)
    monkeypatch.setattr(importlib.import_module("minires.plans.choose"), "_chosen", {})  # forget earlier choices
    for channels, winograd in ((4, False), (160, True)):  # 8x8 maps at batch 64: 384 slots
        x = minires.tensor(np.ones((64, channels, 8, 8), np.float32))
        w = minires.tensor(np.ones((4, channels, 3, 3), np.float32), requires_grad=True)
        assert (chosen(lambda: F.conv2d(x, w, padding=1)) == [WINOGRAD]) == winograd


def test_switch_checks_its_argument():
    with pytest.raises(TypeError, match="set_winograd: expected True or False"):
        minires.set_winograd("off")
    env = dict(os.environ, MINIRES_WINOGRAD="yes")
    r = subprocess.run([sys.executable, "-c", "import minires"], env=env, capture_output=True, text=True)
    assert r.returncode != 0 and "MINIRES_WINOGRAD must be one of ('0', '1'), got 'yes'" in r.stderr
    env["MINIRES_WINOGRAD"] = "0"
    r = subprocess.run([sys.executable, "-c", "import minires; print(minires.get_winograd())"], env=env,
                       capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "False"
