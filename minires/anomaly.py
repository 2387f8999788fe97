"""Anomaly detection: find the op, and the module, whose forward or backward first makes a NaN or an
infinity, as PyTorch's ``torch.autograd.detect_anomaly``.

    with minires.detect_anomaly():
        loss = F.cross_entropy(model(x), y)     # AnomalyError: Conv2d forward returned nan values
        loss.backward()                          #   in ResNet's layer1.0.conv1 (Conv2d); ...

Once a NaN appears, every op after it passes it on, so the error worth reading is the first. In
this mode Function.apply checks each op's output, run_backward checks each gradient an op's backward
returns, and Module.__call__ keeps the stack of modules being called, so the error names the op,
the module it ran in, and whether its inputs were already not finite (then the values came from
outside the ops: the data, or parameters an optimizer step made infinite). Every check reads the
whole array: slow, for finding a bug. Off (the default) each hook costs one check of ``enabled``.
"""
import contextlib

from .device import array_module, is_array

__all__ = ["detect_anomaly", "AnomalyError"]

enabled = False
_modules = []  # the modules being called, outermost first (only while enabled or a minires.profile is active)


class AnomalyError(RuntimeError):
    """An op's forward or backward made a NaN or an infinity inside detect_anomaly()."""


@contextlib.contextmanager
def detect_anomaly():
    """Context manager: raise AnomalyError at the first op whose output, or whose backward's
    gradient, holds a NaN or an infinity (see the module docstring)."""
    global enabled
    previous, enabled = enabled, True
    try:
        yield
    finally:
        enabled = previous


def call_module(module, args, kwargs):
    """module.forward(*args, **kwargs), with module on the stack that errors name (Module.__call__)."""
    _modules.append(module)
    try:
        return module.forward(*args, **kwargs)
    finally:
        _modules.pop()


def check_forward(node, inputs, out):
    """After an op's forward: remember where it ran (for its backward), and raise if its output
    array ``out`` is not finite. ``inputs``: the op's arguments (arrays, Tensors' arrays, or other)."""
    node.anomaly_modules = tuple(_modules)
    if _finite(out):
        return
    op = type(node).__name__
    bad = next((i for i, a in enumerate(inputs) if not _finite(a)), None)
    cause = " from finite inputs" if bad is None else \
        f"; its input {bad} already held {_kind(inputs[bad])} values (data, or parameters no longer finite)"
    raise AnomalyError(f"detect_anomaly: {op} forward returned {_kind(out)} values{_where(node)}{cause}")


def check_backward(node, grad, grads):
    """After an op's backward: raise if the gradient it was given, or one it returned, is not finite."""
    op = type(node).__name__
    if not _finite(grad):
        raise AnomalyError(f"detect_anomaly: the gradient given to {op} backward holds {_kind(grad)} values"
                           f"{_where(node)} (passed to backward(), or a sum over its uses that overflowed)")
    for i, g in enumerate(grads):
        if g is not None and not _finite(g):
            raise AnomalyError(f"detect_anomaly: {op} backward returned {_kind(g)} values in its gradient "
                               f"for input {i}{_where(node)} from a finite gradient")


def _finite(a):
    """False for a floating-point array holding a NaN or an infinity; True for anything else (an op's
    other arguments: numbers, shapes, a convolution's problem)."""
    return not (is_array(a) and a.dtype.kind == "f") or bool(array_module(a).isfinite(a).all())


def _kind(a):
    return "nan" if bool(array_module(a).isnan(a).any()) else "inf"


def _where(node):
    """The innermost module the op ran in, named in the outermost one: " in ResNet's layer1.0.conv1
    (Conv2d)"; "" for an op run outside any module."""
    modules = getattr(node, "anomaly_modules", ())
    if not modules:
        return ""
    names = []
    for parent, child in zip(modules, modules[1:]):
        names.append(next((k for k, m in parent._modules.items() if m is child), f"<{type(child).__name__}>"))
    inner, outer = type(modules[-1]).__name__, type(modules[0]).__name__
    return f" in {outer}'s {'.'.join(names)} ({inner})" if names else f" in {outer}"
