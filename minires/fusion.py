"""Fusion: the same model, with each batch norm and the residual addition and ReLU that follow it
computed as one op.

Models are written as torchvision writes them: ``out = self.bn2(self.conv2(out)); out += identity;
out = self.relu(out)``, three ops, three passes over the activations and three graph nodes.
``fuse(model)`` returns an equivalent model (the same parameters, buffers and state-dict keys) whose
modules run ``relu(bn(x) + identity)`` in one pass (ops/batchnorm.py's fused_batch_norm): fewer
passes and fewer saved arrays. It swaps each module whose class has a fused twin registered here
(register_fusion) for that twin: a subclass that changes only forward. ``minires train`` and the
benchmarks fuse by default; the unfused model is the one to read.

The functional forms, for models of your own: ``batch_norm`` (F.batch_norm with relu= and
residual=) and ``add_relu`` (relu(a + b) as one op).
"""
import copy

from . import nn
from .ops.batchnorm import fused_batch_norm as batch_norm
from .ops.checks import same_dtype, tensor_arg
from .ops.elementwise import add_relu as _add_relu

__all__ = ["fuse", "register_fusion", "batch_norm", "add_relu", "FusedSequential"]

_twins = {}  # module class -> its fused subclass


def register_fusion(cls, fused_cls):
    """Let fuse() run modules of class ``cls`` as ``fused_cls``, a subclass overriding forward only."""
    if not issubclass(fused_cls, cls):
        raise TypeError(f"register_fusion: {fused_cls.__name__} must subclass {cls.__name__}")
    _twins[cls] = fused_cls


def fuse(model, inplace=False):
    """``model`` (a copy unless inplace) with every module that has a fused twin running as it."""
    model = model if inplace else copy.deepcopy(model)
    for m in model.modules():
        twin = _twins.get(type(m))
        if twin is not None:
            m.__class__ = twin
    return model


def add_relu(a, b):
    """relu(a + b) as one op, for a residual block's output: a and b of one shape and dtype. One graph
    node instead of an add's and a relu's, the sum clamped in place."""
    op = "add_relu"
    a, b = tensor_arg(op, "a", a), tensor_arg(op, "b", b)
    if a.shape != b.shape:
        raise ValueError(f"{op}: the shapes of a and b must be equal, got {a.shape} and {b.shape}")
    same_dtype(op, a=a, b=b)
    return _add_relu(a, b)


class FusedSequential(nn.Sequential):
    """Sequential with each BatchNorm2d that a ReLU follows run as one op with it."""

    def forward(self, x):
        mods, i = list(self._modules.values()), 0
        while i < len(mods):
            if isinstance(mods[i], nn.BatchNorm2d) and i + 1 < len(mods) and type(mods[i + 1]) is nn.ReLU:
                x, i = mods[i].fused(x, relu=True), i + 2
            else:
                x, i = mods[i](x), i + 1
        return x


register_fusion(nn.Sequential, FusedSequential)
