"""PyTorch builder: one `Arch` -> `torch.nn.Module` (input NCHW float32, output logits).

Module names equal the arch paths, so `state_dict()` keys are the canonical weight keys (plus
BatchNorm's `num_batches_tracked` counters, which are not weights). Layer by layer, the choice
that matters for parity is written next to it; the TensorFlow twin is `tf_impl`.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from runner.errors import ModelError
from runner.workload.models.arch import (
    Arch,
    BatchNorm2d,
    Conv2d,
    Dense,
    Dropout,
    Flatten,
    GlobalAvgPool,
    Layer,
    MaxPool2d,
    ReLU,
    Residual,
    Sequential,
    param_specs,
)
from runner.workload.models.init import check_weights


class _PaddedConv2d(nn.Conv2d):
    """Conv with asymmetric zero padding (t, b, l, r), applied before a 'valid' convolution."""

    def __init__(self, *args: object, pad4: tuple[int, int, int, int], **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        t, b, left, r = pad4
        self.pad_lrtb = (left, r, t, b)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.pad(x, self.pad_lrtb))


class _PaddedMaxPool2d(nn.MaxPool2d):
    """Max-pool with asymmetric padding; padded positions are -inf (never the maximum)."""

    def __init__(self, *args: object, pad4: tuple[int, int, int, int], **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        t, b, left, r = pad4
        self.pad_lrtb = (left, r, t, b)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.pad(x, self.pad_lrtb, value=float("-inf")))


class _GlobalAvgPool(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)


class _Residual(nn.Module):
    """relu(body(x) + shortcut(x)); body layers are direct children (torchvision's Bottleneck)."""

    def __init__(self, block: Residual) -> None:
        super().__init__()
        self.body_names = tuple(layer.name for layer in block.body)
        for layer in block.body:
            self.add_module(layer.name, _module(layer))
        self.shortcut_name = block.shortcut.name if block.shortcut is not None else None
        if block.shortcut is not None:
            self.add_module(block.shortcut.name, _module(block.shortcut))
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        for name in self.body_names:
            out = self._modules[name](out)  # type: ignore[misc]
        identity = x if self.shortcut_name is None else self._modules[self.shortcut_name](x)  # type: ignore[misc]
        return self.relu(out + identity)


def _symmetric(pad4: tuple[int, int, int, int]) -> bool:
    t, b, left, r = pad4
    return t == b and left == r


def _module(layer: Layer) -> nn.Module:
    if isinstance(layer, Sequential):
        return nn.Sequential(OrderedDict((child.name, _module(child)) for child in layer.layers))
    if isinstance(layer, Residual):
        return _Residual(layer)
    if isinstance(layer, Conv2d):
        args = (layer.in_channels, layer.out_channels, layer.kernel, layer.stride)
        if _symmetric(layer.padding):
            return nn.Conv2d(*args, padding=(layer.padding[0], layer.padding[2]), bias=layer.bias)
        return _PaddedConv2d(*args, padding=0, bias=layer.bias, pad4=layer.padding)
    if isinstance(layer, BatchNorm2d):
        # PyTorch's momentum IS the canonical one (weight of the new batch statistic); the
        # running variance is updated with the unbiased batch variance (n / (n - 1)).
        return nn.BatchNorm2d(layer.num_features, eps=layer.epsilon, momentum=layer.momentum)
    if isinstance(layer, ReLU):
        return nn.ReLU(inplace=True)
    if isinstance(layer, MaxPool2d):
        if _symmetric(layer.padding):
            return nn.MaxPool2d(layer.kernel, layer.stride, padding=(layer.padding[0], layer.padding[2]))
        return _PaddedMaxPool2d(layer.kernel, layer.stride, padding=0, pad4=layer.padding)
    if isinstance(layer, GlobalAvgPool):
        return _GlobalAvgPool()
    if isinstance(layer, Flatten):
        return nn.Flatten(1)  # NCHW -> C, H, W order: the canonical order
    if isinstance(layer, Dense):
        return nn.Linear(layer.in_features, layer.out_features, bias=layer.bias)
    if isinstance(layer, Dropout):
        return nn.Dropout(layer.rate)
    raise TypeError(f"no PyTorch module for {layer!r}")


class Network(nn.Sequential):
    """The built model; `arch` is the description it was built from."""

    def __init__(self, arch: Arch) -> None:
        super().__init__(OrderedDict((layer.name, _module(layer)) for layer in arch.layers))
        self.arch = arch
        for name, p in self.named_parameters():
            p.requires_grad_(not arch.is_frozen(name.rsplit(".", 1)[0]))
        self._frozen_bn = [m for name, m in self.named_modules()
                           if isinstance(m, nn.BatchNorm2d) and arch.is_frozen(name)]

    def train(self, mode: bool = True) -> Network:
        """Frozen BatchNorm layers stay in eval mode: they normalize with, and keep, their running
        statistics (tf_impl's TorchBatchNorm.frozen does the same), so a frozen layer does not change."""
        super().train(mode)
        for m in self._frozen_bn:
            m.train(False)
        return self


def build(arch: Arch, dtype: torch.dtype = torch.float32, weights: dict[str, np.ndarray] | None = None) -> Network:
    """A CPU module in training mode (float32 unless `dtype`; float64 serves exact parity tests).

    With `weights` (canonical) they are loaded (`load_weights`); without, the module holds
    PyTorch's default initial values. Move it to a device with `.to(device)`.
    """
    module = Network(arch).to(dtype)
    if weights is not None:
        load_weights(module, weights)
    return module


def _tensors(module: Network) -> dict[str, torch.Tensor]:
    named = dict(module.named_parameters())
    named.update((k, v) for k, v in module.named_buffers() if not k.endswith("num_batches_tracked"))
    return named


def load_weights(module: Network, weights: dict[str, np.ndarray]) -> None:
    """Copy canonical weights into the module (exact: same layouts as PyTorch's own)."""
    check_weights(module.arch, weights)
    tensors = _tensors(module)
    keys = {s.key for s in param_specs(module.arch)}
    if set(tensors) != keys:
        raise ModelError(f"module and arch disagree on tensors: {sorted(set(tensors) ^ keys)[:3]}")
    with torch.no_grad():
        for key, t in tensors.items():
            t.copy_(torch.from_numpy(np.ascontiguousarray(weights[key])))
        for name, b in module.named_buffers():
            if name.endswith("num_batches_tracked"):
                b.zero_()


def export_weights(module: Network) -> dict[str, np.ndarray]:
    """Canonical weights (numpy copies, in the module's dtype: float32 normally) of its current state."""
    return {key: t.detach().cpu().numpy().copy() for key, t in _tensors(module).items()}


def count_params(module: nn.Module) -> tuple[int, int]:
    """(trainable, total) measured on the module: total adds frozen ones and BN running stats."""
    trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
    total = sum(p.numel() for p in module.parameters())
    total += sum(b.numel() for n, b in module.named_buffers() if n.endswith(("running_mean", "running_var")))
    return trainable, total


def canonical_grads(module: Network) -> dict[str, np.ndarray]:
    """The parameters' current `.grad` as canonical keys (PyTorch's layouts are the canonical ones)."""
    return {k: p.grad.detach().cpu().numpy().copy() for k, p in module.named_parameters() if p.grad is not None}
