"""minires.models: the ResNet family with torchvision's architectures and state-dict layout, and
loading of weight files: PyTorch's, safetensors, minires's own, bare or inside checkpoints. Beside
them, the networks to study: plain twins without shortcuts, ResNet v1, the CIFAR ResNets of the
2015 paper and pre-activation ResNets (He et al. 2016)."""
import inspect

from . import cifar, preact, resnet
from .cifar import *  # noqa: F401,F403
from .preact import *  # noqa: F401,F403
from .resnet import *  # noqa: F401,F403
from . import fused  # noqa: F401  registers the fused twins that minires.fuse swaps in
from .torch_weights import load_torch_weights, torch_state_dict
from .weights import LoadedWeights, load_weights

ARCHITECTURES = [name for name in resnet.__all__ + cifar.__all__ + preact.__all__ if name[0].islower()]


def build(name, num_classes=None, small_input=False):
    """The zoo model ``name`` (one of ARCHITECTURES), with num_classes outputs (its default when None)
    and, for the ImageNet networks, the small-input stem; a one-line ValueError for anything else."""
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown model {name!r}: expected one of {', '.join(ARCHITECTURES)}")
    constructor = globals()[name]
    kwargs = {} if num_classes is None else {"num_classes": num_classes}
    if "small_input" in inspect.signature(constructor).parameters:
        return constructor(**kwargs, small_input=small_input)
    if small_input:
        raise ValueError(f"--small-input: {name} has only the small-input stem")
    return constructor(**kwargs)


def is_cifar(name):
    """Whether zoo model ``name`` is made for 32x32 images only (no small_input choice)."""
    return "small_input" not in inspect.signature(globals()[name]).parameters


__all__ = resnet.__all__ + cifar.__all__ + preact.__all__ + ["ARCHITECTURES", "build", "is_cifar", "load_weights",
                                                             "LoadedWeights", "load_torch_weights", "torch_state_dict"]
