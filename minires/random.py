"""The global random generator used for parameter initialization (seeded by manual_seed)."""
import numpy as np

_rng = np.random.default_rng()


def manual_seed(seed):
    """Seed minires's generator: the same seed gives the same initial weights."""
    global _rng
    _rng = np.random.default_rng(seed)


def generator():
    return _rng
