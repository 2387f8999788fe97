"""A test-only device, "testdev": arrays in NumPy memory under a device name of their own.

It proves the device seam: everything device-specific in minires is registered under a device's name
(minires.device.register_device, kernels' Kernel.register, plans.register), so a device with its own
array type, array module, kernels and convolution plan runs the engine with no change to any op.
Its arrays are an ndarray subclass, TestArray; its array module wraps NumPy's functions so that the
arrays they make are TestArrays (ufuncs keep the subclass by themselves). Any array that leaves the
device by accident (a stray np.empty in a path that should use the array module) is a plain ndarray:
the tests look for those.
"""
import numpy as np

from minires import kernels, plans
from minires.device import Device, register_device

NAME = "testdev"


class TestArray(np.ndarray):
    """An array of the test device: NumPy memory, another type."""
    __test__ = False  # not a pytest class


def _on_device(value):
    if type(value) is np.ndarray:
        return value.view(TestArray)
    if isinstance(value, tuple):
        return tuple(_on_device(v) for v in value)
    return value


class _ArrayModule:
    """NumPy's functions, making TestArrays: the test device's ``xp``."""
    __name__ = "testdev_numpy"

    def __getattr__(self, name):
        attr = getattr(np, name)
        if isinstance(attr, (type, np.ufunc)) or not callable(attr):
            return attr
        return lambda *args, **kwargs: _on_device(attr(*args, **kwargs))


calls = {"plan": 0, "relu_backward": 0}


class CountingIm2colGemm(plans.Im2colGemm):
    """The test device's own convolution plan: the reference plan, counting its forwards."""
    name = "testdev im2col+gemm"

    def forward(self, x, w, b):
        calls["plan"] += 1
        return super().forward(x, w, b)


def _relu_backward(g, y):
    """The test device's own relu_backward: the reference, counted."""
    calls["relu_backward"] += 1
    return kernels.relu_backward.impls["numpy"](g, y)


def install():
    """Register the device, its plan and its kernel (once)."""
    register_device(Device(NAME, TestArray, _ArrayModule(),
                           to_host=lambda a: np.array(a).view(np.ndarray), from_host=lambda a: np.array(a).view(TestArray)))
    if not plans.rules(NAME):
        plans.register(NAME, plans.Rule(CountingIm2colGemm, lambda p, needs: True, "the test device's only plan"))
        kernels.relu_backward.register(NAME)(_relu_backward)
