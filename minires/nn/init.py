"""In-place initializers for parameters, as torch.nn.init (drawing from minires.manual_seed's generator).
fan_in = in_channels/groups * kh * kw for a conv weight (out, in/groups, kh, kw), in for a linear one."""
import math

from ..device import array_module
from ..random import generator


def _fans(t):
    receptive = math.prod(t.shape[2:])
    return t.shape[1] * receptive, t.shape[0] * receptive


def _fill(t, values):
    t.data[...] = array_module(t.data).asarray(values, dtype=t.dtype)
    return t


def uniform_(t, a=0.0, b=1.0):
    return _fill(t, generator().uniform(a, b, t.shape))


def normal_(t, mean=0.0, std=1.0):
    return _fill(t, generator().normal(mean, std, t.shape))


def constant_(t, value):
    t.data[...] = value
    return t


def zeros_(t):
    return constant_(t, 0)


def ones_(t):
    return constant_(t, 1)


def calculate_gain(nonlinearity, a=None):
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        a = 0.01 if a is None else a
        return math.sqrt(2.0 / (1 + a * a))
    if nonlinearity in ("linear", "conv2d", "sigmoid"):
        return 1.0
    raise ValueError(f"calculate_gain: unsupported nonlinearity {nonlinearity!r}")


def kaiming_uniform_(t, a=0.0, mode="fan_in", nonlinearity="leaky_relu"):
    """U(-b, b) with b = gain * sqrt(3 / fan)."""
    fan = _fans(t)[0 if mode == "fan_in" else 1]
    bound = calculate_gain(nonlinearity, a) * math.sqrt(3.0 / fan)
    return uniform_(t, -bound, bound)


def kaiming_normal_(t, a=0.0, mode="fan_in", nonlinearity="leaky_relu"):
    """N(0, std^2) with std = gain / sqrt(fan)."""
    fan = _fans(t)[0 if mode == "fan_in" else 1]
    return normal_(t, 0.0, calculate_gain(nonlinearity, a) / math.sqrt(fan))


def default_weight_and_bias_(weight, bias):
    """PyTorch's default for Conv and Linear layers: kaiming_uniform_(a=sqrt(5)), i.e.
    U(-1/sqrt(fan_in), 1/sqrt(fan_in)), for the weight and the same bound for the bias."""
    kaiming_uniform_(weight, a=math.sqrt(5))
    if bias is not None:
        bound = 1 / math.sqrt(_fans(weight)[0])
        uniform_(bias, -bound, bound)
