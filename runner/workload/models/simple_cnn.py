"""The small CNN of the published PyTorch study (32x32 inputs).

Three blocks of conv3x3 'same' (no bias) + BN + ReLU + 2x2/2 max-pool (3->32->64->128 channels,
32 -> 16 -> 8 -> 4 pixels), flatten 128x4x4 = 2048 (C, H, W order), dropout, then dense
2048-120 ReLU, 120-84 ReLU, 84-classes.
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
    output_shape,
)
from runner.workload.models.config import ModelConfig

CHANNELS = (32, 64, 128)
HIDDEN = (120, 84)


def build(cfg: ModelConfig) -> Arch:
    layers: list[Layer] = []
    cin = 3
    for i, cout in enumerate(CHANNELS, start=1):
        layers += [
            Conv2d(f"conv{i}", cin, cout, (3, 3), (1, 1), (1, 1, 1, 1), bias=False),
            BatchNorm2d(f"bn{i}", cout, cfg.bn_momentum, cfg.bn_epsilon),
            ReLU(f"relu{i}"),
            MaxPool2d(f"pool{i}", (2, 2), (2, 2)),
        ]
        cin = cout
    input_shape = (3, cfg.input_size, cfg.input_size)
    c, h, w = output_shape(tuple(layers), input_shape)
    layers += [Flatten("flatten"), Dropout("dropout", cfg.dropout)]
    fan_in, chw = c * h * w, (c, h, w)
    for i, width in enumerate(HIDDEN, start=1):
        layers += [Dense(f"fc{i}", fan_in, width, input_chw=chw), ReLU(f"fc{i}_relu")]
        fan_in, chw = width, None
    layers.append(Dense(f"fc{len(HIDDEN) + 1}", fan_in, cfg.num_classes))
    return Arch("simple_cnn", input_shape, cfg.num_classes, tuple(layers), cfg.init, cfg.freeze, cfg.to_dict())
