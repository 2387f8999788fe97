"""The ResNet modules as minires.fuse(model) runs them: the same modules and parameters, with each
batch norm and the ReLU (and the residual addition) after it as one op, bn.fused(...). Compare each
forward with its unfused original in resnet.py: the arithmetic is the same, in fewer passes over
memory and with fewer saved arrays."""
from ..fusion import register_fusion
from .resnet import BasicBlock, Bottleneck, ResNet


class FusedBasicBlock(BasicBlock):
    def forward(self, x):
        out = self.bn1.fused(self.conv1(x))                       # relu(bn1(conv1(x)))
        identity = x if self.downsample is None else self.downsample(x)
        return self.bn2.fused(self.conv2(out), residual=identity)  # relu(bn2(conv2(out)) + identity)


class FusedBottleneck(Bottleneck):
    def forward(self, x):
        out = self.bn1.fused(self.conv1(x))
        out = self.bn2.fused(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.bn3.fused(self.conv3(out), residual=identity)


class FusedResNet(ResNet):
    def forward(self, x):
        x = self.maxpool(self.bn1.fused(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.avgpool(x).flatten(1))


for _cls, _twin in ((BasicBlock, FusedBasicBlock), (Bottleneck, FusedBottleneck), (ResNet, FusedResNet)):
    register_fusion(_cls, _twin)
