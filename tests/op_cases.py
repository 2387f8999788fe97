"""The op test cases, defined once: the gradient checks, the live comparison with PyTorch, the
golden-file comparison and the golden-file generator (tests/reference/make_reference.py) all read
CASES.

A Case names its inputs (shape, how to draw them, whether they need a gradient) and one function
``fn(F, *inputs)`` written against the PyTorch API, called with ``F`` = minires.functional on minires
Tensors and with ``F`` = torch.nn.functional on torch tensors; ``torch_fn`` stands in for the torch side
where the two APIs spell a call differently. fn returns the output, or a tuple (output, *state) where
the state tensors (batch norm's running statistics) are compared after the call but get no gradient.
Inputs are drawn from the case's seed, so they never need storing.
"""
import itertools
import zlib
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np


@dataclass(frozen=True)
class Input:
    """One argument. kind: "normal" N(0, 1); "positive" U(0.5, 2) (for log, pow and division);
    "distinct" values at least 2/size apart and from 0 (no relu kinks, no max ties);
    "labels" int64 class indices below ``classes``, with some set to ``ignore`` when it is given."""
    shape: tuple
    kind: str = "normal"
    grad: bool = True
    classes: int = 0
    ignore: Optional[int] = None


@dataclass(frozen=True)
class Case:
    name: str
    inputs: tuple
    fn: Callable
    torch_fn: Optional[Callable] = None
    seed: Optional[int] = None

    def __post_init__(self):
        if self.seed is None:  # stable across runs and independent of the order of CASES
            object.__setattr__(self, "seed", zlib.crc32(self.name.encode()))


def t(*shape):
    return Input(shape)


def pos(*shape):
    return Input(shape, "positive")


def distinct(*shape):
    return Input(shape, "distinct")


def const(*shape, kind="normal"):
    return Input(shape, kind, grad=False)


def labels(*shape, classes, ignore=None):
    return Input(shape, "labels", grad=False, classes=classes, ignore=ignore)


def functional(name, op, *args, **kwargs):
    """A case calling F.<op>(*args, **kwargs), which both libraries spell the same; the Input
    arguments (leading) are the case's inputs, the rest are passed as given."""
    inputs = tuple(itertools.takewhile(lambda a: isinstance(a, Input), args))
    rest = args[len(inputs):]
    return Case(name, inputs, lambda F, *xs: getattr(F, op)(*xs, *rest, **kwargs))


def method(name, inputs, fn, torch_fn=None):
    """A case that calls Tensor methods or operators (F unused)."""
    return Case(name, inputs, lambda F, *xs: fn(*xs), None if torch_fn is None else (lambda F, *xs: torch_fn(*xs)))


def _batch_norm(training, **kwargs):
    """F.batch_norm(x, running_mean, running_var, weight, bias) -> (y, running_mean, running_var)."""
    def fn(F, x, rm=None, rv=None, w=None, b=None):
        return F.batch_norm(x, rm, rv, w, b, training=training, **kwargs), rm, rv
    return fn


def _fusion():
    """minires.fusion: the fused ops, minires's own (their torch_fn is PyTorch's separate ops)."""
    from minires import fusion
    return fusion


def _batch_norm_relu(training, fused):
    """relu(batch_norm(...)) -> (y, running_mean, running_var): minires's fused op (fused=True) or
    PyTorch's two ops, its reference."""
    def fn(F, x, rm=None, rv=None, w=None, b=None):
        if fused:
            return _fusion().batch_norm(x, rm, rv, w, b, training=training, relu=True), rm, rv
        return F.relu(F.batch_norm(x, rm, rv, w, b, training=training)), rm, rv
    return fn


def _batch_norm_residual(training, fused, relu=True, transpose=False):
    """[relu](batch_norm(...) + residual) -> (y, running_mean, running_var): minires's fused op
    (fused=True) or PyTorch's separate ops; transpose: the residual comes in channel-major memory
    (drawn (C, N, H, W), transposed)."""
    def fn(F, x, r, rm=None, rv=None, w=None, b=None):
        r = (r.transpose(1, 0, 2, 3) if fused else r.permute(1, 0, 2, 3)) if transpose else r
        if fused:
            return _fusion().batch_norm(x, rm, rv, w, b, training=training, relu=relu, residual=r), rm, rv
        y = F.batch_norm(x, rm, rv, w, b, training=training) + r
        return (F.relu(y) if relu else y), rm, rv
    return fn


