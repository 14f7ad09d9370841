"""MXNet (Gluon) builder: one `Arch` -> a hybridized `HybridBlock` (input NCHW, output logits).

The twin of `torch_impl` and `tf_impl`. Gluon's parameter names are generated prefixes
(`conv3_weight`), so the network keeps its own map from canonical keys (`layer1.0.conv1.weight`)
to Gluon parameters (`Network.canonical`). What differs from Gluon's defaults, and why:

- Layout NCHW and weights OIHW / dense (out, in): Gluon's own, the canonical ones; no permutation,
  and `Flatten` of an NCHW map is in (C, H, W) order, the canonical flatten order.
- Padding: MXNet pads convolutions and pools symmetrically (like PyTorch); a max-pool's padded
  positions never win (-inf semantics, like PyTorch). An asymmetric (top, bottom, left, right)
  padding in the description is an explicit `pad` (zeros for convs, -inf for max-pools) before
  an unpadded layer, as in the other builders. Pooling uses the 'valid' (floor) convention.
- Dense: `flatten=False` (the description flattens explicitly), `use_bias` from the description.
- BatchNorm (`CanonicalBatchNorm`): MXNet's momentum is the weight of the OLD statistic (like
  Keras), stored as a float32 operator argument, its running variance takes the BIASED batch
  variance, and it updates the running statistics in the BACKWARD pass (none after a forward
  alone). None of that is PyTorch's. So the fused operator only normalizes (momentum 1.0: its
  own update leaves the statistics unchanged) and returns the batch mean and inverse std; the
  network then updates the running statistics itself, right after the forward pass as PyTorch
  does: `r <- (1 - m) r + m stat`, with m the canonical momentum and the UNBIASED variance
  (n / (n - 1), n = batch x H x W), in the parameters' dtype. Epsilon is explicit.
- Freezing: a frozen layer's parameters get `grad_req = "null"` and a frozen BatchNorm always
  normalizes with (and keeps) its running statistics, as in the other builders.
- Dropout: Gluon's (inverted, rate = drop probability), active in training only; its masks come
  from MXNet's generator (`mx.random.seed`), not the other frameworks'.

Train and eval are two hybridized graphs over the SAME blocks and parameters: the training graph
also outputs every BatchNorm's batch statistics, the eval graph is plain (no extra work at
inference). `Network.forward` picks by `autograd.is_training()`.
"""

from __future__ import annotations

from typing import Any

import mxnet as mx
import numpy as np
from mxnet import autograd
from mxnet.gluon import HybridBlock, Parameter, nn

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
    trace,
)
from runner.workload.models.init import check_weights

# Gluon parameter attribute per (layer type, canonical param).
MX_NAME = {
    (Conv2d, "weight"): "weight", (Conv2d, "bias"): "bias",
    (Dense, "weight"): "weight", (Dense, "bias"): "bias",
    (BatchNorm2d, "weight"): "gamma", (BatchNorm2d, "bias"): "beta",
    (BatchNorm2d, "running_mean"): "running_mean", (BatchNorm2d, "running_var"): "running_var",
}


class _Trace:
    """Shared by one network's BatchNorm blocks while a graph is traced: whether this is the
    training graph, and the layers and their batch statistics (m x mean, m x biased variance)
    collected in order."""

    def __init__(self) -> None:
        self.training = False
        self.stats: list[Any] = []
        self.layers: list[CanonicalBatchNorm] = []
        self.train_order: list[CanonicalBatchNorm] = []  # the layers behind the training graph's outputs


