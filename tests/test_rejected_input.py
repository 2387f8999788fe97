"""Input minires cannot compute with is refused where it enters, in one line: dtypes other than
float32/float64 (float16 fails deep inside Numba otherwise), non-numeric data, and a batch norm
given the wrong number of channels."""
import re

import numpy as np
import pytest

import minires
from minires import nn
from op_cases import CASES, run_minires

UNSUPPORTED = "dtype {} is not supported: minires computes in float32 or float64"


def _message(e):
    return f"{type(e.value).__name__}: {e.value}"


@pytest.mark.parametrize("call, message", [
    (lambda: minires.tensor(["a", "b"]),
     "TypeError: minires.tensor: expected booleans, integers or floats, got ['a', 'b'] (dtype <U1)"),
    (lambda: minires.tensor([1, None]),
     "TypeError: minires.tensor: expected booleans, integers or floats, got [1, None] (dtype object)"),
    (lambda: minires.tensor(np.zeros(2, np.float16)),
     "TypeError: minires.tensor: dtype float16 is not supported: minires computes in float32 or float64"),
    (lambda: minires.tensor([1.0], dtype=np.float16),
     "TypeError: minires.tensor: dtype float16 is not supported: minires computes in float32 or float64"),
    (lambda: nn.Linear(2, 2).to(np.float16),
     "TypeError: Module.to: dtype float16 is not supported: minires computes in float32 or float64"),
    (lambda: nn.Linear(2, 2).to(np.int64), "TypeError: Module.to: expected a device or a floating-point dtype, got int64"),
    (lambda: nn.Linear(2, 2).to("gpu"), "TypeError: Module.to: 'gpu' is neither a device nor a dtype"),
    (lambda: minires.tensor(np.ones(2, np.float32)).to(np.float16),
     "TypeError: Cast: dtype float16 is not supported: minires computes in float32 or float64"),
    (lambda: nn.BatchNorm2d(8)(minires.tensor(np.zeros((2, 16, 3, 3), np.float32))),
     "ValueError: BatchNorm2d(8): input has 16 channels, expected 8"),
])
def test_one_line(call, message):
    with pytest.raises((TypeError, ValueError)) as e:
        call()
    assert _message(e) == message


def test_a_ragged_list():
    with pytest.raises(ValueError, match=r"^minires.tensor: setting an array element with a sequence"):
        minires.tensor([[1.0], [1.0, 2.0]])


def test_supported_dtypes_still_made():
    assert [minires.tensor(v).dtype for v in ([True], [1], [1.0], np.ones(1, np.uint8), np.ones(1))] == \
        [np.bool_, np.int64, np.float32, np.uint8, np.float64]


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("dtype", [np.float16, np.longdouble])
def test_every_op_refuses_other_floats_under_both_backends(backend, dtype):
    """Each op case (tests/op_cases.py) given inputs of ``dtype``: a TypeError naming the op, from
    either kernel backend (Numba's kernels have no float16 versions; NumPy's would run)."""
    previous = minires.get_kernels()
    minires.set_kernels(backend)
    try:
        for case in CASES:
            with pytest.raises(TypeError) as e:
                run_minires(case, dtype)
            assert re.fullmatch(r"\w+: " + re.escape(UNSUPPORTED.format(np.dtype(dtype))), str(e.value)), (case.name, e.value)
    finally:
        minires.set_kernels(previous)
