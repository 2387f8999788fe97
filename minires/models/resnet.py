"""ResNets with torchvision's architecture, parameter names and initialization (ResNet v1.5).

A ResNet is a stem (7x7 convolution, stride 2 + 3x3 max-pool, stride 2), four stages of residual
blocks (layer1..layer4, widths 64, 128, 256, 512 times the block's expansion; stages 2-4 halve the
resolution in their first block), global average pooling and one linear classifier:

    (N, 3, H, W) -> conv1/bn1/relu/maxpool (N, 64, H/4, W/4) -> layer1..layer4 (N, 512 e, H/32, W/32)
                 -> avgpool + flatten (N, 512 e) -> fc (N, num_classes)      (e = block.expansion: 1 or 4)

Each block computes relu(F(x) + shortcut(x)); the shortcut is the identity, or a 1x1 convolution +
batch norm ("downsample") where the shape changes. "v1.5" (torchvision's choice): a Bottleneck
strides on its 3x3 convolution, not on the first 1x1. BottleneckV1 strides on the first 1x1, as the
2015 paper's Caffe models did (resnet50_v1, ...): fewer multiply-adds, and about half a point less
top-1 on ImageNet in NVIDIA's reports. plain=True builds the paper's plain baseline: the same layers
without any shortcut, relu(F(x)) (plain18, ..., plain152). small_input=True swaps the stem for a
3x3, stride-1 convolution without max-pool, for 32x32 images (CIFAR); module names stay torchvision's.
The code reads as torchvision's. minires.fuse(model) gives the same model with each batch norm, the
residual addition and ReLU after it as one op (models/fused.py), as ``minires train`` runs it.
"""
from .. import nn

__all__ = ["ResNet", "BasicBlock", "Bottleneck", "BottleneckV1", "resnet18", "resnet34", "resnet50", "resnet101",
           "resnet152", "resnext50_32x4d", "wide_resnet50_2", "resnet50_v1", "resnet101_v1", "resnet152_v1",
           "plain18", "plain34", "plain50", "plain101", "plain152"]


def conv3x3(in_planes, out_planes, stride=1, groups=1):
    """3x3 convolution, padding 1 (the spatial size is kept at stride 1), no bias: a BN follows."""
    return nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=1, groups=groups, bias=False)


def conv1x1(in_planes, out_planes, stride=1):
    """1x1 convolution, no bias: mixes channels (and subsamples at stride 2)."""
    return nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False)


def make_downsample(in_planes, out_planes, stride):
    """The projection shortcut where a block changes the shape: Sequential(conv1x1, BatchNorm2d)."""
    return nn.Sequential(conv1x1(in_planes, out_planes, stride), nn.BatchNorm2d(out_planes))


def check_plain(block, plain, downsample):
    if plain and downsample is not None:
        raise ValueError(f"{block}: a plain block has no shortcut, so it takes no downsample")


class BasicBlock(nn.Module):
    """Two 3x3 convolutions: relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)).
    (N, inplanes, H, W) -> (N, planes, H/stride, W/stride). ResNet-18 and -34 are made of these.
    plain=True drops the shortcut: relu(bn2(conv2(...))), a block of the paper's plain networks."""

    expansion = 1  # output channels = planes * expansion

    def __init__(self, inplanes, planes, stride=1, downsample=None, groups=1, base_width=64, plain=False):
        super().__init__()
        check_plain(type(self).__name__, plain, downsample)
        if groups != 1 or base_width != 64:
            raise ValueError(f"BasicBlock: only groups=1 and base_width=64 are supported, "
                             f"got groups={groups}, base_width={base_width}")
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride
        self.plain = plain

    def forward(self, x):
        identity = x

        out = self.conv1(x)
        out = self.bn1(out)
        out = self.relu(out)

        out = self.conv2(out)
        out = self.bn2(out)

        if self.downsample is not None:
            identity = self.downsample(x)

        if not self.plain:  # a plain network has no shortcut: F(x) alone
            out += identity
        out = self.relu(out)
        return out


