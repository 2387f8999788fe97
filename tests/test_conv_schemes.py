"""conv2d's choice of scheme per shape, as its debug log reports it: 1x1 stride-1 as a plain GEMM,
im2col + GEMM otherwise, and kernel taps that read only padding dropped first (their gradient 0)."""
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