def _fused_basic_block(fused):
    """A BasicBlock as minires's models run it (fused ReLUs and residual, on conv2d's channel-major
    outputs) or as PyTorch does: relu(bn(conv(relu(bn(conv(x))))) + x)."""
    def fn(F, x, w1, g1, b1, w2, g2, b2):
        if fused:
            fusion = _fusion()
            h = fusion.batch_norm(F.conv2d(x, w1, padding=1), None, None, g1, b1, training=True, relu=True)
            return fusion.batch_norm(F.conv2d(h, w2, padding=1), None, None, g2, b2, training=True, relu=True, residual=x)
        h = F.relu(F.batch_norm(F.conv2d(x, w1, padding=1), None, None, g1, b1, training=True))
        return F.relu(F.batch_norm(F.conv2d(h, w2, padding=1), None, None, g2, b2, training=True) + x)
    return fn


def _conv_bn_relu_residual(F, x, w, gamma, beta):
    return F.relu(F.batch_norm(F.conv2d(x, w, padding=1), None, None, gamma, beta, training=True)) + x


def _small_network(F, x, w, gamma, beta, fc_w, fc_b, target):
    """conv -> batch norm -> avg pool -> global pool -> flatten -> linear -> cross-entropy: each op
    consumes the previous one's output in whatever memory layout that op produced it."""
    h = F.batch_norm(F.conv2d(x, w, stride=2, padding=1), None, None, gamma, beta, training=True)
    h = F.adaptive_avg_pool2d(F.avg_pool2d(h, 2, 1), 1).flatten(1)
    return F.cross_entropy(F.linear(h, fc_w, fc_b), target)


IDX = np.array([[0, 2], [2, 2]])  # integer-array index with repeats: gradients must accumulate
MASK = np.array([True, False, True, True])

