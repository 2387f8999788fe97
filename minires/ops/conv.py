"""2-D convolution (cross-correlation, as PyTorch's F.conv2d), one graph node per call.

The arithmetic lives in plans (minires/plans/): whole algorithms, forward beside backward, among
which plans.choose picks one per problem (its shapes, dtype, device, and which gradients are
needed). The reference plan, plans/im2col_gemm.py, is the one to read first. This op checks its
arguments, asks for a plan, and runs it.
"""
from .. import plans
from .. import profiler
from ..autograd.function import Function
from ..device import device_of
from .checks import pair, positive_output, same_dtype, tensor_arg


class Conv2d(Function):
    @staticmethod
    def forward(ctx, x, weight, bias, problem):
        ctx.plan = plans.choose(problem, ctx.needs_input_grad[:3])
        y, saved = _run(ctx.plan, "forward", x, weight, bias)
        ctx.save_for_backward(*saved)
        return y

    @staticmethod
    def backward(ctx, g):
        return (*_run(ctx.plan, "backward", ctx.saved_tensors, g), None)

    def release(self):
        """Free the graph below; the plan takes back what it lent (a pooled buffer) for the next step."""
        plan, saved = vars(self).get("plan"), vars(self).get("_saved")
        super().release()
        if saved is not None:
            plan.release(saved)


def _run(plan, direction, *args):
    """plan.forward or plan.backward on args, recorded when a profile is active (minires.profile)."""
    if profiler.active is None:
        return getattr(plan, direction)(*args)
    return profiler.active.plan(plan, direction, *args)


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """PyTorch's F.conv2d: input (N, C, H, W), weight (Cout, C/groups, kh, kw), bias (Cout,) or None."""
    op = "conv2d"
    x, w = tensor_arg(op, "input", input, 4), tensor_arg(op, "weight", weight, 4)
    b = None if bias is None else tensor_arg(op, "bias", bias, 1)
    same_dtype(op, input=x, weight=w, bias=b)
    stride, padding, dilation = pair(op, "stride", stride, 1), pair(op, "padding", padding, 0), pair(op, "dilation", dilation, 1)
    if not isinstance(groups, int) or groups < 1:
        raise ValueError(f"{op}: groups must be a positive int, got {groups!r}")
    cout, cg, kh, kw = w.shape
    if min(w.shape) < 1:
        raise ValueError(f"{op}: weight shape {w.shape} has an empty dimension")
    if x.shape[1] % groups or cout % groups:
        raise ValueError(f"{op}: groups={groups} must divide the input channels ({x.shape[1]}) and the output channels ({cout})")
    if cg * groups != x.shape[1]:
        raise ValueError(f"{op}: input of shape {x.shape} has {x.shape[1]} channels, but weight of shape {w.shape} "
                         f"with groups={groups} expects {cg * groups}")
    if b is not None and b.shape != (cout,):
        raise ValueError(f"{op}: bias must have shape ({cout},) for weight of shape {w.shape}, got {b.shape}")
    problem = plans.ConvProblem(x.shape, w.shape, stride, padding, dilation, groups, x.dtype, device_of(x.data).name)
    positive_output(op, x.shape[2:], problem.out_hw, kernel=(kh, kw), stride=stride, padding=padding, dilation=dilation)
    return Conv2d.apply(x, w, b, problem)