class Bottleneck(nn.Module):
    """1x1 (reduce to width) -> 3x3 (stride, groups) -> 1x1 (expand to 4 planes), each with a BN,
    plus the shortcut. width = int(planes * base_width / 64) * groups: ResNeXt-50 32x4d has 32
    groups of 4 channels per 64 planes, Wide ResNet-50-2 twice ResNet-50's width.
    (N, inplanes, H, W) -> (N, 4 planes, H/stride, W/stride). ResNet-50/101/152 are made of these."""

    expansion = 4
    stride_in_1x1 = False  # v1.5; BottleneckV1 strides on conv1

    def __init__(self, inplanes, planes, stride=1, downsample=None, groups=1, base_width=64, plain=False):
        super().__init__()
        check_plain(type(self).__name__, plain, downsample)
        width = int(planes * (base_width / 64.0)) * groups
        stride1, stride2 = (stride, 1) if self.stride_in_1x1 else (1, stride)
        self.conv1 = conv1x1(inplanes, width, stride1)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width, stride2, groups)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = conv1x1(width, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride
        self.plain = plain

    def forward(self, x):
        identity = x

        out = self.conv1(x)
        out = self.bn1(out)
        out = self.relu(out)

        out = self.conv2(out)
        out = self.bn2(out)
        out = self.relu(out)

        out = self.conv3(out)
        out = self.bn3(out)

        if self.downsample is not None:
            identity = self.downsample(x)

        if not self.plain:  # a plain network has no shortcut: F(x) alone
            out += identity
        out = self.relu(out)
        return out


class BottleneckV1(Bottleneck):
    """The 2015 paper's bottleneck (ResNet v1, Caffe): the stride on the first 1x1 convolution. That
    1x1 then computes at a quarter of v1.5's positions (the 3x3 costs the same in both, at the output
    resolution), but it drops three input positions in four before any 3x3 has looked at them."""

    stride_in_1x1 = True


class ResNet(nn.Module):
    """ResNet(block, layers): ``layers`` gives the number of blocks in each of the four stages.

    Initialization as torchvision: convolutions kaiming_normal_(mode="fan_out", relu), batch norms
    weight 1 and bias 0, fc PyTorch's Linear default. zero_init_residual zeroes the weight of each
    block's last BN, so every block starts as the identity (Goyal et al., 2017). plain=True: no
    shortcuts anywhere (the paper's plain baseline; the stride-2 convolutions alone downsample)."""

    def __init__(self, block, layers, num_classes=1000, zero_init_residual=False, groups=1, width_per_group=64,
                 small_input=False, plain=False):
        super().__init__()
        check_network("ResNet", layers, 4, num_classes, plain, zero_init_residual)
        self.inplanes, self.groups, self.base_width, self.plain = 64, groups, width_per_group, plain
        if small_input:
            self.conv1 = conv3x3(3, self.inplanes)
        else:
            self.conv1 = nn.Conv2d(3, self.inplanes, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.Identity() if small_input else nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)

        init_weights(self, zero_init_residual)

    def _make_layer(self, block, planes, blocks, stride=1):
        """A stage: the first block changes the width and/or strides (with a projection shortcut
        when the shape changes, none in a plain network), the other blocks keep the shape."""
        shortcut = None
        if not self.plain and (stride != 1 or self.inplanes != planes * block.expansion):
            shortcut = self._shortcut(self.inplanes, planes * block.expansion, stride)
        layers = [block(self.inplanes, planes, stride, shortcut, self.groups, self.base_width, plain=self.plain)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes, groups=self.groups, base_width=self.base_width, plain=self.plain)
                   for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def _shortcut(self, inplanes, out_planes, stride):
        """The shortcut where a block changes the shape: a projection, option B of the paper."""
        return make_downsample(inplanes, out_planes, stride)

    def forward(self, x):
        """x (N, 3, H, W) -> logits (N, num_classes)."""
        x = self.conv1(x)
        x = self.bn1(x)
        x = self.relu(x)
        x = self.maxpool(x)

        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        x = self.layer4(x)

        x = self.avgpool(x)
        x = x.flatten(1)
        x = self.fc(x)
        return x


def check_network(name, layers, stages, num_classes, plain, zero_init_residual):
    """The checks every ResNet-like network makes of its arguments (ValueError naming the class)."""
    if len(layers) != stages or not all(isinstance(n, int) and n >= 1 for n in layers):
        raise ValueError(f"{name}: layers must be {stages} positive block counts, got {layers!r}")
    if num_classes < 1:
        raise ValueError(f"{name}: num_classes must be positive, got {num_classes}")
    if plain and zero_init_residual:
        raise ValueError(f"{name}: zero_init_residual would zero every block of a plain network")


def init_weights(model, zero_init_residual=False):
    """torchvision's initialization: He et al.'s normal for convolutions (std sqrt(2 / fan_out)),
    batch norms weight 1 and bias 0; with zero_init_residual each block's last BN weight 0."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    if zero_init_residual:
        for m in model.modules():
            if isinstance(m, Bottleneck):
                nn.init.zeros_(m.bn3.weight)
            elif isinstance(m, BasicBlock):
                nn.init.zeros_(m.bn2.weight)


def resnet18(num_classes=1000, zero_init_residual=False, small_input=False):
    """ResNet-18: BasicBlocks [2, 2, 2, 2], 11,689,512 parameters (1000 classes)."""
    return ResNet(BasicBlock, [2, 2, 2, 2], num_classes, zero_init_residual, small_input=small_input)


def resnet34(num_classes=1000, zero_init_residual=False, small_input=False):
    """ResNet-34: BasicBlocks [3, 4, 6, 3], 21,797,672 parameters."""
    return ResNet(BasicBlock, [3, 4, 6, 3], num_classes, zero_init_residual, small_input=small_input)


def resnet50(num_classes=1000, zero_init_residual=False, small_input=False, groups=1, width_per_group=64):
    """ResNet-50: Bottlenecks [3, 4, 6, 3], 25,557,032 parameters."""
    return ResNet(Bottleneck, [3, 4, 6, 3], num_classes, zero_init_residual, groups, width_per_group, small_input)


def resnet101(num_classes=1000, zero_init_residual=False, small_input=False, groups=1, width_per_group=64):
    """ResNet-101: Bottlenecks [3, 4, 23, 3], 44,549,160 parameters."""
    return ResNet(Bottleneck, [3, 4, 23, 3], num_classes, zero_init_residual, groups, width_per_group, small_input)


def resnet152(num_classes=1000, zero_init_residual=False, small_input=False, groups=1, width_per_group=64):
    """ResNet-152: Bottlenecks [3, 8, 36, 3], 60,192,808 parameters."""
    return ResNet(Bottleneck, [3, 8, 36, 3], num_classes, zero_init_residual, groups, width_per_group, small_input)


def resnext50_32x4d(num_classes=1000, zero_init_residual=False, small_input=False):
    """ResNeXt-50 32x4d: ResNet-50 with 32 groups of 4 channels in each 3x3 (per 64 planes),
    25,028,904 parameters."""
    return resnet50(num_classes, zero_init_residual, small_input, groups=32, width_per_group=4)


def wide_resnet50_2(num_classes=1000, zero_init_residual=False, small_input=False):
    """Wide ResNet-50-2: ResNet-50 with bottlenecks twice as wide (the 1x1 expansions keep their
    width), 68,883,240 parameters."""
    return resnet50(num_classes, zero_init_residual, small_input, width_per_group=128)


def resnet50_v1(num_classes=1000, zero_init_residual=False, small_input=False):
    """ResNet-50 v1 (stride on each bottleneck's first 1x1): ResNet-50's 25,557,032 parameters and
    3.86 G multiply-adds at 224x224, against v1.5's 4.09 G."""
    return ResNet(BottleneckV1, [3, 4, 6, 3], num_classes, zero_init_residual, small_input=small_input)


def resnet101_v1(num_classes=1000, zero_init_residual=False, small_input=False):
    """ResNet-101 v1: ResNet-101's parameters, stride on the first 1x1."""
    return ResNet(BottleneckV1, [3, 4, 23, 3], num_classes, zero_init_residual, small_input=small_input)


def resnet152_v1(num_classes=1000, zero_init_residual=False, small_input=False):
    """ResNet-152 v1: ResNet-152's parameters, stride on the first 1x1."""
    return ResNet(BottleneckV1, [3, 8, 36, 3], num_classes, zero_init_residual, small_input=small_input)


# The plain networks: each ResNet without its shortcuts (no projections either), the baseline of
# He et al. 2015's Figure 4. They have ResNet's parameters less the projection shortcuts'.
def plain18(num_classes=1000, small_input=False):
    """Plain-18: ResNet-18 without shortcuts, 11,515,688 parameters."""
    return ResNet(BasicBlock, [2, 2, 2, 2], num_classes, small_input=small_input, plain=True)


def plain34(num_classes=1000, small_input=False):
    """Plain-34: ResNet-34 without shortcuts, 21,623,848 parameters."""
    return ResNet(BasicBlock, [3, 4, 6, 3], num_classes, small_input=small_input, plain=True)


def plain50(num_classes=1000, small_input=False):
    """Plain-50: ResNet-50 without shortcuts, 22,780,456 parameters."""
    return ResNet(Bottleneck, [3, 4, 6, 3], num_classes, small_input=small_input, plain=True)


def plain101(num_classes=1000, small_input=False):
    """Plain-101: ResNet-101 without shortcuts, 41,772,584 parameters."""
    return ResNet(Bottleneck, [3, 4, 23, 3], num_classes, small_input=small_input, plain=True)


def plain152(num_classes=1000, small_input=False):
    """Plain-152: ResNet-152 without shortcuts, 57,416,232 parameters."""
    return ResNet(Bottleneck, [3, 8, 36, 3], num_classes, small_input=small_input, plain=True)
