"""VGG16 with batch norm, CIFAR variant (32x32 inputs).

Features are torchvision's `vgg16_bn` features, name for name (`features.0` conv, `features.1`
BN, `features.2` ReLU, ...): 13 3x3 convs (pad 1, with bias, as torchvision) each followed by
BN and ReLU, five 2x2/2 max-pools. At 32x32 they end in 512x1x1, so the classifier takes 512
features: torchvision's layout (Linear, ReLU, Dropout, Linear, ReLU, Dropout, Linear) with
hidden widths 512-512 by default (torchvision's 4096-4096 are sized for 7x7x512 inputs).
"""

from __future__ import annotations

from runner.workload.models.arch import (
    Arch,
    BatchNorm2d,
    Conv2d,
    Dense,
    Dropout,
    Flatten,
    Layer,
    MaxPool2d,
    ReLU,
    Sequential,
    output_shape,
)
from runner.workload.models.config import ModelConfig

CFG_D = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


def build(cfg: ModelConfig) -> Arch:
    layers: list[Layer] = []
    cin = 3
    for item in CFG_D:
        if item == "M":
            layers.append(MaxPool2d(str(len(layers)), (2, 2), (2, 2)))
            continue
        assert isinstance(item, int)
        layers.append(Conv2d(str(len(layers)), cin, item, (3, 3), (1, 1), (1, 1, 1, 1), bias=True))
        layers.append(BatchNorm2d(str(len(layers)), item, cfg.bn_momentum, cfg.bn_epsilon))
        layers.append(ReLU(str(len(layers))))
        cin = item
    features = Sequential("features", tuple(layers))
    input_shape = (3, cfg.input_size, cfg.input_size)
    c, h, w = output_shape((features,), input_shape)
    chw = (c, h, w) if h * w > 1 else None
    head: list[Layer] = []
    fan_in = c * h * w
    for width in cfg.classifier_widths():
        head += [Dense(str(len(head)), fan_in, width, input_chw=chw)]
        head += [ReLU(str(len(head)))]
        head += [Dropout(str(len(head)), cfg.dropout)]
        fan_in, chw = width, None
    head.append(Dense(str(len(head)), fan_in, cfg.num_classes, input_chw=chw))
    layers_top = (features, Flatten("flatten"), Sequential("classifier", tuple(head)))
    return Arch("vgg16", input_shape, cfg.num_classes, layers_top, cfg.init, cfg.freeze, cfg.to_dict())
