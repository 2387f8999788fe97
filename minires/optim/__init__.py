"""minires.optim: optimizers with PyTorch's update rules and state-dict layout."""
from .optimizer import Optimizer
from .sgd import SGD

__all__ = ["Optimizer", "SGD"]