CASES = [
    # --- conv2d: input (N, C, H, W), weight (Cout, C/groups, kh, kw), bias (Cout,) ---
    functional("conv2d_3x3_pad1_bias", "conv2d", t(2, 3, 5, 5), t(4, 3, 3, 3), t(4), padding=1),
    functional("conv2d_stride2_pad1_odd", "conv2d", t(2, 3, 7, 7), t(4, 3, 3, 3), stride=2, padding=1),
    functional("conv2d_stride2_nopad_bias", "conv2d", t(2, 2, 6, 6), t(3, 2, 3, 3), t(3), stride=2),
    functional("conv2d_dilation2", "conv2d", t(1, 2, 7, 6), t(3, 2, 3, 3), t(3), padding=2, dilation=2),
    functional("conv2d_dilation_2x1_stride_1x2", "conv2d", t(2, 2, 7, 7), t(2, 2, 2, 3), dilation=(2, 1), stride=(1, 2)),
    functional("conv2d_groups2", "conv2d", t(2, 4, 5, 5), t(6, 2, 3, 3), t(6), padding=1, groups=2),
    functional("conv2d_depthwise_stride2", "conv2d", t(1, 3, 6, 5), t(3, 1, 3, 3), padding=1, stride=2, groups=3),
    functional("conv2d_groups_dilation_bias", "conv2d", t(1, 4, 6, 6), t(4, 2, 2, 2), t(4), groups=2, dilation=2, padding=1),
    functional("conv2d_nonsquare_kernel", "conv2d", t(2, 2, 6, 7), t(3, 2, 2, 3), t(3), stride=(2, 1), padding=(1, 0)),
    functional("conv2d_kernel_1x5_pad_0x2", "conv2d", t(1, 2, 3, 6), t(2, 2, 1, 5), padding=(0, 2)),
    functional("conv2d_batch1_odd_nobias", "conv2d", t(1, 3, 5, 7), t(2, 3, 3, 3)),
    functional("conv2d_stem_7x7_stride2_pad3", "conv2d", t(1, 2, 9, 9), t(2, 2, 7, 7), stride=2, padding=3),
    functional("conv2d_1x1_bias", "conv2d", t(2, 4, 5, 5), t(3, 4, 1, 1), t(3)),
    functional("conv2d_1x1_batch1_nobias", "conv2d", t(1, 3, 4, 5), t(5, 3, 1, 1)),
    functional("conv2d_1x1_groups2", "conv2d", t(2, 4, 3, 3), t(6, 2, 1, 1), t(6), groups=2),
    functional("conv2d_1x1_stride2_bias", "conv2d", t(2, 3, 5, 5), t(4, 3, 1, 1), t(4), stride=2),
    functional("conv2d_1x1_stride2_even_nobias", "conv2d", t(1, 4, 6, 4), t(2, 4, 1, 1), stride=2),
    functional("conv2d_1x1_pad1", "conv2d", t(1, 2, 3, 3), t(3, 2, 1, 1), t(3), padding=1),
    # taps that read only padding: dropped by conv2d (1x1 maps: a plain GEMM); their gradient is 0
    functional("conv2d_1x1_map_padded_3x3", "conv2d", t(2, 3, 1, 1), t(4, 3, 3, 3), t(4), padding=1),
    functional("conv2d_2x2_map_stride2_padded_3x3", "conv2d", t(2, 3, 2, 2), t(4, 3, 3, 3), stride=2, padding=1),
    functional("conv2d_1x5_map_padded_3x3", "conv2d", t(1, 2, 1, 5), t(3, 2, 3, 3), padding=1),
    # maps with fewer positions than live taps: one GEMM with the unrolled (Toeplitz) weight
    functional("conv2d_2x2_map_padded_3x3_bias", "conv2d", t(3, 4, 2, 2), t(5, 4, 3, 3), t(5), padding=1),
    functional("conv2d_3x2_map_5x5_dilated", "conv2d", t(2, 3, 3, 2), t(4, 3, 3, 3), padding=2, dilation=(1, 2)),
    functional("conv2d_3x3_map_5x5_stride2", "conv2d", t(2, 2, 3, 3), t(3, 2, 5, 5), t(3), stride=2, padding=2),
    Case("conv2d_noncontiguous_input", (t(3, 2, 5, 5), t(4, 3, 3, 3)),
         lambda F, x, w: F.conv2d(x.transpose(1, 0, 2, 3), w, padding=1),
         lambda F, x, w: F.conv2d(x.permute(1, 0, 2, 3), w, padding=1)),

    # --- max_pool2d (distinct values: no ties) ---
    functional("max_pool2d_k2_s2", "max_pool2d", distinct(2, 2, 6, 6), 2),
    functional("max_pool2d_k3_s2_overlap", "max_pool2d", distinct(2, 2, 7, 7), 3, 2),
    functional("max_pool2d_k3_s1_overlap", "max_pool2d", distinct(1, 2, 5, 5), 3, 1),
    functional("max_pool2d_k3_s2_pad1", "max_pool2d", distinct(1, 3, 8, 8), 3, 2, 1),
    functional("max_pool2d_k2_s3_gaps", "max_pool2d", distinct(1, 2, 7, 8), 2, 3),
    functional("max_pool2d_ceil", "max_pool2d", distinct(1, 2, 6, 6), 3, 2, ceil_mode=True),
    functional("max_pool2d_ceil_pad1", "max_pool2d", distinct(1, 2, 7, 8), 3, 2, 1, ceil_mode=True),
    functional("max_pool2d_ceil_k2_s2_odd", "max_pool2d", distinct(2, 1, 5, 7), 2, ceil_mode=True),
    functional("max_pool2d_dilation2", "max_pool2d", distinct(1, 2, 6, 6), 2, 1, dilation=2),
    functional("max_pool2d_dilation2_pad1_s2", "max_pool2d", distinct(1, 2, 7, 7), 3, 2, 1, dilation=2),
    functional("max_pool2d_nonsquare", "max_pool2d", distinct(1, 2, 6, 7), (2, 3), (2, 1), (1, 0), dilation=(2, 1)),
    Case("max_pool2d_noncontiguous_input", (distinct(2, 3, 6, 6),),
         lambda F, x: F.max_pool2d(x.transpose(1, 0, 2, 3), 3, 2, 1),
         lambda F, x: F.max_pool2d(x.permute(1, 0, 2, 3), 3, 2, 1)),

    # --- avg_pool2d ---
    functional("avg_pool2d_k2_s2", "avg_pool2d", t(2, 2, 6, 6), 2),
    functional("avg_pool2d_k3_s2_overlap", "avg_pool2d", t(1, 2, 7, 7), 3, 2),
    functional("avg_pool2d_k2_s3_gaps", "avg_pool2d", t(1, 2, 7, 8), 2, 3),
    functional("avg_pool2d_k3_s1_pad1", "avg_pool2d", t(1, 2, 5, 5), 3, 1, 1),
    functional("avg_pool2d_k3_s2_pad1_exclude_pad", "avg_pool2d", t(1, 2, 7, 6), 3, 2, 1, count_include_pad=False),
    functional("avg_pool2d_ceil", "avg_pool2d", t(1, 2, 6, 6), 3, 2, ceil_mode=True),
    functional("avg_pool2d_ceil_pad1", "avg_pool2d", t(1, 2, 6, 7), 3, 2, 1, ceil_mode=True),
    functional("avg_pool2d_ceil_pad1_exclude_pad", "avg_pool2d", t(1, 2, 6, 7), 3, 2, 1, ceil_mode=True, count_include_pad=False),
    functional("avg_pool2d_nonsquare", "avg_pool2d", t(2, 1, 6, 7), (3, 2), (2, 1), (1, 0)),
    functional("avg_pool2d_divisor_override", "avg_pool2d", t(1, 2, 5, 5), 2, 1, divisor_override=3),

    # --- adaptive_avg_pool2d ---
    functional("adaptive_avg_pool2d_to_1", "adaptive_avg_pool2d", t(2, 3, 5, 5), 1),
    functional("adaptive_avg_pool2d_divisor", "adaptive_avg_pool2d", t(1, 2, 6, 8), (3, 4)),
    functional("adaptive_avg_pool2d_non_divisor", "adaptive_avg_pool2d", t(2, 2, 7, 5), (3, 2)),
    functional("adaptive_avg_pool2d_larger_than_input", "adaptive_avg_pool2d", t(1, 2, 3, 4), (5, 3)),
    functional("adaptive_avg_pool2d_none", "adaptive_avg_pool2d", t(1, 2, 5, 4), (3, None)),

    # --- batch_norm: (y, running_mean, running_var); training checks the input, weight and bias ---
    Case("batch_norm_train", (t(4, 3, 2, 3), const(3), const(3, kind="positive"), t(3), t(3)), _batch_norm(True)),
    Case("batch_norm_train_momentum_eps", (t(3, 2, 3, 2), const(2), const(2, kind="positive"), t(2), t(2)),
         _batch_norm(True, momentum=0.3, eps=1e-3)),
    Case("batch_norm_train_no_affine", (t(2, 3, 3, 3), const(3), const(3, kind="positive")), _batch_norm(True)),
    Case("batch_norm_train_no_running_stats", (t(3, 2, 2, 2), t(2), t(2)),
         lambda F, x, w, b: F.batch_norm(x, None, None, w, b, training=True)),
    Case("batch_norm_train_2d", (t(6, 4), const(4), const(4, kind="positive"), t(4), t(4)), _batch_norm(True)),
    Case("batch_norm_eval", (t(2, 3, 3, 3), const(3), const(3, kind="positive"), t(3), t(3)), _batch_norm(False)),
    Case("batch_norm_eval_no_affine", (t(2, 3, 2, 2), const(3), const(3, kind="positive")), _batch_norm(False, eps=1e-2)),
    Case("batch_norm_train_noncontiguous_input", (t(3, 2, 3, 3), const(3), const(3, kind="positive"), t(3), t(3)),
         lambda F, x, rm, rv, w, b: (F.batch_norm(x.transpose(1, 0, 2, 3), rm, rv, w, b, training=True), rm, rv),
         lambda F, x, rm, rv, w, b: (F.batch_norm(x.permute(1, 0, 2, 3), rm, rv, w, b, training=True), rm, rv)),

    # --- linear ---
    functional("linear_2d_bias", "linear", t(4, 5), t(3, 5), t(3)),
    functional("linear_2d_nobias", "linear", t(4, 5), t(3, 5)),
    functional("linear_3d_bias", "linear", t(2, 3, 5), t(4, 5), t(4)),
    functional("linear_3d_nobias", "linear", t(2, 3, 5), t(4, 5)),
    functional("linear_1d_bias", "linear", t(5), t(3, 5), t(3)),

    # --- relu, log_softmax ---
    functional("relu", "relu", distinct(3, 4, 5)),
    method("relu_method", (distinct(2, 3, 2, 2),), lambda x: x.relu()),
    functional("log_softmax_dim0", "log_softmax", t(3, 4, 5), dim=0),
    functional("log_softmax_dim1", "log_softmax", t(3, 4, 5), dim=1),
    functional("log_softmax_dim_last", "log_softmax", t(3, 4, 5), dim=-1),
    functional("log_softmax_2d", "log_softmax", t(4, 6), dim=1),
    functional("log_softmax_1d", "log_softmax", t(5), dim=0),

    # --- cross_entropy: logits (N, C) or (N, C, d1, d2), targets; class weights get no gradient ---
    functional("cross_entropy_mean", "cross_entropy", t(5, 4), labels(5, classes=4)),
    functional("cross_entropy_sum", "cross_entropy", t(5, 4), labels(5, classes=4), reduction="sum"),
    functional("cross_entropy_none", "cross_entropy", t(5, 4), labels(5, classes=4), reduction="none"),
    functional("cross_entropy_weight_mean", "cross_entropy", t(6, 3), labels(6, classes=3), const(3, kind="positive")),
    functional("cross_entropy_weight_none", "cross_entropy", t(6, 3), labels(6, classes=3), const(3, kind="positive"),
               reduction="none"),
    functional("cross_entropy_ignore_index", "cross_entropy", t(6, 4), labels(6, classes=4, ignore=-100)),
    functional("cross_entropy_ignore_valid_class", "cross_entropy", t(8, 4), labels(8, classes=4), ignore_index=3),
    functional("cross_entropy_ignore_sum", "cross_entropy", t(6, 4), labels(6, classes=4, ignore=-1),
               ignore_index=-1, reduction="sum"),
    functional("cross_entropy_smoothing", "cross_entropy", t(5, 4), labels(5, classes=4), label_smoothing=0.1),
    functional("cross_entropy_smoothing_none", "cross_entropy", t(5, 4), labels(5, classes=4, ignore=-100),
               reduction="none", label_smoothing=0.2),
    functional("cross_entropy_weight_ignore_smoothing", "cross_entropy", t(7, 3), labels(7, classes=3, ignore=-100),
               const(3, kind="positive"), label_smoothing=0.3),
    functional("cross_entropy_weight_smoothing_sum", "cross_entropy", t(5, 3), labels(5, classes=3),
               const(3, kind="positive"), reduction="sum", label_smoothing=0.15),
    functional("cross_entropy_4d_mean", "cross_entropy", t(2, 3, 2, 3), labels(2, 2, 3, classes=3)),
    functional("cross_entropy_4d_weight_ignore", "cross_entropy", t(2, 3, 2, 2), labels(2, 2, 2, classes=3, ignore=-100),
               const(3, kind="positive")),
    functional("cross_entropy_4d_none_smoothing", "cross_entropy", t(2, 4, 2, 3), labels(2, 2, 3, classes=4),
               reduction="none", label_smoothing=0.1),
    functional("cross_entropy_4d_sum", "cross_entropy", t(1, 3, 3, 2), labels(1, 3, 2, classes=3), reduction="sum"),
    functional("cross_entropy_unbatched", "cross_entropy", t(5), labels(classes=5)),

    # --- elementwise, with broadcasting and Python scalars on either side ---
    functional("pad_nchw", "pad", t(2, 3, 4, 5), (1, 2, 0, 3)),                  # W by (1, 2), H by (0, 3)
    functional("pad_channels_value", "pad", t(2, 3, 4), (1, 1, 2, 0), value=0.5),   # the last two axes, a fill value
    method("add_broadcast", (t(2, 3, 4), t(3, 1)), lambda a, b: a + b),
    method("add_scalar_both_sides", (t(3, 4),), lambda a: 1.5 + a + 2),
    method("add_0d_tensor", (t(3, 4), t()), lambda a, s: a + s),
    method("sub_broadcast", (t(2, 1, 3), t(2, 3)), lambda a, b: a - b),
    method("sub_scalar_both_sides", (t(3, 4),), lambda a: (2.0 - a) - 0.5),
    method("mul_broadcast", (t(4, 1), t(3)), lambda a, b: a * b),
    method("mul_scalar_both_sides", (t(3, 4),), lambda a: 3.0 * a * -1.5),
    method("mul_0d_tensor", (t(), t(2, 3)), lambda s, a: s * a),
    method("div_broadcast", (t(2, 3, 4), pos(3, 1)), lambda a, b: a / b),
    method("div_scalar_both_sides", (pos(3, 4),), lambda a: 2.0 / a / 4.0),
    method("pow_scalar_exponent", (pos(3, 4),), lambda a: a ** 2.5),
    method("pow_int_exponent_negative_base", (t(3, 4),), lambda a: a ** 3),
    method("pow_scalar_base", (t(3, 4),), lambda a: 2.0 ** a),
    method("pow_tensor_broadcast", (pos(2, 3), t(3)), lambda a, b: a ** b),
    method("exp", (t(3, 4),), lambda a: a.exp()),
    method("log", (pos(3, 4),), lambda a: a.log()),
    method("neg", (t(3, 4),), lambda a: -a),
    method("reused_input", (t(3, 4),), lambda a: a * a + a),
    method("composite", (t(2, 3), pos(3)), lambda a, b: (a * b).exp() / (1 + b ** 2) - b.log()),
    method("cast_to_float64", (t(3, 4),), lambda a: a.double() * 2),

    # --- matmul: 2-D, batched with broadcasting, 1-D operands ---
    method("matmul_2d", (t(3, 4), t(4, 5)), lambda a, b: a @ b),
    method("matmul_batched_broadcast", (t(2, 1, 3, 4), t(3, 4, 2)), lambda a, b: a @ b),
    method("matmul_batched_times_2d", (t(2, 3, 4), t(4, 2)), lambda a, b: a @ b),
    method("matmul_1d_2d", (t(4), t(4, 5)), lambda a, b: a @ b),
    method("matmul_2d_1d", (t(3, 4), t(4)), lambda a, b: a @ b),
    method("matmul_1d_1d", (t(4), t(4)), lambda a, b: a @ b),
    method("matmul_batched_1d", (t(2, 3, 4), t(4)), lambda a, b: a @ b),
    method("matmul_1d_batched", (t(3), t(2, 3, 4)), lambda a, b: a @ b),

    # --- reductions (torch accepts NumPy's axis/keepdims spelling) ---
    method("sum_all", (t(2, 3, 4),), lambda a: a.sum()),
    method("sum_axis1", (t(2, 3, 4),), lambda a: a.sum(axis=1)),
    method("sum_axes_keepdims", (t(2, 3, 4),), lambda a: a.sum(axis=(0, 2), keepdims=True)),
    method("sum_negative_axis_keepdims", (t(2, 3, 4),), lambda a: a.sum(axis=-1, keepdims=True)),
    method("mean_all", (t(2, 3, 4),), lambda a: a.mean()),
    method("mean_axis0", (t(2, 3, 4),), lambda a: a.mean(axis=0)),
    method("mean_axes_keepdims", (t(2, 3, 4),), lambda a: a.mean(axis=(0, 2), keepdims=True)),
    method("mean_negative_axes", (t(2, 3, 4),), lambda a: a.mean(axis=(-1, -2))),

    # --- shape ops ---
    method("reshape", (t(2, 3, 4),), lambda a: a.reshape(4, 6)),
    method("reshape_tuple_infer", (t(2, 3, 4),), lambda a: a.reshape((-1, 2))),
    method("transpose_permute", (t(2, 3, 4),), lambda a: a.transpose(2, 0, 1), lambda a: a.permute(2, 0, 1)),
    method("transpose_reverse", (t(2, 3, 4),), lambda a: a.transpose(), lambda a: a.permute(2, 1, 0)),
    method("transpose_T_2d", (t(3, 5),), lambda a: a.T),
    method("flatten_all", (t(2, 3, 4),), lambda a: a.flatten()),
    method("flatten_from_1", (t(2, 3, 2, 2),), lambda a: a.flatten(1)),
    method("flatten_middle", (t(2, 3, 2, 2),), lambda a: a.flatten(1, 2)),
    method("getitem_slices", (t(4, 5),), lambda a: a[1:, ::2]),
    method("getitem_int_none_ellipsis", (t(3, 4, 5),), lambda a: a[1, None, ..., -2:]),
    method("getitem_int_list_repeats", (t(4, 3),), lambda a: a[[0, 2, 0, 0]]),
    method("getitem_int_arrays_repeats", (t(3, 4),), lambda a: a[[0, 1, 0], [2, 2, 2]]),
    method("getitem_2d_index_array", (t(3, 4),), lambda a: a[IDX]),
    method("getitem_slice_and_array", (t(2, 4, 3),), lambda a: a[:, [1, 1, 3], 1:]),
    method("getitem_bool_mask", (t(4, 3),), lambda a: a[MASK]),

    # --- residual additions: y = f(x) + x, the gradient reaches both branches ---
    Case("residual_conv_relu", (t(2, 3, 4, 4), t(3, 3, 3, 3)), lambda F, x, w: F.relu(F.conv2d(x, w, padding=1)) + x),
    Case("residual_linear", (t(3, 4), t(4, 4), t(4)), lambda F, x, w, b: F.linear(x, w, b) + x),
    Case("residual_conv_bn_relu", (t(2, 2, 3, 3), t(2, 2, 3, 3), t(2), t(2)), _conv_bn_relu_residual),
    # --- minires's fusions (models use them): against PyTorch's separate ops ---
    Case("batch_norm_relu_train", (t(4, 3, 2, 3), const(3), const(3, kind="positive"), t(3), t(3)),
         _batch_norm_relu(True, True), _batch_norm_relu(True, False)),
    Case("batch_norm_relu_eval", (t(2, 3, 3, 3), const(3), const(3, kind="positive"), t(3), t(3)),
         _batch_norm_relu(False, True), _batch_norm_relu(False, False)),
    Case("batch_norm_relu_train_no_affine", (t(3, 2, 3, 3), const(2), const(2, kind="positive")),
         _batch_norm_relu(True, True), _batch_norm_relu(True, False)),
    Case("batch_norm_relu_eval_no_affine", (t(2, 3, 3, 3), const(3), const(3, kind="positive")),
         _batch_norm_relu(False, True), _batch_norm_relu(False, False)),
    Case("batch_norm_relu_train_weight_only", (t(3, 2, 3, 3), const(2), const(2, kind="positive"), t(2)),
         _batch_norm_relu(True, True), _batch_norm_relu(True, False)),  # the mask's shift without a bias
    Case("batch_norm_residual_relu_train", (t(4, 3, 2, 3), t(4, 3, 2, 3), const(3), const(3, kind="positive"), t(3), t(3)),
         _batch_norm_residual(True, True), _batch_norm_residual(True, False)),
    Case("batch_norm_residual_relu_eval", (t(2, 3, 3, 3), t(2, 3, 3, 3), const(3), const(3, kind="positive"), t(3), t(3)),
         _batch_norm_residual(False, True), _batch_norm_residual(False, False)),
    Case("batch_norm_residual_train", (t(3, 2, 3, 3), t(3, 2, 3, 3), const(2), const(2, kind="positive"), t(2), t(2)),
         _batch_norm_residual(True, True, relu=False), _batch_norm_residual(True, False, relu=False)),
    Case("batch_norm_residual_relu_channel_major", (t(3, 2, 3, 3), t(2, 3, 3, 3), const(2), const(2, kind="positive")),
         _batch_norm_residual(True, True, transpose=True), _batch_norm_residual(True, False, transpose=True)),
    Case("add_relu", (t(2, 3, 4, 4), t(2, 3, 4, 4)), lambda F, a, b: _fusion().add_relu(a, b),
         lambda F, a, b: F.relu(a + b)),
    Case("add_relu_same_input", (t(2, 3, 4),), lambda F, a: _fusion().add_relu(a, a), lambda F, a: F.relu(a + a)),
    Case("add_relu_channel_major", (t(3, 2, 4, 4), t(2, 3, 4, 4)), lambda F, a, b: _fusion().add_relu(a.transpose(1, 0, 2, 3), b),
         lambda F, a, b: F.relu(a.permute(1, 0, 2, 3) + b)),
    Case("add_relu_both_channel_major", (t(3, 2, 4, 4), t(3, 2, 4, 4)),
         lambda F, a, b: _fusion().add_relu(a.transpose(1, 0, 2, 3), b.transpose(1, 0, 2, 3)),
         lambda F, a, b: F.relu(a.permute(1, 0, 2, 3) + b.permute(1, 0, 2, 3))),
    Case("basic_block_fused", (t(2, 3, 4, 4), t(3, 3, 3, 3), t(3), t(3), t(3, 3, 3, 3), t(3), t(3)),
         _fused_basic_block(True), _fused_basic_block(False)),
    Case("small_network", (t(3, 2, 6, 6), t(4, 2, 3, 3), t(4), t(4), t(3, 4), t(3), labels(3, classes=3)), _small_network),
]


