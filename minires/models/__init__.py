"""minires.models: the ResNet family with torchvision's architectures and state-dict layout, and
loading of weight files: PyTorch's, safetensors, minires's own, bare or inside checkpoints. Beside
them, the networks to study: plain twins without shortcuts, ResNet v1, the CIFAR ResNets of the
2015 paper and pre-activation ResNets (He et al. 2016)."""
from . import cifar, preact, resnet
from .cifar import *  # noqa: F401,F403
from .preact import *  # noqa: F401,F403
from .resnet import *  # noqa: F401,F403
from . import fused  # noqa: F401  registers the fused twins that minires.fuse swaps in
from .torch_weights import load_torch_weights, torch_state_dict
from .weights import LoadedWeights, load_weights

__all__ = resnet.__all__ + cifar.__all__ + preact.__all__ + ["load_weights", "LoadedWeights", "load_torch_weights",
                                                             "torch_state_dict"]
