"""Which plan runs each convolution of a model, and why: ``minires explain MODEL``.

``minires.explain(model, input_shape)`` runs the model once on zeros (the values do not change any
choice: plans.choose sees shapes, dtype, device and which gradients are needed) and returns a row
per convolution call, in call order. The model is left as it was (mode, running statistics).
"""
import contextlib
import sys
from dataclasses import dataclass

import numpy as np

from . import plans
from .autograd.tensor import Tensor, no_grad
from .device import get_device
from .nn import Conv2d, Module

__all__ = ["explain", "ExplainRow"]


@dataclass(frozen=True)
class ExplainRow:
    module: str          # the Conv2d module's qualified name ("" for a call outside one)
    input_shape: tuple
    weight_shape: tuple
    output_shape: tuple
    plan: str            # the plan's name, e.g. "im2col+gemm (blocked)"
    why: str             # the rule that chose it
    chosen: plans.ConvPlan


def explain(model, input_shape, training=True, device="cpu", dtype=None, requires_grad=False):
    """Rows (ExplainRow) for every convolution that ``model`` (a Module, or any callable of one
    Tensor) runs on an input of ``input_shape`` (N, C, H, W) on ``device``, in training mode (batch
    statistics, gradients wanted for the parameters; the input's too with requires_grad) or not.
    dtype defaults to the model's parameters' (float32 for a callable)."""
    params = list(model.parameters()) if isinstance(model, Module) else []
    dtype = np.dtype(dtype or (params[0].dtype if params else np.float32))
    xp = get_device(device).xp
    x = Tensor(xp.zeros(tuple(input_shape), dtype=dtype), requires_grad=requires_grad)
    with _untouched(model, training), plans.recording() as seen, _named_convolutions(model, seen) as names:
        with contextlib.nullcontext() if training else no_grad():
            model(x)
    return [ExplainRow(names.get(i, ""), p.problem.x_shape, p.problem.w_shape, (p.problem.n, p.problem.cout) + p.problem.out_hw,
                       _plan_name(p), p.why, p) for i, p in enumerate(seen)]


def _plan_name(plan):
    return f"{plan.name} -> {_plan_name(plan.inner)}" if isinstance(plan, plans.LiveTaps) else plan.name


@contextlib.contextmanager
def _untouched(model, training):
    """Run ``model`` in the given mode, then give it back its modes and buffers (running statistics)."""
    if not isinstance(model, Module):
        yield
        return
    modes = [(m, m.training) for m in model.modules()]
    buffers = [(b, b.data.copy()) for b in model.buffers()]
    model.train(training)
    try:
        yield
    finally:
        for m, mode in modes:
            m.training = mode
        for b, data in buffers:
            b.data = data


@contextlib.contextmanager
def _named_convolutions(model, seen):
    """{index in seen: the name of the Conv2d module whose call chose it}, filled while the block runs."""
    names = {}
    convs = [(name, m) for name, m in model.named_modules() if isinstance(m, Conv2d)] if isinstance(model, Module) else []
    for name, m in convs:
        m.forward = _noting(m.forward, name, seen, names)  # an instance attribute: found before the method
    try:
        yield names
    finally:
        for _, m in convs:
            del m.forward


def _noting(forward, name, seen, names):
    def call(x):
        first = len(seen)
        out = forward(x)
        names.update((i, name) for i in range(first, len(seen)))
        return out
    return call


# --- the command line: minires explain MODEL [--input N,C,H,W] [--train|--eval] [--device cpu] ------
def add_arguments(parser):
    parser.add_argument("model", help="a model of the zoo, e.g. resnet50")
    parser.add_argument("--input", default=None, help="input shape N,C,H,W (default 1,3,224,224; 1,3,32,32 for the "
                        "CIFAR networks)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--train", dest="training", action="store_true", help="training: gradients wanted")
    mode.add_argument("--eval", dest="training", action="store_false", help="inference (the default)")
    parser.add_argument("--device", default="cpu", help="the device (default cpu)")
    parser.add_argument("--small-input", action="store_true", help="the 3x3 stem without max-pool for 32x32 images")


def run(args):
    from . import models
    try:
        model = models.build(args.model, small_input=args.small_input)
        shape = _shape(args.input or ("1,3,32,32" if models.is_cifar(args.model) else "1,3,224,224"))
        model.to(args.device)
        rows = explain(model, shape, training=args.training, device=args.device)
    except (ValueError, RuntimeError) as e:
        print(f"minires explain: error: {e}", file=sys.stderr)
        return 2
    print(_table(rows))
    print(f"{len(rows)} convolutions, {'training' if args.training else 'inference'}, input {shape}, "
          f"device {args.device}")
    return 0


def _shape(text):
    try:
        shape = tuple(int(n) for n in text.replace("x", ",").split(","))
    except ValueError:
        shape = ()
    if len(shape) != 4 or min(shape) < 1:
        raise ValueError(f"--input must be N,C,H,W with positive sizes, e.g. 1,3,224,224, got {text!r}")
    return shape


def _table(rows):
    lines = [("module", "input", "weight", "output", "plan", "why")] + [
        (r.module, _dims(r.input_shape), _dims(r.weight_shape), _dims(r.output_shape), r.plan, r.why) for r in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(5)]
    return "\n".join("  ".join([c.ljust(w) for c, w in zip(line[:5], widths)] + [line[5]]) for line in lines)


def _dims(shape):
    return "x".join(map(str, shape))