# --- drawing inputs and running a case ----------------------------------------------------------------

def make_arrays(case, dtype):
    """The case's input arrays, drawn from its seed: float kinds in ``dtype``
    (float32 inputs are the float64 ones rounded), labels int64."""
    rng = np.random.default_rng(case.seed)
    return [_draw(rng, spec, dtype) for spec in case.inputs]


def _draw(rng, spec, dtype):
    n = int(np.prod(spec.shape))
    if spec.kind == "labels":
        target = rng.integers(0, spec.classes, n)
        if spec.ignore is not None:
            ignored = rng.random(n) < 0.3
            ignored[0], ignored[-1] = True, False  # at least one ignored and one counted
            target[ignored] = spec.ignore
        return target.reshape(spec.shape)
    if spec.kind == "normal":
        v = rng.standard_normal(n)
    elif spec.kind == "positive":
        v = rng.uniform(0.5, 2.0, n)
    elif spec.kind == "distinct":  # magnitudes 1..n (shuffled) times 2/n, random signs
        v = rng.permutation(np.arange(1, n + 1)) * rng.choice([-1.0, 1.0], n) * (2 / n)
    else:
        raise ValueError(f"unknown input kind {spec.kind!r}")
    return v.reshape(spec.shape).astype(dtype)


def upstream_grad(case, shape, dtype):
    """The random gradient fed to backward for the case's output."""
    return np.random.default_rng([case.seed, 1]).standard_normal(shape).astype(dtype)


