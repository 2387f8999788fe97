"""Every op's backward against central differences (minires.gradcheck, full Jacobians, float64),
over the configurations of op_cases.CASES."""
import importlib
import inspect
import pkgutil

import numpy as np
import pytest

import minires
import minires.functional as F
import minires.ops
from op_cases import CASES, minires_inputs


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_gradcheck(case):
    inputs = minires_inputs(case, np.float64)
    assert minires.gradcheck(lambda *xs: case.fn(F, *xs), inputs)


# Ops that move data rather than compute: a case needs a second device, which tests/test_device_seam.py has.
NOT_ARITHMETIC = {"ToDevice"}


def _op_classes():
    """Every Function subclass defined in minires/ops/ that computes (not NOT_ARITHMETIC)."""
    found = set()
    for info in pkgutil.iter_modules(minires.ops.__path__):
        module = importlib.import_module(f"minires.ops.{info.name}")
        found.update(obj for obj in vars(module).values()
                     if inspect.isclass(obj) and issubclass(obj, minires.Function) and obj.__module__ == module.__name__
                     and obj.__name__ not in NOT_ARITHMETIC)
    return found


def test_every_op_has_a_case(monkeypatch):
    """A new op in minires/ops/ needs a case in op_cases.py, or it would go unchecked."""
    ops, applied = _op_classes(), set()

    def recording(op):
        forward = op.forward

        def record(ctx, *args):
            applied.add(op)
            return forward(ctx, *args)
        return staticmethod(record)

    for op in ops:
        monkeypatch.setattr(op, "forward", recording(op))
    for case in CASES:
        case.fn(F, *minires_inputs(case, np.float64))
    missing = sorted(op.__name__ for op in ops - applied)
    assert not missing, f"ops without a case in tests/op_cases.py: {missing}"


def test_residual_gradient_reaches_both_branches():
    """y = f(x) + x: x.grad is f's input gradient plus the upstream gradient itself."""
    rng = np.random.default_rng(0)
    x_data, w_data, g = rng.standard_normal((2, 3, 4, 4)), rng.standard_normal((3, 3, 3, 3)), rng.standard_normal((2, 3, 4, 4))

    def grads(residual):
        x, w = minires.Tensor(x_data.copy(), requires_grad=True), minires.Tensor(w_data, requires_grad=True)
        y = F.relu(F.conv2d(x, w, padding=1))
        (y + x if residual else y).backward(g)
        return x.grad.numpy(), w.grad.numpy()

    (gx_res, gw_res), (gx_branch, gw_branch) = grads(True), grads(False)
    np.testing.assert_allclose(gx_res, gx_branch + g, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(gw_res, gw_branch, rtol=1e-12, atol=1e-12)
