"""The array module (numpy or cupy) of an array, without importing CuPy when it is not in use."""
import sys

import numpy as np


def array_module(x):
    if isinstance(x, np.ndarray) or "cupy" not in sys.modules:
        return np
    return sys.modules["cupy"].get_array_module(x)
