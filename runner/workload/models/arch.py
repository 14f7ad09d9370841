"""The framework-neutral description of a network: a tree of small layer dataclasses.

Both framework builders (`torch_impl`, `tf_impl`) are generated from the same `Arch`, layer by
layer, so parity is visible on the page. Every layer carries what the frameworks would otherwise
default differently: explicit padding (top, bottom, left, right), whether a convolution has a
bias, BatchNorm momentum (PyTorch convention) and epsilon, the flatten order feeding a dense layer.

Names are the layers' local names; a layer's *path* joins the names of its containers with dots
(`layer1.0.conv1`), like PyTorch's `state_dict` keys, and canonical weight keys are
`<path>.<param>` (see `param_specs`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Union

Pad4 = tuple[int, int, int, int]  # top, bottom, left, right
Shape = tuple[int, ...]  # (C, H, W) for feature maps, (F,) for vectors


@dataclass(frozen=True)
class Conv2d:
    name: str
    in_channels: int
    out_channels: int
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: Pad4
    bias: bool


@dataclass(frozen=True)
class BatchNorm2d:
    name: str
    num_features: int
    momentum: float  # PyTorch convention: weight of the new batch statistic
    epsilon: float
    zero_init: bool = False  # gamma starts at 0 (ResNet "zero-init residual")


@dataclass(frozen=True)
class ReLU:
    name: str


@dataclass(frozen=True)
class MaxPool2d:
    """Max-pooling; padded positions count as -inf (PyTorch's semantics)."""

    name: str
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: Pad4 = (0, 0, 0, 0)


@dataclass(frozen=True)
class GlobalAvgPool:
    """Mean over H and W: (C, H, W) -> (C,)."""

    name: str


@dataclass(frozen=True)
class Flatten:
    """(C, H, W) -> (C*H*W,) in C, H, W order (PyTorch's order; canonical)."""

    name: str


@dataclass(frozen=True)
class Dense:
    name: str
    in_features: int
    out_features: int
    bias: bool = True
    # Set when the input is a flattened (C, H, W) map with H*W > 1: the canonical weight's
    # columns are in C, H, W order, and an NHWC framework must permute them.
    input_chw: tuple[int, int, int] | None = None


@dataclass(frozen=True)
class Dropout:
    name: str
    rate: float


@dataclass(frozen=True)
class Sequential:
    name: str
    layers: tuple[Layer, ...]


@dataclass(frozen=True)
class Residual:
    """out = relu(body(x) + shortcut(x)); an absent shortcut is the identity.

    The body's layers are registered directly under the block (ResNet's `conv1`, `bn1`, ...), the
    shortcut as a `Sequential` child (ResNet's `downsample`); the final ReLU is named `relu`.
    """

    name: str
    body: tuple[Layer, ...]
    shortcut: Sequential | None = None


Leaf = Union[Conv2d, BatchNorm2d, ReLU, MaxPool2d, GlobalAvgPool, Flatten, Dense, Dropout]  # noqa: UP007
Layer = Union[Leaf, Sequential, Residual]  # noqa: UP007


@dataclass(frozen=True)
class Arch:
    """A whole network: input shape (C, H, W), layers, and the recipe choices that shape weights."""

    name: str
    input_shape: tuple[int, int, int]
    num_classes: int
    layers: tuple[Layer, ...]
    init: str
    frozen: tuple[str, ...] = ()  # path prefixes whose parameters are not trained
    config: dict[str, object] = field(default_factory=dict, compare=False)  # the ModelConfig, recorded

    def is_frozen(self, path: str) -> bool:
        return any(path == p or path.startswith(p + ".") for p in self.frozen)


@dataclass(frozen=True)
class ParamSpec:
    """One canonical tensor: key `<path>.<param>`, layout, and whether an optimizer trains it."""

    key: str
    path: str
    param: str  # weight | bias | running_mean | running_var
    shape: tuple[int, ...]
    trainable: bool
    layer: Leaf


@dataclass(frozen=True)
class Traced:
    """A leaf with its path and the shapes it maps (batch dimension excluded)."""

    path: str
    layer: Leaf
    in_shape: Shape
    out_shape: Shape


def walk(layers: tuple[Layer, ...], prefix: str = "") -> Iterator[tuple[str, Leaf]]:
    """Leaves in execution order with their dotted paths (residual: body, then shortcut)."""
    for layer in layers:
        path = f"{prefix}{layer.name}"
        if isinstance(layer, Sequential):
            yield from walk(layer.layers, path + ".")
        elif isinstance(layer, Residual):
            yield from walk(layer.body, path + ".")
            if layer.shortcut is not None:
                yield from walk((layer.shortcut,), path + ".")
        else:
            yield path, layer


def param_specs(arch: Arch) -> list[ParamSpec]:
    """Every canonical tensor, in execution order. Layouts: conv OIHW, dense (out, in)."""
    specs: list[ParamSpec] = []
    for path, layer in walk(arch.layers):
        trainable = not arch.is_frozen(path)
        if isinstance(layer, Conv2d):
            kh, kw = layer.kernel
            specs.append(ParamSpec(f"{path}.weight", path, "weight",
                                   (layer.out_channels, layer.in_channels, kh, kw), trainable, layer))
            if layer.bias:
                specs.append(ParamSpec(f"{path}.bias", path, "bias", (layer.out_channels,), trainable, layer))
        elif isinstance(layer, Dense):
            specs.append(ParamSpec(f"{path}.weight", path, "weight",
                                   (layer.out_features, layer.in_features), trainable, layer))
            if layer.bias:
                specs.append(ParamSpec(f"{path}.bias", path, "bias", (layer.out_features,), trainable, layer))
        elif isinstance(layer, BatchNorm2d):
            c = (layer.num_features,)
            specs.append(ParamSpec(f"{path}.weight", path, "weight", c, trainable, layer))
            specs.append(ParamSpec(f"{path}.bias", path, "bias", c, trainable, layer))
            specs.append(ParamSpec(f"{path}.running_mean", path, "running_mean", c, False, layer))
            specs.append(ParamSpec(f"{path}.running_var", path, "running_var", c, False, layer))
    return specs


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def count_params(arch: Arch) -> tuple[int, int]:
    """(trainable, total). Total adds frozen parameters and BatchNorm running statistics."""
    specs = param_specs(arch)
    return sum(_numel(s.shape) for s in specs if s.trainable), sum(_numel(s.shape) for s in specs)


def _out_len(size: int, k: int, s: int, pad: int) -> int:
    return (size + pad - k) // s + 1


class ShapeError(ValueError):
    """The layers do not fit together (raised while building an `Arch`; a programming error)."""


def trace(arch: Arch) -> list[Traced]:
    """Propagate shapes through every leaf and check that the layers fit together."""
    out: list[Traced] = []
    _trace(arch.layers, tuple(arch.input_shape), "", out, [None])
    return out


def _trace(layers: tuple[Layer, ...], shape: Shape, prefix: str, out: list[Traced],
           flat_from: list[tuple[int, int, int] | None]) -> Shape:
    for layer in layers:
        path = f"{prefix}{layer.name}"
        if isinstance(layer, Sequential):
            shape = _trace(layer.layers, shape, path + ".", out, flat_from)
        elif isinstance(layer, Residual):
            body = _trace(layer.body, shape, path + ".", out, flat_from)
            short = shape if layer.shortcut is None else _trace((layer.shortcut,), shape, path + ".", out,
                                                                  flat_from)
            if body != short:
                raise ShapeError(f"{path}: body gives {body}, shortcut gives {short}")
            shape = body
        else:
            new = _leaf_shape(path, layer, shape, flat_from)
            out.append(Traced(path, layer, shape, new))
            shape = new
    return shape


def _leaf_shape(path: str, layer: Leaf, shape: Shape, flat_from: list[tuple[int, int, int] | None]) -> Shape:
    if isinstance(layer, (Conv2d, MaxPool2d)):
        if len(shape) != 3:
            raise ShapeError(f"{path}: needs a (C, H, W) input, got {shape}")
        c, h, w = shape
        t, b, left, r = layer.padding
        kh, kw = layer.kernel
        sh, sw = layer.stride
        oh, ow = _out_len(h, kh, sh, t + b), _out_len(w, kw, sw, left + r)
        if oh < 1 or ow < 1:
            raise ShapeError(f"{path}: input {shape} is too small")
        if isinstance(layer, Conv2d):
            if layer.in_channels != c:
                raise ShapeError(f"{path}: expects {layer.in_channels} channels, gets {c}")
            return (layer.out_channels, oh, ow)
        return (c, oh, ow)
    if isinstance(layer, BatchNorm2d):
        if len(shape) != 3 or shape[0] != layer.num_features:
            raise ShapeError(f"{path}: expects {layer.num_features} channels, gets {shape}")
        return shape
    if isinstance(layer, GlobalAvgPool):
        if len(shape) != 3:
            raise ShapeError(f"{path}: needs a (C, H, W) input, got {shape}")
        flat_from[0] = None
        return (shape[0],)
    if isinstance(layer, Flatten):
        if len(shape) != 3:
            raise ShapeError(f"{path}: needs a (C, H, W) input, got {shape}")
        c, h, w = shape
        flat_from[0] = (c, h, w) if h * w > 1 else None
        return (c * h * w,)
    if isinstance(layer, Dense):
        if shape != (layer.in_features,):
            raise ShapeError(f"{path}: expects ({layer.in_features},), gets {shape}")
        if layer.input_chw != flat_from[0]:
            raise ShapeError(f"{path}: input_chw is {layer.input_chw}, the flattened map is {flat_from[0]}")
        flat_from[0] = None
        return (layer.out_features,)
    return shape  # ReLU, Dropout


def output_shape(layers: tuple[Layer, ...], input_shape: Shape) -> Shape:
    """Shape after `layers` (used by builders to size the first dense layer)."""
    return _trace(layers, tuple(input_shape), "", [], [None])


def flops_per_image(arch: Arch) -> int:
    """Forward FLOPs of one image: 2 x multiply-adds of every convolution and dense layer.

    Convention (the common one, as in the ResNet paper's "FLOPs" x 2 and fvcore's MACs x 2):
    bias additions, BatchNorm, ReLU, pooling, residual additions and softmax are not counted.
    """
    total = 0
    for t in trace(arch):
        if isinstance(t.layer, Conv2d):
            kh, kw = t.layer.kernel
            _, oh, ow = t.out_shape
            total += 2 * oh * ow * t.layer.out_channels * t.layer.in_channels * kh * kw
        elif isinstance(t.layer, Dense):
            total += 2 * t.layer.in_features * t.layer.out_features
    return total


def layer_table(arch: Arch) -> list[dict[str, object]]:
    """One row per leaf: path, type, output shape, parameters, FLOPs (for docs and `runner models`)."""
    params: dict[str, int] = {}
    for s in param_specs(arch):
        params[s.path] = params.get(s.path, 0) + _numel(s.shape)
    rows: list[dict[str, object]] = []
    for t in trace(arch):
        flops = 0
        if isinstance(t.layer, Conv2d):
            kh, kw = t.layer.kernel
            flops = 2 * t.out_shape[1] * t.out_shape[2] * t.layer.out_channels * t.layer.in_channels * kh * kw
        elif isinstance(t.layer, Dense):
            flops = 2 * t.layer.in_features * t.layer.out_features
        rows.append({"path": t.path, "type": type(t.layer).__name__, "out_shape": t.out_shape,
                     "params": params.get(t.path, 0), "flops": flops})
    return rows
