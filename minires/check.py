"""Gradient-check every op over a standard set of configurations and print a table.

Each row runs minires.gradcheck's comparison (float64, central differences against backward) and
reports the largest absolute and relative difference between the numerical and the analytical
Jacobian, and whether every entry is within atol + rtol * |numerical|. Exit status 1 on any failure.
"""
import time

import numpy as np

from . import functional as F
from . import fusion
from .autograd.gradcheck import compare, mismatch
from .autograd.tensor import Tensor

ATOL, RTOL = 1e-5, 1e-3


def _t(rng, *shape):
    return Tensor(rng.standard_normal(shape), requires_grad=True)


def _distinct(rng, *shape):
    """Values far apart (no ties for max pooling, none near relu's kink)."""
    n = int(np.prod(shape))
    v = (rng.permutation(n) - n / 2 + 0.5) * (4.0 / n)
    return Tensor(v.reshape(shape), requires_grad=True)


def cases():
    """(op, configuration, function, inputs) for the standard set."""
    r = np.random.default_rng(0)
    rm, rv = Tensor(r.standard_normal(3)), Tensor(r.random(3) + 0.5)  # running statistics for eval mode
    yield "conv2d", "3x3 s1 p1 +bias", F.conv2d, (_t(r, 2, 3, 5, 5), _t(r, 4, 3, 3, 3), _t(r, 4)), {"padding": 1}
    yield "conv2d", "3x3 s2 p1 odd 7x6", F.conv2d, (_t(r, 1, 2, 7, 6), _t(r, 3, 2, 3, 3)), {"stride": 2, "padding": 1}
    yield "conv2d", "3x2 dil 2 pad (2,1)", F.conv2d, (_t(r, 2, 2, 6, 5), _t(r, 2, 2, 3, 2)), {"dilation": 2, "padding": (2, 1)}
    yield "conv2d", "groups 2", F.conv2d, (_t(r, 2, 4, 5, 5), _t(r, 6, 2, 3, 3), _t(r, 6)), {"groups": 2, "padding": 1}
    yield "conv2d", "1x1 (GEMM only)", F.conv2d, (_t(r, 2, 4, 3, 3), _t(r, 5, 4, 1, 1)), {}
    yield "conv2d", "1x1 stride 2", F.conv2d, (_t(r, 2, 3, 5, 5), _t(r, 4, 3, 1, 1)), {"stride": 2}
    yield "batch_norm", "training", lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True), \
        (_t(r, 3, 3, 4, 5), _t(r, 3), _t(r, 3)), {}
    yield "batch_norm", "eval", lambda x, w, b: F.batch_norm(x, rm, rv, w, b), (_t(r, 2, 3, 3, 3), _t(r, 3), _t(r, 3)), {}
    yield "batch_norm", "training, relu=True (fused)", lambda x, w, b: fusion.batch_norm(x, None, None, w, b, training=True, relu=True), \
        (_t(r, 3, 3, 4, 5), _t(r, 3), _t(r, 3)), {}
    yield "max_pool2d", "3x3 s2 p1 (overlap)", F.max_pool2d, (_distinct(r, 2, 2, 7, 7),), {"kernel_size": 3, "stride": 2, "padding": 1}
    yield "max_pool2d", "2x2 s2 (no overlap)", F.max_pool2d, (_distinct(r, 1, 3, 6, 6),), {"kernel_size": 2}
    yield "max_pool2d", "2x3 dil 2 ceil", F.max_pool2d, (_distinct(r, 2, 2, 7, 8),), {"kernel_size": (2, 3), "stride": 2, "dilation": 2, "ceil_mode": True}
    yield "avg_pool2d", "3x3 s2 p1 (overlap)", F.avg_pool2d, (_t(r, 2, 2, 7, 7),), {"kernel_size": 3, "stride": 2, "padding": 1}
    yield "avg_pool2d", "2x2 s2 (no overlap)", F.avg_pool2d, (_t(r, 1, 3, 6, 6),), {"kernel_size": 2}
    yield "avg_pool2d", "3x3 ceil, pad excluded", F.avg_pool2d, (_t(r, 2, 2, 6, 7),), {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True, "count_include_pad": False}
    yield "adaptive_avg_pool2d", "output 1 (global)", F.adaptive_avg_pool2d, (_t(r, 2, 3, 5, 4),), {"output_size": 1}
    yield "adaptive_avg_pool2d", "output (3, 2) of 7x5", F.adaptive_avg_pool2d, (_t(r, 2, 2, 7, 5),), {"output_size": (3, 2)}
    yield "relu", "", F.relu, (_distinct(r, 3, 4, 5),), {}
    yield "linear", "+bias, 3-D input", F.linear, (_t(r, 2, 3, 4), _t(r, 5, 4), _t(r, 5)), {}
    yield "log_softmax", "dim 1", F.log_softmax, (_t(r, 4, 5),), {"dim": 1}
    yield "cross_entropy", "mean", F.cross_entropy, (_t(r, 5, 4), np.array([0, 3, 1, 1, 2])), {}
    yield "cross_entropy", "sum, ignore_index, smoothing", F.cross_entropy, (_t(r, 5, 4), np.array([0, -100, 1, 3, 2])), {"reduction": "sum", "label_smoothing": 0.1}
    yield "cross_entropy", "none, (N, C, d)", F.cross_entropy, (_t(r, 2, 4, 3), np.array([[0, 3, 1], [2, 2, 1]])), {"reduction": "none"}
    yield "residual add", "relu(bn(conv(x))) + x", lambda x, w: F.relu(F.batch_norm(F.conv2d(x, w, padding=1), None, None, training=True)) + x, \
        (_t(r, 2, 3, 4, 4), _t(r, 3, 3, 3, 3)), {}
    yield "add_relu", "relu(bn(conv(x)) + x) (fused)", lambda x, w: fusion.add_relu(F.batch_norm(F.conv2d(x, w, padding=1), None, None, training=True), x), \
        (_t(r, 2, 3, 4, 4), _t(r, 3, 3, 3, 3)), {}
    yield "batch_norm", "residual=x, relu=True (fused)", lambda x, w: fusion.batch_norm(
        F.conv2d(x, w, padding=1), None, None, training=True, relu=True, residual=x), (_t(r, 2, 3, 4, 4), _t(r, 3, 3, 3, 3)), {}
    yield "elementwise", "a*b - a/b + a**2, broadcast", lambda a, b: a * b - a / b + a ** 2 - (b * b + 1).log() + a.exp(), \
        (_t(r, 3, 4), Tensor(r.random(4) + 0.5, requires_grad=True)), {}
    yield "matmul", "batched broadcast", lambda a, b: a @ b, (_t(r, 2, 1, 3, 4), _t(r, 3, 4, 2)), {}
    yield "sum/mean", "axes, keepdims", lambda a: a.sum(axis=(0, 2), keepdims=True) * a.mean(axis=1, keepdims=True), (_t(r, 2, 3, 4),), {}
    yield "reshape/transpose/getitem", "", lambda a: a.transpose(2, 0, 1).reshape(4, -1)[1:, ::2].flatten() * 2, (_t(r, 2, 3, 4),), {}