class CanonicalBatchNorm(HybridBlock):
    """BatchNorm over axis 1 whose running statistics are updated by the network (PyTorch's rule).

    In the training graph it normalizes with the batch statistics and reports them to the trace
    (m x mean, m x biased variance, from the operator's mean and inverse std); in the eval graph,
    and always when frozen, it normalizes with the running statistics. The fused operator's own
    running update is disabled (momentum 1.0).
    """

    def __init__(self, layer: BatchNorm2d, frozen: bool, trace_: _Trace, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.layer, self.frozen, self._trace = layer, frozen, trace_
        c = (layer.num_features,)
        with self.name_scope():
            req = "null" if frozen else "write"
            self.gamma = self.params.get("gamma", shape=c, init=mx.init.One(), grad_req=req)
            self.beta = self.params.get("beta", shape=c, init=mx.init.Zero(), grad_req=req)
            self.running_mean = self.params.get("running_mean", shape=c, init=mx.init.Zero(), grad_req="null",
                                                differentiable=False)
            self.running_var = self.params.get("running_var", shape=c, init=mx.init.One(), grad_req="null",
                                               differentiable=False)

    def hybrid_forward(self, F: Any, x: Any, gamma: Any, beta: Any, running_mean: Any,  # noqa: N803
                       running_var: Any) -> Any:
        eps = self.layer.epsilon
        if self._trace.training and not self.frozen:
            out = F.BatchNorm(x, gamma, beta, running_mean, running_var, eps=eps, momentum=1.0, fix_gamma=False,
                              use_global_stats=False, output_mean_var=True, axis=1)
            m = self.layer.momentum
            inv_std = F.BlockGrad(out[2])
            var = F.relu(F.reciprocal(F.square(inv_std)) - eps)  # the biased batch variance (>= 0)
            self._trace.stats += [F.BlockGrad(out[1]) * m, var * m]  # m x each batch statistic
            self._trace.layers.append(self)
            return out[0]
        return F.BatchNorm(x, gamma, beta, running_mean, running_var, eps=eps, momentum=1.0, fix_gamma=False,
                           use_global_stats=True, axis=1)

    def update_running(self, mean_m: Any, var_m: Any, n: int) -> None:
        """PyTorch's update from one training batch of n values per channel (outside autograd),
        given m x the batch mean and m x the biased batch variance from the training graph:
        r <- (1 - m) r + m stat, the variance made unbiased (n / (n - 1)). Five small operators."""
        keep = 1.0 - self.layer.momentum
        rm, rv = self.running_mean.data(), self.running_var.data()
        rm *= keep
        rm += mean_m.astype(rm.dtype, copy=False)
        rv *= keep
        rv += var_m.astype(rv.dtype, copy=False) * (n / max(n - 1, 1))


class _Pad(HybridBlock):
    """Pad H and W by (top, bottom, left, right) with a constant (0 for convs, -inf for max-pools)."""

    def __init__(self, pad4: tuple[int, int, int, int], value: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        t, b, left, r = pad4
        self.width, self.value = (0, 0, 0, 0, t, b, left, r), value

    def hybrid_forward(self, F: Any, x: Any) -> Any:  # noqa: N803
        return F.pad(x, mode="constant", pad_width=self.width, constant_value=self.value)


class _Chain(HybridBlock):
    """Children applied in order, registered under the description's names (`0`, `conv1`, ...)."""

    def __init__(self, children: list[tuple[str, HybridBlock]], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        for name, block in children:
            self.register_child(block, name)

    def hybrid_forward(self, F: Any, x: Any) -> Any:  # noqa: N803
        for block in self._children.values():
            x = block(x)
        return x


class _Residual(HybridBlock):
    """relu(body(x) + shortcut(x)); body layers are direct children (torchvision's Bottleneck)."""

    def __init__(self, body: list[tuple[str, HybridBlock]], shortcut: tuple[str, HybridBlock] | None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.body_names = [name for name, _ in body]
        for name, block in body:
            self.register_child(block, name)
        self.shortcut_name = None if shortcut is None else shortcut[0]
        if shortcut is not None:
            self.register_child(shortcut[1], shortcut[0])

    def hybrid_forward(self, F: Any, x: Any) -> Any:  # noqa: N803
        out = x
        for name in self.body_names:
            out = self._children[name](out)
        identity = x if self.shortcut_name is None else self._children[self.shortcut_name](x)
        return F.relu(out + identity)


class _GlobalAvgPool(HybridBlock):
    def hybrid_forward(self, F: Any, x: Any) -> Any:  # noqa: N803
        return F.flatten(F.Pooling(x, kernel=(1, 1), global_pool=True, pool_type="avg"))  # (N, C)


def _symmetric(pad4: tuple[int, int, int, int]) -> bool:
    t, b, left, r = pad4
    return t == b and left == r


class _Builder:
    """Arch layers -> Gluon blocks; records every leaf block under its path."""

    def __init__(self, arch: Arch, trace_: _Trace) -> None:
        self.arch, self.trace = arch, trace_
        self.leaves: dict[str, HybridBlock] = {}

    def block(self, layer: Layer, path: str) -> HybridBlock:
        if isinstance(layer, Sequential):
            return _Chain([(c.name, self.block(c, f"{path}.{c.name}")) for c in layer.layers])
        if isinstance(layer, Residual):
            short = None if layer.shortcut is None else (
                layer.shortcut.name, self.block(layer.shortcut, f"{path}.{layer.shortcut.name}"))
            return _Residual([(c.name, self.block(c, f"{path}.{c.name}")) for c in layer.body], short)
        leaf, outer = self._leaf(layer, path)
        self.leaves[path] = leaf
        return outer

    def _leaf(self, layer: Layer, path: str) -> tuple[HybridBlock, HybridBlock]:
        """(the block holding the parameters, the block to call: itself or a pad + it)."""
        if isinstance(layer, Conv2d):
            sym = _symmetric(layer.padding)
            pad = (layer.padding[0], layer.padding[2]) if sym else (0, 0)
            conv = nn.Conv2D(layer.out_channels, layer.kernel, strides=layer.stride, padding=pad,
                             layout="NCHW", use_bias=layer.bias, in_channels=layer.in_channels)
            return conv, conv if sym else _Chain([("pad", _Pad(layer.padding, 0.0)), ("conv", conv)])
        if isinstance(layer, BatchNorm2d):
            bn = CanonicalBatchNorm(layer, self.arch.is_frozen(path), self.trace)
            return bn, bn
        if isinstance(layer, ReLU):
            relu = nn.Activation("relu")
            return relu, relu
        if isinstance(layer, MaxPool2d):
            sym = _symmetric(layer.padding)
            pad = (layer.padding[0], layer.padding[2]) if sym else (0, 0)
            pool = nn.MaxPool2D(layer.kernel, layer.stride, padding=pad, layout="NCHW", ceil_mode=False)
            return pool, pool if sym else _Chain([("pad", _Pad(layer.padding, float("-inf"))), ("pool", pool)])
        if isinstance(layer, GlobalAvgPool):
            gap = _GlobalAvgPool()
            return gap, gap
        if isinstance(layer, Flatten):
            flat = nn.Flatten()  # NCHW -> (C, H, W) order: the canonical order
            return flat, flat
        if isinstance(layer, Dense):
            dense = nn.Dense(layer.out_features, use_bias=layer.bias, flatten=False, in_units=layer.in_features)
            return dense, dense
        if isinstance(layer, Dropout):
            drop = nn.Dropout(layer.rate)
            return drop, drop
        raise TypeError(f"no Gluon block for {layer!r}")


class _Graph(HybridBlock):
    """One of the network's two graphs over the shared top-level blocks."""

    def __init__(self, layers: list[tuple[str, HybridBlock]], trace_: _Trace, training: bool) -> None:
        super().__init__()
        self._trace, self._training = trace_, training
        self._names = [name for name, _ in layers]
        for name, block in layers:
            self.register_child(block, name)

    def hybrid_forward(self, F: Any, x: Any) -> Any:  # noqa: N803
        # Runs while the graph is traced (once when hybridized, every call when not).
        self._trace.training, self._trace.stats, self._trace.layers = self._training, [], []
        for name in self._names:
            x = self._children[name](x)
        if not self._training:
            return x
        self._trace.train_order = list(self._trace.layers)  # (not a Block attribute: Gluon warns on lists)
        return (x, *self._trace.stats) if self._trace.stats else x


class Network(HybridBlock):
    """The built model. `arch`: its description; `canonical`: canonical key -> Gluon Parameter.

    Calling it under `autograd.record()` (training) runs the training graph and then updates the
    BatchNorm running statistics; otherwise the eval graph. `hybridize(...)` applies to both.
    """

    def __init__(self, arch: Arch) -> None:
        super().__init__()
        self.arch = arch
        trace_ = self._trace = _Trace()
        builder = _Builder(arch, trace_)
        layers = [(layer.name, builder.block(layer, layer.name)) for layer in arch.layers]
        self.train_graph = _Graph(layers, trace_, training=True)
        self.eval_graph = _Graph(layers, trace_, training=False)
        spatial = {t.path: t.in_shape[1] * t.in_shape[2] for t in trace(arch) if isinstance(t.layer, BatchNorm2d)}
        self._bn_spatial = {id(b): spatial[p] for p, b in builder.leaves.items() if isinstance(b, CanonicalBatchNorm)}
        self.canonical: dict[str, Parameter] = {}
        for spec in param_specs(arch):
            param = getattr(builder.leaves[spec.path], MX_NAME[(type(spec.layer), spec.param)])
            if spec.param in ("weight", "bias") and not spec.trainable:
                param.grad_req = "null"
            self.canonical[spec.key] = param

    def hybridize(self, active: bool = True, **kwargs: Any) -> None:
        self.train_graph.hybridize(active, **kwargs)
        self.eval_graph.hybridize(active, **kwargs)

    def forward(self, x: Any) -> Any:  # type: ignore[override]
        if not autograd.is_training():
            return self.eval_graph(x)
        if tuple(x.shape[1:]) != tuple(self.arch.input_shape):  # BatchNorm's n = batch x H x W, from the arch
            raise ModelError(f"training input {tuple(x.shape[1:])} is not the model's {tuple(self.arch.input_shape)}",
                             field="model.input_size", fix="feed (N, C, H, W) batches of the model's input size")
        out = self.train_graph(x)
        if not isinstance(out, (list, tuple)):
            return out
        logits, stats = out[0], out[1:]
        batch = x.shape[0]
        with autograd.pause():
            for i, bn in enumerate(self._trace.train_order):
                bn.update_running(stats[2 * i], stats[2 * i + 1], batch * self._bn_spatial[id(bn)])
        return logits

    def trainable_params(self) -> list[Parameter]:
        """The parameters an optimizer updates, in canonical order."""
        return [p for p in self.canonical.values() if p.grad_req != "null"]


def build(arch: Arch, dtype: str = "float32", weights: dict[str, np.ndarray] | None = None,
          ctx: Any = None, hybridize: bool = True) -> Network:
    """A Gluon network on `ctx` (CPU by default), hybridized unless `hybridize=False`.

    float32 unless `dtype` (float64 serves exact parity tests). With `weights` (canonical) they
    are loaded (`load_weights`); without, parameters hold Gluon's default initial values.
    """
    ctx = ctx or mx.cpu()
    net = Network(arch)
    net.initialize(mx.init.Uniform(0.07), ctx=ctx)
    if dtype != "float32":
        net.cast(dtype)
    if weights is not None:
        load_weights(net, weights)
    if hybridize:
        net.hybridize()
    return net


def load_weights(net: Network, weights: dict[str, np.ndarray]) -> None:
    """Copy canonical weights into the network (exact: Gluon's layouts are the canonical ones)."""
    check_weights(net.arch, weights)
    for key, param in net.canonical.items():
        if tuple(param.shape) != weights[key].shape:
            raise ModelError(f"{key}: Gluon parameter {tuple(param.shape)} vs canonical {weights[key].shape}")
        param.set_data(mx.nd.array(weights[key], ctx=param.list_ctx()[0], dtype=param.dtype))


def export_weights(net: Network) -> dict[str, np.ndarray]:
    """Canonical weights (numpy copies, in the network's dtype: float32 normally), current state."""
    return {key: p.data().asnumpy().copy() for key, p in net.canonical.items()}


def count_params(net: Network) -> tuple[int, int]:
    """(trainable, total) measured on the network: total adds frozen ones and BN running stats."""
    params = list(net.collect_params().values())
    trainable = sum(int(np.prod(p.shape)) for p in params if p.grad_req != "null")
    return trainable, sum(int(np.prod(p.shape)) for p in params)


def canonical_grads(net: Network) -> dict[str, np.ndarray]:
    """The trainable parameters' current gradients as canonical keys (layouts are canonical)."""
    return {k: p.grad().asnumpy().copy() for k, p in net.canonical.items() if p.grad_req != "null"}
