"""The CIFAR-10 ResNets of He et al. 2015 (section 4.2): ResNet-20/32/44/56/110 and their plain twins.

Three stages of n blocks on 16, 32 and 64 channels, after a 3x3 stem and before global pooling:

    (N, 3, 32, 32) -> conv1 3x3/bn1/relu (N, 16, 32, 32) -> layer1 (N, 16, 32, 32)
                   -> layer2 (N, 32, 16, 16) -> layer3 (N, 64, 8, 8) -> avgpool + flatten (N, 64) -> fc (N, 10)

The blocks are resnet.py's BasicBlock (two 3x3 convolutions), so depth = 6n + 2: the stem, 6n
convolutions and fc (n = 3, 5, 7, 9, 18 for 20, 32, 44, 56, 110 layers). Where a stage halves the
size and doubles the width the shortcut is, as the paper's options:
    "A"  x subsampled with stride 2 and zero-padded with the new channels (ZeroPadShortcut): no
         parameters, the paper's choice on CIFAR, so a plain twin has exactly its parameters;
    "B"  a projection, 1x1 convolution + BN (resnet.make_downsample), as the ImageNet ResNets.
Table 6 of the paper gives 0.27 M, 0.46 M, 0.66 M, 0.85 M and 1.7 M parameters (option A).
"""
from .. import functional as F
from .. import nn
from .resnet import BasicBlock, ResNet, check_network, conv3x3, init_weights, make_downsample

__all__ = ["CifarResNet", "ZeroPadShortcut", "resnet20", "resnet32", "resnet44", "resnet56", "resnet110",
           "plain20", "plain32", "plain44", "plain56", "plain110"]


class ZeroPadShortcut(nn.Module):
    """Option A: (N, C, H, W) -> (N, out_planes, H/stride, W/stride), the input sampled every
    ``stride`` pixels (the positions a stride-2 convolution centres on) and zero channels appended:
    x's channels pass unchanged, the new ones carry nothing."""

    def __init__(self, in_planes, out_planes, stride):
        super().__init__()
        if out_planes < in_planes:
            raise ValueError(f"ZeroPadShortcut: cannot narrow {in_planes} channels to {out_planes}")
        self.in_planes, self.out_planes, self.stride = in_planes, out_planes, stride

    def forward(self, x):
        x = x[:, :, ::self.stride, ::self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, self.out_planes - self.in_planes))  # (W, H, C) widths

    def extra_repr(self):
        return f"{self.in_planes}, {self.out_planes}, stride={self.stride}"


class CifarResNet(nn.Module):
    """CifarResNet(block, layers): ``layers`` gives the number of blocks in each of the three stages.
    shortcut "A" (zero padding) or "B" (projection); plain=True drops every shortcut. Initialized as
    the ImageNet ResNet (resnet.init_weights: He et al.'s normal, as the paper)."""

    def __init__(self, block, layers, num_classes=10, shortcut="A", plain=False, zero_init_residual=False):
        super().__init__()
        check_network("CifarResNet", layers, 3, num_classes, plain, zero_init_residual)
        if shortcut not in ("A", "B"):
            raise ValueError(f"CifarResNet: shortcut must be 'A' (zero padding) or 'B' (projection), got {shortcut!r}")
        self.inplanes, self.groups, self.base_width, self.plain, self.shortcut_type = 16, 1, 64, plain, shortcut
        self.conv1 = conv3x3(3, self.inplanes)
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._make_layer(block, 16, layers[0])
        self.layer2 = self._make_layer(block, 32, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 64, layers[2], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(64 * block.expansion, num_classes)
        init_weights(self, zero_init_residual)

    _make_layer = ResNet._make_layer  # the ImageNet ResNet's stage builder, which calls _shortcut

    def _shortcut(self, inplanes, out_planes, stride):
        if self.shortcut_type == "A":
            return ZeroPadShortcut(inplanes, out_planes, stride)
        return make_downsample(inplanes, out_planes, stride)

    def forward(self, x):
        """x (N, 3, H, W) -> logits (N, num_classes)."""
        x = self.conv1(x)
        x = self.bn1(x)
        x = self.relu(x)

        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)

        x = self.avgpool(x)
        x = x.flatten(1)
        x = self.fc(x)
        return x


def resnet20(num_classes=10, shortcut="A"):
    """ResNet-20 (n = 3): 269,722 parameters with option A (Table 6: 0.27 M)."""
    return CifarResNet(BasicBlock, [3, 3, 3], num_classes, shortcut)


def resnet32(num_classes=10, shortcut="A"):
    """ResNet-32 (n = 5): 464,154 parameters (0.46 M)."""
    return CifarResNet(BasicBlock, [5, 5, 5], num_classes, shortcut)


def resnet44(num_classes=10, shortcut="A"):
    """ResNet-44 (n = 7): 658,586 parameters (0.66 M)."""
    return CifarResNet(BasicBlock, [7, 7, 7], num_classes, shortcut)


def resnet56(num_classes=10, shortcut="A"):
    """ResNet-56 (n = 9): 853,018 parameters (0.85 M)."""
    return CifarResNet(BasicBlock, [9, 9, 9], num_classes, shortcut)


def resnet110(num_classes=10, shortcut="A"):
    """ResNet-110 (n = 18): 1,727,962 parameters (1.7 M)."""
    return CifarResNet(BasicBlock, [18, 18, 18], num_classes, shortcut)


# The plain twins of Figure 6 (left): the same layers without shortcuts, so the same parameters as
# the option-A ResNets.
def plain20(num_classes=10):
    """Plain-20: ResNet-20 without shortcuts, 269,722 parameters."""
    return CifarResNet(BasicBlock, [3, 3, 3], num_classes, plain=True)


def plain32(num_classes=10):
    """Plain-32: 464,154 parameters."""
    return CifarResNet(BasicBlock, [5, 5, 5], num_classes, plain=True)


def plain44(num_classes=10):
    """Plain-44: 658,586 parameters."""
    return CifarResNet(BasicBlock, [7, 7, 7], num_classes, plain=True)


def plain56(num_classes=10):
    """Plain-56: 853,018 parameters."""
    return CifarResNet(BasicBlock, [9, 9, 9], num_classes, plain=True)


def plain110(num_classes=10):
    """Plain-110: 1,727,962 parameters."""
    return CifarResNet(BasicBlock, [18, 18, 18], num_classes, plain=True)
