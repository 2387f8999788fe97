"""Pre-activation ResNets (He et al. 2016, "Identity Mappings in Deep Residual Networks").

A pre-activation block puts each BN-ReLU before its convolution and adds the shortcut last, with
nothing after the addition:

    x_{l+1} = x_l + F(x_l),    F(x) = conv2(relu(bn2(conv1(relu(bn1(x))))))

so between any two blocks the identity path is a plain sum, x_L = x_l + sum_{i=l}^{L-1} F(x_i), and
d loss/d x_l = d loss/d x_L (1 + d/d x_l sum F(x_i)): the first term reaches every block unscaled,
however deep the network (the original block's ReLU after the addition is in the way). Where a
block changes the shape, its projection shortcut reads the pre-activated input relu(bn1(x)), as the
paper's, so both paths start from one normalized signal; an identity shortcut reads x itself.

The network: a bare stem convolution (the first block's bn1 normalizes it), the stages of
resnet.py or cifar.py, then one more BN-ReLU (the last block's output is a sum, not normalized):

    ImageNet  conv1 7x7/2 + maxpool -> layer1..layer4 (64..512 e) -> bn/relu -> avgpool -> fc
    CIFAR     conv1 3x3 -> layer1..layer3 (16, 32, 64 e) -> bn/relu -> avgpool -> fc

The paper's networks apply BN-ReLU right after conv1 and drop the first block's own; here the stem is
bare and every block pre-activates: the same parameters, and the first block's identity shortcut
carries conv1's output rather than its activation. Its CIFAR table: ResNet-110 1.7 M, ResNet-164
(bottlenecks, n = 18) 1.7 M, ResNet-1001 (n = 111) 10.2 M parameters.
"""
from .. import nn
from .cifar import CifarResNet
from .resnet import ResNet, check_network, check_plain, conv1x1, conv3x3, init_weights

__all__ = ["PreActBasicBlock", "PreActBottleneck", "PreActResNet", "PreActCifarResNet",
           "preact_resnet18", "preact_resnet34", "preact_resnet50", "preact_resnet101", "preact_resnet152",
           "preact_resnet20", "preact_resnet32", "preact_resnet44", "preact_resnet56", "preact_resnet110",
           "preact_resnet164", "preact_resnet1001"]


class PreActBasicBlock(nn.Module):
    """x + conv2(relu(bn2(conv1(relu(bn1(x)))))): (N, inplanes, H, W) -> (N, planes, H/stride, W/stride).
    bn1 normalizes the block's input, so it has inplanes channels."""

    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None, groups=1, base_width=64, plain=False):
        super().__init__()
        check_plain(type(self).__name__, plain, downsample)
        if groups != 1 or base_width != 64:
            raise ValueError(f"PreActBasicBlock: only groups=1 and base_width=64 are supported, "
                             f"got groups={groups}, base_width={base_width}")
        self.bn1 = nn.BatchNorm2d(inplanes)
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride
        self.plain = plain

    def forward(self, x):
        identity = x

        out = self.bn1(x)
        out = self.relu(out)
        if self.downsample is not None:
            identity = self.downsample(out)  # a projection reads the pre-activated input

        out = self.conv1(out)
        out = self.bn2(out)
        out = self.relu(out)
        out = self.conv2(out)

        if not self.plain:
            out += identity
        return out


class PreActBottleneck(nn.Module):
    """x + conv3(relu(bn3(conv2(relu(bn2(conv1(relu(bn1(x))))))))), the 1x1 -> 3x3 (stride) -> 1x1
    widths of resnet.Bottleneck: (N, inplanes, H, W) -> (N, 4 planes, H/stride, W/stride)."""

    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None, groups=1, base_width=64, plain=False):
        super().__init__()
        check_plain(type(self).__name__, plain, downsample)
        width = int(planes * (base_width / 64.0)) * groups
        self.bn1 = nn.BatchNorm2d(inplanes)
        self.conv1 = conv1x1(inplanes, width)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width, stride, groups)
        self.bn3 = nn.BatchNorm2d(width)
        self.conv3 = conv1x1(width, planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride
        self.plain = plain

    def forward(self, x):
        identity = x

        out = self.bn1(x)
        out = self.relu(out)
        if self.downsample is not None:
            identity = self.downsample(out)

        out = self.conv1(out)
        out = self.bn2(out)
        out = self.relu(out)
        out = self.conv2(out)
        out = self.bn3(out)
        out = self.relu(out)
        out = self.conv3(out)

        if not self.plain:
            out += identity
        return out


class PreActResNet(nn.Module):
    """The ImageNet layout with pre-activation blocks: PreActResNet(block, layers) as ResNet(block,
    layers), projection shortcuts (option B); small_input: a 3x3 stride-1 stem, no max-pool."""

    def __init__(self, block, layers, num_classes=1000, small_input=False):
        super().__init__()
        check_network("PreActResNet", layers, 4, num_classes, False, False)
        self.inplanes, self.groups, self.base_width, self.plain = 64, 1, 64, False
        if small_input:
            self.conv1 = conv3x3(3, self.inplanes)
        else:
            self.conv1 = nn.Conv2d(3, self.inplanes, kernel_size=7, stride=2, padding=3, bias=False)
        self.maxpool = nn.Identity() if small_input else nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2)
        self.bn = nn.BatchNorm2d(512 * block.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)
        init_weights(self)

    _make_layer, _shortcut = ResNet._make_layer, ResNet._shortcut

    def forward(self, x):
        """x (N, 3, H, W) -> logits (N, num_classes)."""
        x = self.conv1(x)
        x = self.maxpool(x)

        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        x = self.layer4(x)

        x = self.bn(x)
        x = self.relu(x)
        x = self.avgpool(x)
        x = x.flatten(1)
        x = self.fc(x)
        return x


