"""The global random generator used for parameter initialization (seeded by manual_seed)."""
import numpy as np

_rng = np.random.default_rng()


def manual_seed(seed):
    """Seed minires's generator (the same seed gives the same initial weights) and, when the "cuda"
    device is in use, the GPU's (minires.cuda.manual_seed)."""
    global _rng
    _rng = np.random.default_rng(seed)
    from .device import in_use
    if in_use("cuda"):
        from . import cuda
        cuda.manual_seed(seed)


def generator():
    return _rng