def rows():
    """(op, configuration, max abs error, max rel error, passed) for every case."""
    for op, config, fn, inputs, kwargs in cases():
        abs_err, rel_err, ok = 0.0, 0.0, True
        for *_, num, ana in compare(lambda *xs: fn(*xs, **kwargs), inputs):
            diff = np.abs(num - ana)
            abs_err = max(abs_err, float(diff.max()))
            rel_err = max(rel_err, float(diff.max() / max(np.abs(num).max(), 1e-300)))
            ok = ok and not mismatch(num, ana, ATOL, RTOL).any()
        yield op, config, abs_err, rel_err, ok


def add_arguments(parser):
    """`minires check` takes no options."""


def run(args):
    start = time.perf_counter()
    print(f"{'op':<26} {'configuration':<30} {'max abs err':>11} {'max rel err':>11}  pass")
    failures = 0
    for op, config, abs_err, rel_err, ok in rows():
        failures += not ok
        print(f"{op:<26} {config:<30} {abs_err:>11.2e} {rel_err:>11.2e}  {'ok' if ok else 'FAIL'}")
    total = sum(1 for _ in cases())
    print(f"\n{total - failures} passed, {failures} failed  (float64 gradcheck, atol={ATOL}, rtol={RTOL}, "
          f"{time.perf_counter() - start:.1f} s)")
    return 1 if failures else 0
