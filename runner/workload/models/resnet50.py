"""ResNet-50 v1.5: the stride sits on the bottleneck's 3x3 conv; the shortcut is 1x1 conv + BN.

Layer names follow torchvision's `resnet50` (`layer2.0.downsample.0.weight`), so canonical
weights and torchvision state dicts share keys. Stems:
- `imagenet`: 7x7/2 conv (pad 3) + BN + ReLU + 3x3/2 max-pool (pad 1), unchanged on CIFAR too;
- `cifar`: 3x3/1 conv (pad 1) + BN + ReLU, no max-pool.
"""

from __future__ import annotations

from runner.workload.models.arch import (
    Arch,
    BatchNorm2d,
    Conv2d,
    Dense,
    GlobalAvgPool,
    Layer,
    MaxPool2d,
    ReLU,
    Residual,
    Sequential,
)
from runner.workload.models.config import ModelConfig

STAGES = ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2))  # (width, blocks, first stride)
EXPANSION = 4


def _conv(name: str, cin: int, cout: int, k: int, stride: int = 1) -> Conv2d:
    p = k // 2  # symmetric, PyTorch-style: 3x3 pad 1, 7x7 pad 3, 1x1 pad 0
    return Conv2d(name, cin, cout, (k, k), (stride, stride), (p, p, p, p), bias=False)


def _bottleneck(name: str, cin: int, width: int, stride: int, cfg: ModelConfig) -> Residual:
    def bn(n: str, c: int, zero: bool = False) -> BatchNorm2d:
        return BatchNorm2d(n, c, cfg.bn_momentum, cfg.bn_epsilon, zero_init=zero)

    cout = width * EXPANSION
    body: tuple[Layer, ...] = (
        _conv("conv1", cin, width, 1), bn("bn1", width), ReLU("relu1"),
        _conv("conv2", width, width, 3, stride), bn("bn2", width), ReLU("relu2"),
        _conv("conv3", width, cout, 1), bn("bn3", cout, zero=cfg.zero_init_residual),
    )
    shortcut = None
    if stride != 1 or cin != cout:
        shortcut = Sequential("downsample", (_conv("0", cin, cout, 1, stride), bn("1", cout)))
    return Residual(name, body, shortcut)


def build(cfg: ModelConfig) -> Arch:
    bn = BatchNorm2d("bn1", 64, cfg.bn_momentum, cfg.bn_epsilon)
    if cfg.stem == "imagenet":
        layers: list[Layer] = [_conv("conv1", 3, 64, 7, 2), bn, ReLU("relu"),
                               MaxPool2d("maxpool", (3, 3), (2, 2), (1, 1, 1, 1))]
    else:
        layers = [_conv("conv1", 3, 64, 3, 1), bn, ReLU("relu")]
    cin = 64
    for i, (width, blocks, stride) in enumerate(STAGES, start=1):
        stage = []
        for b in range(blocks):
            stage.append(_bottleneck(str(b), cin, width, stride if b == 0 else 1, cfg))
            cin = width * EXPANSION
        layers.append(Sequential(f"layer{i}", tuple(stage)))
    layers += [GlobalAvgPool("avgpool"), Dense("fc", cin, cfg.num_classes)]
    return Arch("resnet50", (3, cfg.input_size, cfg.input_size), cfg.num_classes, tuple(layers), cfg.init,
                cfg.freeze, cfg.to_dict())
