"""Print a model's layers with output shapes, parameters and multiply-accumulates.

``minires.summary(model, input_shape)`` runs one forward pass on zeros (in eval mode, without a
graph) with every module's forward temporarily wrapped to note its output's shape and its MACs:
no hooks are needed, and the model is left as it was. A module called several times (a block's ReLU)
has a row per call. MACs count the convolutions and linear layers only (normalization, activations,
pooling and additions are a small fraction):
    Conv2d: N * Cout * Ho * Wo * (Cin / groups) * kh * kw      Linear: rows * in * out
"""
import argparse
import sys

import numpy as np

from .device import array_module
from . import models
from .nn import Conv2d, Linear
from .autograd.tensor import Tensor, no_grad


class ModelSummary:
    """rows: one (name, type, output shape, parameters, MACs, depth) per module call, in call
    order; a container's parameters and MACs include its children's. Totals over the model."""

    def __init__(self, rows, input_shape, output_shape, total_params, trainable_params, total_macs):
        self.rows, self.input_shape, self.output_shape = rows, input_shape, output_shape
        self.total_params, self.trainable_params, self.total_macs = total_params, trainable_params, total_macs

    def row(self, name):
        """The first row of the module called ``name`` (e.g. "layer4" or "layer1.0.conv1")."""
        for r in self.rows:
            if r["name"] == name:
                return r
        raise KeyError(f"summary: no module named {name!r}")

    def table(self, depth=None):
        """The table as text, with the modules nested at most ``depth`` deep (all when None)."""
        lines = [("Layer (type)", "Output shape", "Params", "MACs")] + [
            (f"{'  ' * (r['depth'] - 1)}{r['name']} ({r['type']})", str(r["output_shape"]), f"{r['params']:,}",
             f"{r['macs']:,}") for r in self.rows if depth is None or r["depth"] <= depth]
        widths = [max(len(line[i]) for line in lines) for i in range(4)]
        text = ["  ".join([line[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(line[1:], widths[1:])])
                for line in lines]
        rule = "-" * len(text[0])
        return "\n".join([rule, text[0], rule, *text[1:], rule,
                          f"Input shape: {self.input_shape}    Output shape: {self.output_shape}",
                          f"Total params: {self.total_params:,} ({self.total_params / 1e6:.2f} M)",
                          f"Trainable params: {self.trainable_params:,}",
                          f"Non-trainable params: {self.total_params - self.trainable_params:,}",
                          f"MACs (conv + linear): {self.total_macs:,} ({self.total_macs / 1e9:.2f} G)", rule])

    def __str__(self):
        return self.table()


def summary(model, input_shape, depth=None, print_table=True):
    """Summarize ``model`` on an input of shape (C, H, W) (a batch of one) or (N, C, H, W), made on
    the device and with the dtype of the model's parameters; print the table unless print_table is
    False (showing modules at most ``depth`` deep) and return the ModelSummary."""
    input_shape = tuple(int(n) for n in input_shape)
    if len(input_shape) == 3:
        input_shape = (1,) + input_shape
    if len(input_shape) != 4 or min(input_shape) < 1:
        raise ValueError(f"summary: input_shape must be (C, H, W) or (N, C, H, W) with positive sizes, "
                         f"got {input_shape}")
    params = list(model.parameters())
    like = params[0].data if params else np.zeros(0, np.float32)
    x = Tensor(array_module(like).zeros(input_shape, dtype=like.dtype))
    rows = []
    modes = [(m, m.training) for m in model.modules()]
    wrapped = [(name, m) for name, m in model.named_modules() if name]  # not the model: its row is the total
    for name, m in wrapped:
        m.forward = _traced(m, name, rows)  # an instance attribute: __call__ finds it before the method
    try:
        model.eval()
        with no_grad():
            out = model(x)
    finally:
        for _, m in wrapped:
            del m.forward
        for m, training in modes:
            m.training = training
    result = ModelSummary(rows, input_shape, tuple(out.shape), sum(p.numel() for p in params),
                          sum(p.numel() for p in params if p.requires_grad), sum(r["macs"] for r in rows if r["leaf"]))
    if print_table:
        print(result.table(depth))
    return result


def _traced(module, name, rows):
    """module.forward, noting a row (with the output's shape and the MACs) per call."""
    forward, leaf = module.forward, next(module.children(), None) is None

    def traced(*args, **kwargs):
        row = dict(name=name, type=type(module).__name__, depth=name.count(".") + 1, leaf=leaf,
                   params=sum(p.numel() for p in module.parameters()))
        rows.append(row)
        first = len(rows)
        out = forward(*args, **kwargs)
        row["output_shape"] = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        row["macs"] = _macs(module, out) if leaf else sum(r["macs"] for r in rows[first:] if r["leaf"])
        return out

    return traced


def _macs(module, out):
    """Multiply-accumulates of one call of a leaf module that produced ``out``."""
    if isinstance(module, Conv2d):
        n, _, ho, wo = out.shape
        return n * ho * wo * module.weight.numel()  # weight: Cout * Cin/groups * kh * kw
    if isinstance(module, Linear):
        return out.numel() // module.out_features * module.weight.numel()  # rows * out * in
    return 0


# --- the command line: minires summary MODEL [--input 3x224x224] --------------------------------
MODELS = models.ARCHITECTURES


def add_arguments(parser):
    parser.add_argument("model", choices=MODELS, metavar="MODEL", help="the architecture: " + ", ".join(MODELS))
    parser.add_argument("--input", default=None, type=_shape,
                        help="input shape CxHxW or NxCxHxW (default 3x224x224; 3x32x32 for the CIFAR networks)")
    parser.add_argument("--num-classes", type=int, default=None,
                        help="classifier outputs (default 1000; 10 for the CIFAR networks)")
    parser.add_argument("--small-input", action="store_true", help="the 3x3 stem without max-pool for 32x32 images")
    parser.add_argument("--depth", type=int, default=None, help="show modules at most this deep (default: all)")


def run(args):
    try:
        model = models.build(args.model, args.num_classes, args.small_input)
    except ValueError as e:
        print(f"minires summary: error: {e}", file=sys.stderr)
        return 2
    summary(model, args.input or ((3, 32, 32) if models.is_cifar(args.model) else (3, 224, 224)), depth=args.depth)
    return 0


def _shape(text):
    try:
        shape = tuple(int(n) for n in text.lower().split("x"))
    except ValueError:
        shape = ()
    if len(shape) not in (3, 4) or min(shape) < 1:
        raise argparse.ArgumentTypeError(f"expected CxHxW or NxCxHxW with positive sizes, e.g. 3x224x224, got {text!r}")
    return shape