class PreActCifarResNet(nn.Module):
    """The CIFAR layout (cifar.py) with pre-activation blocks; shortcut "A" (zero padding) or "B"
    (projection), as CifarResNet."""

    def __init__(self, block, layers, num_classes=10, shortcut="B"):
        super().__init__()
        check_network("PreActCifarResNet", layers, 3, num_classes, False, False)
        if shortcut not in ("A", "B"):
            raise ValueError(f"PreActCifarResNet: shortcut must be 'A' or 'B', got {shortcut!r}")
        self.inplanes, self.groups, self.base_width, self.plain, self.shortcut_type = 16, 1, 64, False, shortcut
        self.conv1 = conv3x3(3, self.inplanes)
        self.layer1 = self._make_layer(block, 16, layers[0])
        self.layer2 = self._make_layer(block, 32, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 64, layers[2], stride=2)
        self.bn = nn.BatchNorm2d(64 * block.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(64 * block.expansion, num_classes)
        init_weights(self)

    _make_layer, _shortcut = ResNet._make_layer, CifarResNet._shortcut

    def forward(self, x):
        """x (N, 3, H, W) -> logits (N, num_classes)."""
        x = self.conv1(x)

        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)

        x = self.bn(x)
        x = self.relu(x)
        x = self.avgpool(x)
        x = x.flatten(1)
        x = self.fc(x)
        return x


def preact_resnet18(num_classes=1000, small_input=False):
    """Pre-activation ResNet-18: PreActBasicBlocks [2, 2, 2, 2], 11,689,512 parameters."""
    return PreActResNet(PreActBasicBlock, [2, 2, 2, 2], num_classes, small_input)


def preact_resnet34(num_classes=1000, small_input=False):
    return PreActResNet(PreActBasicBlock, [3, 4, 6, 3], num_classes, small_input)


def preact_resnet50(num_classes=1000, small_input=False):
    return PreActResNet(PreActBottleneck, [3, 4, 6, 3], num_classes, small_input)


def preact_resnet101(num_classes=1000, small_input=False):
    return PreActResNet(PreActBottleneck, [3, 4, 23, 3], num_classes, small_input)


def preact_resnet152(num_classes=1000, small_input=False):
    return PreActResNet(PreActBottleneck, [3, 8, 36, 3], num_classes, small_input)


def preact_resnet20(num_classes=10, shortcut="B"):
    return PreActCifarResNet(PreActBasicBlock, [3, 3, 3], num_classes, shortcut)


def preact_resnet32(num_classes=10, shortcut="B"):
    return PreActCifarResNet(PreActBasicBlock, [5, 5, 5], num_classes, shortcut)


def preact_resnet44(num_classes=10, shortcut="B"):
    return PreActCifarResNet(PreActBasicBlock, [7, 7, 7], num_classes, shortcut)


def preact_resnet56(num_classes=10, shortcut="B"):
    return PreActCifarResNet(PreActBasicBlock, [9, 9, 9], num_classes, shortcut)


def preact_resnet110(num_classes=10, shortcut="B"):
    return PreActCifarResNet(PreActBasicBlock, [18, 18, 18], num_classes, shortcut)


def preact_resnet164(num_classes=10, shortcut="B"):
    return PreActCifarResNet(PreActBottleneck, [18, 18, 18], num_classes, shortcut)


def preact_resnet1001(num_classes=10, shortcut="B"):
    return PreActCifarResNet(PreActBottleneck, [111, 111, 111], num_classes, shortcut)
