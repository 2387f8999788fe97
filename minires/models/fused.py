"""The ResNet modules as minires.fuse(model) runs them: the same modules and parameters, with each
batch norm and the ReLU (and the residual addition) after it as one op, bn.fused(...). Compare each
forward with its unfused original in resnet.py: the arithmetic is the same, in fewer passes over
memory and with fewer saved arrays."""
from ..fusion import register_fusion
from .cifar import CifarResNet
from .preact import PreActBasicBlock, PreActBottleneck, PreActCifarResNet, PreActResNet
from .resnet import BasicBlock, Bottleneck, BottleneckV1, ResNet


def _shortcut(block, identity):
    """What the block adds before its last ReLU: nothing in a plain network."""
    return None if block.plain else identity


class FusedBasicBlock(BasicBlock):
    def forward(self, x):
        out = self.bn1.fused(self.conv1(x))                       # relu(bn1(conv1(x)))
        identity = x if self.downsample is None else self.downsample(x)
        return self.bn2.fused(self.conv2(out), residual=_shortcut(self, identity))  # relu(bn2(conv2) + identity)


class FusedBottleneck(Bottleneck):
    def forward(self, x):
        out = self.bn1.fused(self.conv1(x))
        out = self.bn2.fused(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.bn3.fused(self.conv3(out), residual=_shortcut(self, identity))


class FusedBottleneckV1(BottleneckV1):
    forward = FusedBottleneck.forward


class FusedResNet(ResNet):
    def forward(self, x):
        x = self.maxpool(self.bn1.fused(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.avgpool(x).flatten(1))


class FusedCifarResNet(CifarResNet):
    def forward(self, x):
        x = self.layer3(self.layer2(self.layer1(self.bn1.fused(self.conv1(x)))))
        return self.fc(self.avgpool(x).flatten(1))


# pre-activation: each BN-ReLU before a convolution is one op; the addition ends the block alone
class FusedPreActBasicBlock(PreActBasicBlock):
    def forward(self, x):
        out = self.bn1.fused(x)                                    # relu(bn1(x))
        identity = x if self.downsample is None else self.downsample(out)
        out = self.conv2(self.bn2.fused(self.conv1(out)))
        return out if self.plain else out + identity


class FusedPreActBottleneck(PreActBottleneck):
    def forward(self, x):
        out = self.bn1.fused(x)
        identity = x if self.downsample is None else self.downsample(out)
        out = self.conv3(self.bn3.fused(self.conv2(self.bn2.fused(self.conv1(out)))))
        return out if self.plain else out + identity


class FusedPreActResNet(PreActResNet):
    def forward(self, x):
        x = self.maxpool(self.conv1(x))
        x = self.bn.fused(self.layer4(self.layer3(self.layer2(self.layer1(x)))))
        return self.fc(self.avgpool(x).flatten(1))


class FusedPreActCifarResNet(PreActCifarResNet):
    def forward(self, x):
        x = self.bn.fused(self.layer3(self.layer2(self.layer1(self.conv1(x)))))
        return self.fc(self.avgpool(x).flatten(1))


for _cls, _twin in ((BasicBlock, FusedBasicBlock), (Bottleneck, FusedBottleneck), (BottleneckV1, FusedBottleneckV1),
                    (ResNet, FusedResNet), (CifarResNet, FusedCifarResNet), (PreActBasicBlock, FusedPreActBasicBlock),
                    (PreActBottleneck, FusedPreActBottleneck), (PreActResNet, FusedPreActResNet),
                    (PreActCifarResNet, FusedPreActCifarResNet)):
    register_fusion(_cls, _twin)
