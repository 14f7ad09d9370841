"""AlexNet in two layouts.

`imagenet` (224x224): torchvision's AlexNet, layer for layer and name for name (`features.0`,
`classifier.1`, ...). Its AdaptiveAvgPool2d((6, 6)) is the identity at 224x224 (the features
already give 256x6x6), so it is left out. The classifier's hidden widths are configurable; the
default 4096-1024 is the head the published study fine-tuned (9216-4096-1024-classes);
torchvision's own is 4096-4096.

`cifar` (32x32): the CIFAR-sized AlexNet common in CIFAR-10 code: 5 convs with 3x3 kernels
(the first 3x3/2), three 2x2/2 max-pools, 256x2x2 = 1024 features, classifier with dropout
1024-4096-4096-classes.
"""

from __future__ import annotations

from runner.workload.models.arch import (
    Arch,
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

# (out_channels, kernel, stride, padding) per conv; "M" = max-pool
IMAGENET_FEATURES = ((64, 11, 4, 2), "M", (192, 5, 1, 2), "M",
                     (384, 3, 1, 1), (256, 3, 1, 1), (256, 3, 1, 1), "M")
CIFAR_FEATURES = ((64, 3, 2, 1), "M", (192, 3, 1, 1), "M",
                  (384, 3, 1, 1), (256, 3, 1, 1), (256, 3, 1, 1), "M")


def _features(spec: tuple, pool: int, pool_stride: int) -> Sequential:
    layers: list[Layer] = []
    cin = 3
    for item in spec:
        i = str(len(layers))
        if item == "M":
            layers.append(MaxPool2d(i, (pool, pool), (pool_stride, pool_stride)))
            continue
        cout, k, s, p = item
        layers.append(Conv2d(i, cin, cout, (k, k), (s, s), (p, p, p, p), bias=True))
        layers.append(ReLU(str(len(layers))))
        cin = cout
    return Sequential("features", tuple(layers))


def build(cfg: ModelConfig) -> Arch:
    if cfg.layout == "imagenet":
        features = _features(IMAGENET_FEATURES, pool=3, pool_stride=2)
    else:
        features = _features(CIFAR_FEATURES, pool=2, pool_stride=2)
    input_shape = (3, cfg.input_size, cfg.input_size)
    c, h, w = output_shape((features,), input_shape)
    chw = (c, h, w) if h * w > 1 else None
    head: list[Layer] = []
    fan_in = c * h * w
    for width in cfg.classifier_widths():
        # torchvision order: Dropout, Linear, ReLU
        head += [Dropout(str(len(head)), cfg.dropout)]
        head += [Dense(str(len(head)), fan_in, width, input_chw=chw)]
        head += [ReLU(str(len(head)))]
        fan_in, chw = width, None
    head.append(Dense(str(len(head)), fan_in, cfg.num_classes, input_chw=chw))
    layers = (features, Flatten("flatten"), Sequential("classifier", tuple(head)))
    return Arch("alexnet", input_shape, cfg.num_classes, layers, cfg.init, cfg.freeze, cfg.to_dict())
