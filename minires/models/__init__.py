"""minires.models: the ResNet family with torchvision's architectures and state-dict layout, and
loading of weight files: PyTorch's, safetensors, minires's own, bare or inside checkpoints."""
from .resnet import (BasicBlock, Bottleneck, ResNet, resnet18, resnet34, resnet50, resnet101, resnet152,
                     resnext50_32x4d, wide_resnet50_2)
from . import fused  # noqa: F401  registers the fused twins that minires.fuse swaps in
from .torch_weights import load_torch_weights, torch_state_dict
from .weights import LoadedWeights, load_weights

__all__ = ["ResNet", "BasicBlock", "Bottleneck", "resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
           "resnext50_32x4d", "wide_resnet50_2", "load_weights", "LoadedWeights", "load_torch_weights",
           "torch_state_dict"]
