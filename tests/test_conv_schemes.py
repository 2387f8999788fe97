"""conv2d's choice of scheme per shape, as its debug log reports it: 1x1 stride-1 as a plain GEMM,
im2col + GEMM otherwise (in chunks of images where col would be large), kernel taps that read only
padding dropped first (their gradient 0), and maps smaller than the kernel as one GEMM with the
unrolled weight."""
import logging

import numpy as np
import pytest

import minires
from minires import functional as F


@pytest.fixture
def conv_log(caplog):
    caplog.set_level(logging.DEBUG, logger="minires.ops.conv")
    return caplog


def run(x_shape, w_shape, **kwargs):
    rng = np.random.default_rng(0)
    x = minires.tensor(rng.standard_normal(x_shape), requires_grad=True)
    w = minires.tensor(rng.standard_normal(w_shape), requires_grad=True)
    y = F.conv2d(x, w, **kwargs)
    y.sum().backward()
    return w


def test_pointwise_is_a_plain_gemm(conv_log):
    run((2, 3, 4, 4), (5, 3, 1, 1))
    assert "1x1: plain GEMM on x" in conv_log.text and "im2col" not in conv_log.text


def test_3x3_runs_im2col(conv_log):
    run((2, 3, 4, 4), (5, 3, 3, 3), padding=1)
    assert "im2col" in conv_log.text and "dropped" not in conv_log.text


def test_taps_in_the_padding_are_dropped_and_get_zero_gradient(conv_log):
    w = run((2, 3, 1, 1), (5, 3, 3, 3), padding=1)  # only the centre tap ever reads the 1x1 map
    assert "outside rows 1:2, columns 1:2" in conv_log.text and "1x1: plain GEMM on x" in conv_log.text
    g = w.grad.numpy()
    assert g.shape == (5, 3, 3, 3) and np.abs(g[:, :, 1, 1]).min() > 0
    g[:, :, 1, 1] = 0
    assert not g.any()


@pytest.mark.parametrize("x_shape, w_shape, kwargs, unrolled", [
    ((2, 3, 2, 2), (5, 3, 3, 3), dict(padding=1), True),                # 4 positions < 9 taps
    ((2, 3, 3, 3), (5, 3, 5, 5), dict(padding=2, stride=2), True),      # 9 < 25
    ((2, 3, 3, 3), (5, 3, 3, 3), dict(padding=1), False),               # 9 = 9: im2col
    ((2, 3, 2, 2), (5, 3, 3, 3), dict(padding=1, stride=2), False),     # 4 = the 2x2 live taps
    ((2, 4, 2, 2), (4, 2, 3, 3), dict(padding=1, groups=2), False),     # groups: im2col
], ids=str)
def test_maps_smaller_than_the_kernel_are_one_gemm_with_the_unrolled_weight(x_shape, w_shape, kwargs, unrolled,
                                                                             conv_log):
    """Exactly where the map has fewer positions than the kernel has live taps (and one group). Its
    values and gradients: the conv2d cases of op_cases (gradcheck, PyTorch) on such maps."""
    run(x_shape, w_shape, **kwargs)
    assert ("unrolled weight" in conv_log.text) == unrolled
    assert ("im2col" in conv_log.text) == (not unrolled)


CHUNK_CASES = [  # (x shape, w shape, kwargs)
    ((5, 3, 7, 6), (4, 3, 3, 3), dict(padding=1)),                                   # 5 images: chunks of 2, 2, 1
    ((3, 4, 9, 8), (6, 2, 3, 2), dict(stride=(2, 1), padding=(1, 2), dilation=(2, 1), groups=2)),
    ((4, 3, 11, 10), (8, 3, 7, 7), dict(stride=2, padding=3)),                       # ResNet's stem
    ((3, 4, 7, 7), (5, 4, 1, 1), dict(stride=2)),                                    # 1x1 stride 2: im2col
]


def conv_and_grads(x_shape, w_shape, kwargs):
    """Output and input gradient with a frozen weight (no col to keep: the forward may chunk)."""
    rng = np.random.default_rng(0)
    x = minires.tensor(rng.standard_normal(x_shape), requires_grad=True)
    w, b = minires.tensor(rng.standard_normal(w_shape)), minires.tensor(rng.standard_normal(w_shape[0]))
    y = F.conv2d(x, w, b, **kwargs)
    (y * minires.tensor(rng.standard_normal(y.shape))).sum().backward()
    with minires.no_grad():
        y_eval = F.conv2d(x, w, b, **kwargs)
    return [t.numpy() for t in (y, x.grad, y_eval)]


@pytest.mark.parametrize("x_shape, w_shape, kwargs", CHUNK_CASES, ids=str)
def test_chunks_of_images_give_the_whole_batch_result(x_shape, w_shape, kwargs, conv_log, monkeypatch):
    """With col limited to two images' worth, a forward that keeps no col (inference, frozen weights)
    runs chunk by chunk (in the log), and output and input gradient equal the whole batch's to
    rounding; the chunked forward is gradient-checked. Training keeps col: one chunk."""
    from minires.ops import conv
    whole = conv_and_grads(x_shape, w_shape, kwargs)
    y_hw = F.conv2d(minires.tensor(np.zeros(x_shape)), minires.tensor(np.zeros(w_shape)), **kwargs).shape[2:]
    col_bytes_per_image = 8 * x_shape[1] * w_shape[2] * w_shape[3] * y_hw[0] * y_hw[1]
    monkeypatch.setattr(conv, "CHUNK_BYTES", 2 * col_bytes_per_image)
    conv_log.clear()
    chunked = conv_and_grads(x_shape, w_shape, kwargs)
    assert conv_log.text.count(f"{-(-x_shape[0] // 2)} chunk(s) of images") == 2
    for a, b in zip(chunked, whole):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12 * np.abs(b).max())
    rng = np.random.default_rng(1)
    x, w = minires.tensor(rng.standard_normal(x_shape), requires_grad=True), minires.tensor(rng.standard_normal(w_shape))
    assert minires.gradcheck(lambda x: F.conv2d(x, w, **kwargs), (x,))
    conv_log.clear()
    run(x_shape, w_shape, **kwargs)
    assert "1 chunk(s) of images" in conv_log.text
