"""minires.nn: modules with PyTorch's names, arguments and state-dict layout."""
from . import init
from .layers import (AdaptiveAvgPool2d, AvgPool2d, BatchNorm2d, Conv2d, Flatten, Identity, Linear, MaxPool2d,
                     ReLU, Sequential)
from .module import Module, Parameter

__all__ = ["Module", "Parameter", "Conv2d", "BatchNorm2d", "ReLU", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d",
           "Linear", "Flatten", "Sequential", "Identity", "init"]
