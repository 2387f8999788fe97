"""gradcheck: compare backward's gradients with central differences, as torch.autograd.gradcheck.

For every output y_k and every input x_i that requires grad, the analytical Jacobian (one backward
pass per output element, with a one-hot grad) must match the numerical one,
    dy/dx[:, j] ~ (f(x + eps e_j) - f(x - eps e_j)) / (2 eps),
elementwise within atol + rtol * |numerical|. fast_mode compares one random projection v^T J u per
(output, input) pair instead, for inputs too large for a full Jacobian. Use float64 inputs.
"""
import warnings

import numpy as np

from ..device import array_module
from .tensor import Tensor, no_grad, run_backward


class GradcheckError(RuntimeError):
    """Raised by gradcheck when an analytical gradient does not match the numerical one."""


def gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-3, raise_exception=True, fast_mode=False):
    """True if fn's backward agrees with finite differences at ``inputs`` (a Tensor or a sequence);
    otherwise raise GradcheckError naming the output, the input, the element and both values
    (or return False when raise_exception is False)."""
    for k, i, index, num, ana in compare(fn, inputs, eps, fast_mode):
        bad = mismatch(num, ana, atol, rtol)
        if bad.any():
            j = np.unravel_index(np.argmax(bad), bad.shape)
            where = "projection v^T J u" if fast_mode else f"element {index(j[1])} (output element {j[0]})"
            if not raise_exception:
                return False
            raise GradcheckError(
                f"gradcheck: Jacobian mismatch for output {k} with respect to input {i}, at {where}:\n"
                f"  numerical  {float(num[j])!r}\n  analytical {float(ana[j])!r}\n"
                f"  (atol={atol}, rtol={rtol}; {int(bad.sum())} of {bad.size} entries differ)")
    return True


def mismatch(num, ana, atol, rtol):
    """The entries where the analytical value is off: |analytical - numerical| > atol + rtol |numerical|."""
    return np.abs(ana - num) > atol + rtol * np.abs(num)


def compare(fn, inputs, eps=1e-6, fast_mode=False):
    """Yield (output k, input i, index(j) -> element of input i, numerical, analytical) per pair:
    full Jacobians of shape (output size, input size), or in fast mode 1x1 projections."""
    inputs = (inputs,) if isinstance(inputs, Tensor) else tuple(inputs)
    checked = [i for i, t in enumerate(inputs) if isinstance(t, Tensor) and t.requires_grad]
    if not checked:
        raise ValueError("gradcheck: no input requires grad")
    for i in checked:
        t = inputs[i]
        if not t.is_leaf:
            raise ValueError(f"gradcheck: input {i} is not a leaf tensor (it was computed by an op)")
        if t.dtype != np.float64:
            warnings.warn(f"gradcheck: input {i} is {t.dtype}, not float64: the check is unreliable", stacklevel=3)
    outputs = _outputs(fn(*inputs))
    rng = np.random.default_rng(0)
    for k, y in enumerate(outputs):
        if not y.requires_grad:
            continue
        for i in checked:
            x = inputs[i]
            if fast_mode:
                u, v = rng.standard_normal(x.shape), rng.standard_normal(y.shape)
                num = np.array([[np.vdot(v, _directional(fn, inputs, k, x, u, eps))]])
                ana = np.array([[np.vdot(_vjp(y, x, v), u)]])
                yield k, i, lambda j: "projection", num, ana
            else:
                num = np.stack([_directional(fn, inputs, k, x, e, eps).ravel() for e in _basis(x.shape)], axis=1)
                ana = np.stack([_vjp(y, x, e).ravel() for e in _basis(y.shape)], axis=0)
                yield k, i, lambda j, shape=x.shape: tuple(int(v) for v in np.unravel_index(j, shape)), num, ana


def _outputs(out):
    return (out,) if isinstance(out, Tensor) else tuple(o for o in out if isinstance(o, Tensor))


def _basis(shape):
    for j in range(int(np.prod(shape))):
        e = np.zeros(int(np.prod(shape)))
        e[j] = 1
        yield e.reshape(shape)


def _directional(fn, inputs, k, x, u, eps):
    """(f_k(x + eps u) - f_k(x - eps u)) / (2 eps) as a host array, restoring x afterwards."""
    original = x.data
    xp = array_module(original)
    step = xp.asarray(u, dtype=original.dtype) * eps
    try:
        with no_grad():
            x.data = xp.asarray(original + step)  # asarray: a 0-d sum is a NumPy scalar, not an array
            plus = _outputs(fn(*inputs))[k].numpy()
            x.data = xp.asarray(original - step)
            minus = _outputs(fn(*inputs))[k].numpy()
    finally:
        x.data = original
    return (plus - minus) / (2 * eps)


def _vjp(y, x, v):
    """v^T dy/dx as a host array (zeros where x does not reach y), keeping y's graph."""
    g = run_backward([y], [array_module(y.data).asarray(v, dtype=y.dtype)], retain_graph=True).get(x)
    return np.zeros(x.shape) if g is None else Tensor(g).numpy()
