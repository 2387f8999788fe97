"""minires.optim: optimizers with PyTorch's update rules and state-dict layout."""
from .optimizer import Optimizer
from .sgd import SGD
from .adamw import AdamW
from . import lr_scheduler

__all__ = ["Optimizer", "SGD", "AdamW", "lr_scheduler"]