def input_fingerprint(case, dtype):
    """One number that changes when the drawn inputs do (a different NumPy random stream)."""
    arrays = [a.astype(np.float64).ravel() for a in make_arrays(case, dtype)]
    return float(sum(np.vdot(a, np.cos(np.arange(a.size))) for a in arrays))


def minires_inputs(case, dtype):
    import minires
    return [minires.Tensor(a, requires_grad=spec.grad) for a, spec in zip(make_arrays(case, dtype), case.inputs)]


def run_minires(case, dtype):
    """{"out0": output, "out1".. : state after the call, "grad<i>": gradient of input i} as arrays."""
    import minires.functional as F
    inputs = minires_inputs(case, dtype)
    outs = _as_tuple(case.fn(F, *inputs))
    outs[0].backward(upstream_grad(case, outs[0].shape, dtype))
    return _results([o.numpy() for o in outs], inputs, lambda x: None if x.grad is None else x.grad.numpy())


def run_torch(case, dtype):
    """run_minires's dictionary, computed by PyTorch."""
    import torch
    import torch.nn.functional as F
    inputs = [torch.tensor(a, requires_grad=spec.grad) for a, spec in zip(make_arrays(case, dtype), case.inputs)]
    outs = _as_tuple((case.torch_fn or case.fn)(F, *inputs))
    outs[0].backward(torch.from_numpy(upstream_grad(case, tuple(outs[0].shape), dtype)))
    return _results([o.detach().numpy().copy() for o in outs], inputs,
                    lambda x: None if x.grad is None else x.grad.numpy().copy())


def _as_tuple(out):
    return out if isinstance(out, tuple) else (out,)


def _results(outs, inputs, grad_of):
    results = {f"out{k}": o for k, o in enumerate(outs)}
    results.update({f"grad{i}": grad_of(x) for i, x in enumerate(inputs) if x.requires_grad})
    return results
