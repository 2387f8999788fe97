"""Bad input gets a ValueError or TypeError that names the op and the offending shapes or values,
raised by the argument checks, never a bare NumPy error from deep inside."""
import numpy as np
import pytest

import minires
import minires.functional as F
from minires import fusion
from minires import nn


def T(*shape, dtype=np.float32):
    return minires.tensor(np.ones(shape, dtype))


def _x():
    return T(1, 3, 8, 8)


def _w():
    return T(4, 3, 3, 3)


def _backward_without_grad():
    (minires.tensor(np.ones((2, 3)), requires_grad=True) * 2.0).backward()


# (id, call, exception, pattern): each pattern names the op and a shape or value of the bad input
CASES = [
    # wrong number of dimensions
    ("conv2d-input-ndim", lambda: F.conv2d(T(3, 8, 8), _w()), ValueError, r"conv2d: input .*\(3, 8, 8\)"),
    ("conv2d-weight-ndim", lambda: F.conv2d(_x(), T(4, 3, 3)), ValueError, r"conv2d: weight .*\(4, 3, 3\)"),
    ("max_pool2d-ndim", lambda: F.max_pool2d(T(3, 8, 8), 2), ValueError, r"max_pool2d: input .*\(3, 8, 8\)"),
    ("avg_pool2d-ndim", lambda: F.avg_pool2d(T(8, 8), 2), ValueError, r"avg_pool2d: input .*\(8, 8\)"),
    ("adaptive_avg_pool2d-ndim", lambda: F.adaptive_avg_pool2d(T(2, 3, 8), 1), ValueError,
     r"adaptive_avg_pool2d: input .*\(2, 3, 8\)"),
    ("batch_norm-ndim", lambda: F.batch_norm(T(3), None, None, training=True), ValueError,
     r"batch_norm: input .*\(3,\)"),
    ("BatchNorm2d-ndim", lambda: nn.BatchNorm2d(3)(T(2, 3, 4)), ValueError, r"BatchNorm2d: .*\(2, 3, 4\)"),
    ("linear-weight-ndim", lambda: F.linear(T(2, 3), T(3)), ValueError, r"linear: weight .*\(3,\)"),
    ("linear-input-ndim", lambda: F.linear(T(), T(4, 3)), ValueError, r"linear: input of shape \(\)"),
    # channel mismatches
    ("conv2d-channels", lambda: F.conv2d(T(1, 2, 8, 8), _w()), ValueError,
     r"conv2d: input of shape \(1, 2, 8, 8\) has 2 channels.*\(4, 3, 3, 3\)"),
    ("Conv2d-channels", lambda: nn.Conv2d(3, 4, 3)(T(1, 5, 8, 8)), ValueError, r"conv2d: .*\(1, 5, 8, 8\).*expects 3"),
    ("conv2d-bias", lambda: F.conv2d(_x(), _w(), T(3)), ValueError, r"conv2d: bias .*\(4,\).*\(3,\)"),
    ("batch_norm-running-mean", lambda: F.batch_norm(T(2, 3, 4, 4), T(4), T(3)), ValueError,
     r"batch_norm: running_mean .*\(3,\).*\(2, 3, 4, 4\).*\(4,\)"),
    ("batch_norm-running-var", lambda: F.batch_norm(T(2, 3, 4, 4), T(3), T(5), training=True), ValueError,
     r"batch_norm: running_var .*\(5,\)"),
    ("batch_norm-weight", lambda: F.batch_norm(T(2, 3, 4, 4), None, None, T(2), training=True), ValueError,
     r"batch_norm: weight .*\(2,\)"),
    ("batch_norm-residual-shape", lambda: fusion.batch_norm(T(2, 3, 4, 4), None, None, training=True, residual=T(2, 3, 4, 5)),
     ValueError, r"batch_norm: residual .*\(2, 3, 4, 4\).*\(2, 3, 4, 5\)"),
    ("batch_norm-residual-integer", lambda: fusion.batch_norm(T(2, 3, 4, 4), None, None, training=True,
                                                         residual=T(2, 3, 4, 4, dtype=np.int64)), TypeError,
     r"batch_norm: residual .*int64"),
    ("batch_norm-residual-dtype", lambda: fusion.batch_norm(T(2, 3, 4, 4), None, None, training=True,
                                                       residual=T(2, 3, 4, 4, dtype=np.float64)), TypeError, r"batch_norm: .*residual"),
    ("BatchNorm2d-channels", lambda: nn.BatchNorm2d(4)(T(2, 3, 4, 4)), ValueError,
     r"BatchNorm2d\(4\): input has 3 channels, expected 4"),
    ("linear-features", lambda: F.linear(T(2, 3), T(4, 5)), ValueError, r"linear: input of shape \(2, 3\).*\(4, 5\)"),
    ("Linear-features", lambda: nn.Linear(3, 4)(T(2, 5)), ValueError, r"linear: input of shape \(2, 5\)"),
    ("linear-bias", lambda: F.linear(T(2, 3), T(4, 3), T(3)), ValueError, r"linear: bias .*\(4,\).*\(3,\)"),
    # groups
    ("conv2d-groups-in", lambda: F.conv2d(T(1, 4, 8, 8), T(6, 2, 3, 3), groups=3), ValueError,
     r"conv2d: groups=3 .*\(4\)"),
    ("conv2d-groups-out", lambda: F.conv2d(T(1, 4, 8, 8), T(3, 2, 3, 3), groups=2), ValueError,
     r"conv2d: groups=2 .*\(3\)"),
    ("conv2d-groups-zero", lambda: F.conv2d(_x(), _w(), groups=0), ValueError, r"conv2d: groups .* 0"),
    ("Conv2d-groups", lambda: nn.Conv2d(3, 4, 3, groups=2), ValueError, r"Conv2d: groups=2 .*in_channels=3"),
    # non-positive stride or kernel
    ("conv2d-stride-0", lambda: F.conv2d(_x(), _w(), stride=0), ValueError, r"conv2d: stride .* 0"),
    ("conv2d-stride-negative", lambda: F.conv2d(_x(), _w(), stride=(1, -2)), ValueError, r"conv2d: stride .*\(1, -2\)"),
    ("conv2d-stride-float", lambda: F.conv2d(_x(), _w(), stride=1.5), TypeError, r"conv2d: stride .*1\.5"),
    ("conv2d-kernel-0", lambda: F.conv2d(_x(), T(4, 3, 0, 3)), ValueError, r"conv2d: weight shape \(4, 3, 0, 3\)"),
    ("conv2d-dilation-0", lambda: F.conv2d(_x(), _w(), dilation=0), ValueError, r"conv2d: dilation .* 0"),
    ("max_pool2d-stride-0", lambda: F.max_pool2d(_x(), 2, stride=0), ValueError, r"max_pool2d: stride .* 0"),
    ("max_pool2d-kernel-0", lambda: F.max_pool2d(_x(), 0), ValueError, r"max_pool2d: kernel_size .* 0"),
    ("MaxPool2d-kernel-negative", lambda: nn.MaxPool2d((2, -1))(_x()), ValueError,
     r"max_pool2d: kernel_size .*\(2, -1\)"),
    ("avg_pool2d-stride-negative", lambda: F.avg_pool2d(_x(), 2, stride=-1), ValueError, r"avg_pool2d: stride .* -1"),
    ("avg_pool2d-kernel-0", lambda: F.avg_pool2d(_x(), (0, 2)), ValueError, r"avg_pool2d: kernel_size .*\(0, 2\)"),
    # negative padding, and pool padding over half the kernel
    ("conv2d-padding", lambda: F.conv2d(_x(), _w(), padding=-1), ValueError, r"conv2d: padding .* -1"),
    ("max_pool2d-padding", lambda: F.max_pool2d(_x(), 2, padding=(0, -1)), ValueError,
     r"max_pool2d: padding .*\(0, -1\)"),
    ("avg_pool2d-padding", lambda: F.avg_pool2d(_x(), 2, padding=-2), ValueError, r"avg_pool2d: padding .* -2"),
    ("max_pool2d-padding-half", lambda: F.max_pool2d(_x(), 3, padding=2), ValueError,
     r"max_pool2d: padding \(2, 2\) .* half .*\(3, 3\)"),
    ("avg_pool2d-padding-half", lambda: F.avg_pool2d(_x(), (2, 4), padding=(2, 0)), ValueError,
     r"avg_pool2d: padding \(2, 0\) .* half .*\(2, 4\)"),
    # an output size below 1
    ("conv2d-output", lambda: F.conv2d(T(1, 3, 2, 5), _w()), ValueError,
     r"conv2d: output size \(0, 3\) .*\(2, 5\)"),
    ("conv2d-output-dilation", lambda: F.conv2d(T(1, 3, 5, 5), _w(), dilation=3), ValueError,
     r"conv2d: output size .*\(5, 5\).*dilation=\(3, 3\)"),
    ("max_pool2d-output", lambda: F.max_pool2d(T(1, 3, 2, 2), 3), ValueError,
     r"max_pool2d: output size \(0, 0\) .*\(2, 2\)"),
    ("avg_pool2d-output", lambda: F.avg_pool2d(T(1, 3, 8, 2), 3), ValueError,
     r"avg_pool2d: output size \(2, 0\) .*\(8, 2\)"),
    ("adaptive_avg_pool2d-output-0", lambda: F.adaptive_avg_pool2d(_x(), 0), ValueError,
     r"adaptive_avg_pool2d: output_size 0"),
    ("adaptive_avg_pool2d-output-pair", lambda: F.adaptive_avg_pool2d(_x(), (2, 0)), ValueError,
     r"adaptive_avg_pool2d: output_size \(2, 0\)"),
    ("adaptive_avg_pool2d-output-type", lambda: F.adaptive_avg_pool2d(_x(), "a"), TypeError,
     r"adaptive_avg_pool2d: output_size .*'a'"),
    # cross_entropy targets and reduction
    ("cross_entropy-target-high", lambda: F.cross_entropy(T(2, 3), np.array([0, 3])), ValueError,
     r"cross_entropy: target 3 .* 3 classes"),
    ("cross_entropy-target-negative", lambda: F.cross_entropy(T(2, 3), np.array([-1, 0])), ValueError,
     r"cross_entropy: target -1 .* 3 classes"),
    ("cross_entropy-target-spatial", lambda: F.cross_entropy(T(2, 3, 4), np.full((2, 4), 5)), ValueError,
     r"cross_entropy: target 5 .*\(2, 3, 4\)"),
    ("cross_entropy-float-target", lambda: F.cross_entropy(T(2, 3), np.array([0.0, 1.0])), TypeError,
     r"cross_entropy: target .*float64"),
    ("cross_entropy-float-tensor-target", lambda: F.cross_entropy(T(2, 3), T(2)), TypeError,
     r"cross_entropy: target .*float32"),
    ("cross_entropy-target-shape", lambda: F.cross_entropy(T(2, 3), np.array([0, 1, 2])), ValueError,
     r"cross_entropy: target of shape \(3,\) .*\(2, 3\)"),
    ("cross_entropy-reduction", lambda: F.cross_entropy(T(2, 3), np.array([0, 1]), reduction="avg"), ValueError,
     r"cross_entropy: reduction .*'avg'"),
    ("cross_entropy-weight-shape", lambda: F.cross_entropy(T(2, 3), np.array([0, 1]), weight=T(4)), ValueError,
     r"cross_entropy: weight .*\(4,\)"),
    ("cross_entropy-label-smoothing", lambda: F.cross_entropy(T(2, 3), np.array([0, 1]), label_smoothing=1.5),
     ValueError, r"cross_entropy: label_smoothing .*1\.5"),
    # backward
    ("backward-non-scalar", _backward_without_grad, ValueError, r"backward: .*\(2, 3\)"),
    # dtype mismatches
    ("conv2d-dtype", lambda: F.conv2d(_x(), T(4, 3, 3, 3, dtype=np.float64)), TypeError,
     r"conv2d: dtypes differ: input float32, weight float64"),
    ("conv2d-bias-dtype", lambda: F.conv2d(_x(), _w(), T(4, dtype=np.float64)), TypeError,
     r"conv2d: dtypes differ: .*bias float64"),
    ("linear-dtype", lambda: F.linear(T(2, 3), T(4, 3, dtype=np.float64)), TypeError,
     r"linear: dtypes differ: input float32, weight float64"),
    ("Linear-dtype", lambda: nn.Linear(3, 4, dtype=np.float64)(T(2, 3)), TypeError,
     r"linear: dtypes differ: input float32, weight float64"),
    ("batch_norm-dtype", lambda: F.batch_norm(T(2, 3, 4, 4), None, None, T(3, dtype=np.float64), training=True),
     TypeError, r"batch_norm: dtypes differ: input float32, weight float64"),
    ("cross_entropy-weight-dtype", lambda: F.cross_entropy(T(2, 3), np.array([0, 1]), weight=T(3, dtype=np.float64)),
     TypeError, r"cross_entropy: dtypes differ: input float32, weight float64"),
    ("conv2d-integer-input", lambda: F.conv2d(T(1, 3, 8, 8, dtype=np.int64), _w()), TypeError,
     r"conv2d: input .*int64"),
    # shape ops and matmul
    ("reshape", lambda: T(2, 3).reshape(4, 2), ValueError, r"reshape: .*\(2, 3\) into \(4, 2\)"),
    ("reshape-inferred", lambda: T(2, 3).reshape(4, -1), ValueError, r"reshape: .*\(2, 3\) into \(4, -1\)"),
    ("reshape-two-inferred", lambda: T(2, 3).reshape(-1, -1), ValueError, r"reshape: .*\(-1, -1\)"),
    ("matmul", lambda: T(2, 3) @ T(2, 3), ValueError, r"matmul: shapes \(2, 3\) and \(2, 3\)"),
    ("matmul-vectors", lambda: T(3) @ T(2), ValueError, r"matmul: shapes \(3,\) and \(2,\)"),
    ("matmul-batch", lambda: T(2, 2, 3) @ T(3, 3, 4), ValueError, r"matmul: .*\(2, 2, 3\) and \(3, 3, 4\)"),
    ("add-broadcast", lambda: T(2, 3) + T(4), ValueError, r"add: shapes \(2, 3\) and \(4,\)"),
    ("add_relu-shapes", lambda: fusion.add_relu(T(2, 3, 4, 4), T(2, 3, 4, 1)), ValueError,
     r"add_relu: the shapes of a and b must be equal, got \(2, 3, 4, 4\) and \(2, 3, 4, 1\)"),
    ("add_relu-dtypes", lambda: fusion.add_relu(T(2, 3), T(2, 3, dtype=np.float64)), TypeError, r"add_relu: dtypes differ"),
    ("mul-broadcast", lambda: T(4) * T(2, 3), ValueError, r"mul: shapes \(4,\) and \(2, 3\)"),
    ("transpose", lambda: T(2, 3).transpose(0, 0), ValueError, r"transpose: .*\(0, 0\)"),
    ("flatten", lambda: T(2, 3).flatten(2), ValueError, r"flatten: axis 2 .* 2 dimensions"),
    ("sum-axis", lambda: T(2, 3).sum(axis=-3), ValueError, r"sum: axis -3 .* 2 dimensions"),
    ("item", lambda: T(2, 3).item(), ValueError, r"item: .*\(2, 3\)"),
]


@pytest.mark.parametrize("call,exception,pattern", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_raises_a_clear_error(call, exception, pattern):
    with pytest.raises(exception, match=pattern):
        call()


def test_case_ids_are_unique():
    assert len({c[0] for c in CASES}) == len(CASES)


def test_errors_come_before_any_state_changes():
    """A rejected train-mode batch_norm call leaves the running statistics as they were."""
    rm, rv = T(3), T(3)
    with pytest.raises(TypeError, match="batch_norm"):
        F.batch_norm(T(2, 3, 4, 4), rm, rv, T(3, dtype=np.float64), training=True)
    np.testing.assert_array_equal(rm.numpy(), np.ones(3))
    np.testing.assert_array_equal(rv.numpy(), np.ones(3))
