"""Training-step parity, PyTorch vs TensorFlow, for every model and the canonical optimizers.

One forward/backward pass in train mode (BatchNorm on batch statistics, running statistics
updated; cross-entropy averaged over the batch) from the same canonical weights on the same
batch, then each optimizer applied to the same gradients; the updated weights (and BN running
statistics) are compared. Dropout is random, so these configs use dropout 0 (the layers stay in
place as identities).

Why float64. In float32 the two frameworks' forward passes differ by rounding (~1e-7 relative),
and the gradient is not a continuous function of the activations: a max-pool window whose two
largest inputs are within rounding of each other (common after ReLU on structured maps) routes
its gradient to a different pixel, and a pre-activation within rounding of 0 flips a ReLU. Deep
networks also amplify rounding: ResNet-50 at init (32x32 input, batch 4) gives a float32 SGD
update that differs from the SAME framework's float64 update by ~9% (relative L2), so no
elementwise float32 bound can hold across frameworks. In float64 both frameworks compute the
same mathematics to ~1e-12, so a formula difference (padding, flatten order, BN momentum or
variance, optimizer update) shows up as a large, systematic error.

Tolerances (float64):
- Gradients: every element within 1e-8 of the largest gradient (measured worst ~7e-11).
- Weights after one step: every element within L * |g_torch - g_tf| of its own gradient
  difference (+1e-12 of the largest update), where L bounds how much the optimizer's first step
  moves a weight per unit of gradient (`lipschitz`). Adam and RMSprop divide g by ~|g| + epsilon,
  so where g + wd * w nearly cancels, a 1e-12 gradient difference moves the weight by up to
  1e-4 of lr: a fixed relative tolerance would either fail there or be loose everywhere.
- Several steps, SGD: within 1e-9 of the largest update (measured ~1e-12).
- BatchNorm running statistics: 1e-9 relative.
The float32 check on the small CNN bounds the relative L2 error of the whole update by 1e-4
(measured ~4e-7).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from runner.workload.models import ModelConfig, build_arch, init_weights
from runner.workload.optim import OptimConfig

pytestmark = [pytest.mark.torch, pytest.mark.tensorflow]

# Small but complete configs for every model; dropout 0 so a train-mode step is deterministic.
STEP_CONFIGS: dict[str, dict] = {
    "simple_cnn": dict(name="simple_cnn", num_classes=10, dropout=0.0, init="torch_default"),
    "resnet50": dict(name="resnet50", num_classes=100, stem="imagenet"),
    # narrower heads than the defaults keep the float64 steps cheap; the layer types, the flatten
    # into the first dense layer and the features are the same (the defaults: test_models_parity)
    "alexnet_imagenet": dict(name="alexnet", num_classes=10, layout="imagenet", input_size=224, dropout=0.0,
                             init="torch_default", classifier=[256, 128]),
    "alexnet_cifar": dict(name="alexnet", num_classes=10, layout="cifar", dropout=0.0, init="torch_default",
                          classifier=[512, 256]),
    "vgg16": dict(name="vgg16", num_classes=10, dropout=0.0),
}


def batch(arch, n: int, seed: int = 0, dtype: str = "float32") -> tuple[np.ndarray, np.ndarray]:
    """A random NCHW batch and labels for `arch`."""
    rng = np.random.default_rng(seed)
    c, h, w = arch.input_shape
    return rng.standard_normal((n, c, h, w)).astype(dtype), rng.integers(0, arch.num_classes, n)


@dataclass
class StepResult:
    loss: float
    grads: dict[str, np.ndarray]  # canonical keys and layouts
    after: dict[str, dict[str, np.ndarray]]  # optimizer label -> canonical weights after the step


def torch_step(arch, weights, x, y, optims: dict, dtype: str = "float64") -> StepResult:
    import torch

    from runner.workload.models import torch_impl
    from runner.workload.optim import torch_optim

    model = torch_impl.build(arch, getattr(torch, dtype), weights)
    model.train()
    loss = torch.nn.functional.cross_entropy(model(torch.from_numpy(x)), torch.from_numpy(y))
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    canonical = torch_impl.canonical_grads(model)
    state = torch_impl.export_weights(model)  # parameters as loaded, running stats updated
    after = {}
    for label, cfg in optims.items():
        _restore(model, state)
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch_optim.build(params, cfg)
        for n, p in model.named_parameters():
            p.grad = grads[n].clone() if n in grads else None
        opt.step()
        after[label] = torch_impl.export_weights(model)
    return StepResult(float(loss.detach()), canonical, after)


def _restore(model, state: dict[str, np.ndarray]) -> None:
    """Put back an exported state, in the model's own dtype (exact)."""
    import torch

    tensors = dict(model.named_parameters()) | dict(model.named_buffers())
    with torch.no_grad():
        for k, v in state.items():
            tensors[k].copy_(torch.from_numpy(v))


def tf_step(arch, weights, x, y, optims: dict, dtype: str = "float64") -> StepResult:
    import tensorflow as tf

    from runner.workload.models import tf_impl
    from runner.workload.optim import tf_optim

    model = tf_impl.build(arch, dtype, weights)
    with tf.GradientTape() as tape:
        logits = model(x.transpose(0, 2, 3, 1), training=True)
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
    variables = model.trainable_variables
    grads = tape.gradient(loss, variables)
    canonical = tf_impl.canonical_grads(model, grads, variables)
    snapshot = [v.numpy().copy() for v in model.weights]
    after = {}
    for label, cfg in optims.items():
        for v, s in zip(model.weights, snapshot, strict=True):
            v.assign(s)
        opt = tf_optim.build(cfg)
        opt.apply(grads, variables)
        after[label] = tf_impl.export_weights(model)
    return StepResult(float(loss), canonical, after)


ALL_OPTIMIZERS = {
    "sgd_momentum_l2": OptimConfig("sgd", 0.1, momentum=0.9, weight_decay=5e-4),
    "sgd_nesterov_decoupled": OptimConfig("sgd", 0.1, momentum=0.9, nesterov=True, weight_decay=5e-4,
                                          weight_decay_mode="decoupled"),
    "sgd_plain": OptimConfig("sgd", 0.05),
    "adam_l2": OptimConfig("adam", 1e-3, weight_decay=1e-4),
    "adamw_amsgrad": OptimConfig("adam", 1e-3, weight_decay=1e-2, weight_decay_mode="decoupled", amsgrad=True),
    "rmsprop_momentum_l2": OptimConfig("rmsprop", 1e-3, momentum=0.9, weight_decay=1e-4),
    "rmsprop_centered_decoupled": OptimConfig("rmsprop", 1e-3, centered=True, weight_decay=1e-2,
                                              weight_decay_mode="decoupled"),
}
# The large models get one variant per optimizer family and weight-decay mode (the optimizer
# formulas themselves are covered exhaustively in test_optim_parity.py).
FOUR = ("sgd_momentum_l2", "sgd_nesterov_decoupled", "adam_l2", "rmsprop_centered_decoupled")

THREE = ("sgd_nesterov_decoupled", "adam_l2", "rmsprop_momentum_l2")

STEP_CASES = {  # config key -> (batch size, optimizers); the two largest models get three
    "simple_cnn": (4, tuple(ALL_OPTIMIZERS)),
    "resnet50": (4, THREE),
    "alexnet_imagenet": (2, FOUR),
    "alexnet_cifar": (4, FOUR),
    "vgg16": (4, THREE),
}


def lipschitz(cfg: OptimConfig) -> float:
    """How much a first step from fresh state can move a weight per unit of gradient difference.

    SGD: the step is lr * g (momentum) or lr * (1 + momentum) * g (Nesterov). Adam and RMSprop: the
    step is lr * g / (c * |g| + epsilon) for a constant c, whose slope is at most lr / epsilon.
    (L2 decay adds wd * w to both gradients alike; decoupled decay scales both weights alike.)
    """
    return cfg.lr * (1.0 + cfg.momentum) if cfg.name == "sgd" else cfg.lr / cfg.epsilon


def assert_same_grads(ga: dict, gb: dict, label: str) -> None:
    assert ga.keys() == gb.keys()
    scale = max(float(np.abs(g).max()) for g in ga.values())
    for k in ga:
        err = float(np.abs(ga[k] - gb[k]).max())
        assert err <= 1e-8 * scale, f"{label}: gradient of {k} differs by {err:.3g} (largest {scale:.3g})"


def assert_same_step(w0, a: dict, b: dict, label: str, bound: dict | float) -> None:
    """Updated weights equal within `bound`: per key (an array) or a fraction of the largest update."""
    params = [k for k in w0 if not k.endswith(("running_mean", "running_var"))]
    scale = max(float(np.abs(a[k] - w0[k]).max()) for k in params)
    assert scale > 0, f"{label}: nothing moved"
    for k in params:
        err = np.abs(a[k] - b[k])
        allowed = bound[k] if isinstance(bound, dict) else bound * scale
        worst = float(np.max(err - allowed))
        assert worst <= 1e-12 * scale, f"{label}: {k} differs by {float(err.max()):.3g} (largest update {scale:.3g})"
    for k in set(w0) - set(params):
        np.testing.assert_allclose(a[k], b[k], rtol=1e-9, atol=1e-12, err_msg=f"{label}: {k}")


SLOW = {"resnet50", "vgg16"}  # 20-30 s of CPU each (float64, 15-24M parameters, three optimizers)


@pytest.mark.parametrize("key", [pytest.param(k, marks=pytest.mark.slow) if k in SLOW else k for k in STEP_CASES])
def test_one_step_equal_in_float64(key, torch_mod, tf_mod):
    n, labels = STEP_CASES[key]
    arch = build_arch(ModelConfig.from_dict(STEP_CONFIGS[key]))
    w0 = init_weights(arch, seed=1)
    x, y = batch(arch, n, dtype="float64")
    optims = {label: ALL_OPTIMIZERS[label] for label in labels}
    a = torch_step(arch, w0, x, y, optims, "float64")
    b = tf_step(arch, w0, x, y, optims, "float64")
    assert a.loss == pytest.approx(b.loss, rel=1e-12)
    assert_same_grads(a.grads, b.grads, key)
    for label, cfg in optims.items():
        # each weight may differ by at most what its gradient difference explains
        bound = {k: lipschitz(cfg) * np.abs(a.grads[k] - b.grads[k]) if k in a.grads else 0.0 for k in w0}
        assert_same_step(w0, a.after[label], b.after[label], f"{key}/{label}", bound)
    stats = [k for k in w0 if k.endswith("running_var")]
    assert all(not np.array_equal(a.after[labels[0]][k], w0[k]) for k in stats)  # BN really trained


def test_one_step_close_in_float32_small_cnn(torch_mod, tf_mod):
    arch = build_arch(ModelConfig.from_dict(STEP_CONFIGS["simple_cnn"]))
    w0 = init_weights(arch, seed=1)
    x, y = batch(arch, 4)
    optims = {"sgd": ALL_OPTIMIZERS["sgd_nesterov_decoupled"]}
    a, b = torch_step(arch, w0, x, y, optims, "float32"), tf_step(arch, w0, x, y, optims, "float32")
    assert a.loss == pytest.approx(b.loss, rel=1e-5)
    num = sum(float(np.sum((a.after["sgd"][k].astype(np.float64) - b.after["sgd"][k]) ** 2)) for k in w0)
    den = sum(float(np.sum((a.after["sgd"][k].astype(np.float64) - w0[k]) ** 2)) for k in w0)
    assert np.sqrt(num / den) <= 1e-4


def train_steps_torch(arch, w0, batches, cfg, lrs):
    import torch

    from runner.workload.models import torch_impl
    from runner.workload.optim import torch_optim

    model = torch_impl.build(arch, torch.float64, w0)
    model.train()
    opt = torch_optim.build([p for p in model.parameters() if p.requires_grad], cfg)
    for (x, y), lr in zip(batches, lrs, strict=True):
        torch_optim.set_lr(opt, lr)
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(torch.from_numpy(x)), torch.from_numpy(y)).backward()
        opt.step()
    return torch_impl.export_weights(model)


def train_steps_tf(arch, w0, batches, cfg, lrs):
    import tensorflow as tf

    from runner.workload.models import tf_impl
    from runner.workload.optim import tf_optim

    model = tf_impl.build(arch, "float64", w0)
    opt = tf_optim.build(cfg)
    for (x, y), lr in zip(batches, lrs, strict=True):
        opt.set_lr(lr)
        with tf.GradientTape() as tape:
            logits = model(x.transpose(0, 2, 3, 1), training=True)
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
        opt.apply(tape.gradient(loss, model.trainable_variables), model.trainable_variables)
    return tf_impl.export_weights(model)


def test_sgd_momentum_over_steps_with_a_changing_lr(torch_mod, tf_mod):
    # PyTorch keeps lr out of the momentum buffer, Keras inside: equal only while lr is constant.
    arch = build_arch(ModelConfig.from_dict(STEP_CONFIGS["simple_cnn"]))
    w0 = init_weights(arch, seed=2)
    batches = [batch(arch, 4, seed=s, dtype="float64") for s in range(3)]
    cfg = OptimConfig("sgd", 0.1, momentum=0.9, weight_decay=5e-4)
    lrs = [0.1, 0.02, 0.2]
    a = train_steps_torch(arch, w0, batches, cfg, lrs)
    b = train_steps_tf(arch, w0, batches, cfg, lrs)
    assert_same_step(w0, a, b, "sgd momentum, 3 steps", 1e-9)


def test_frozen_batchnorm_keeps_its_statistics(torch_mod, tf_mod):
    # Frozen = the layer does not change: parameters not trained, and a frozen BatchNorm
    # normalizes with its running statistics and keeps them (eval mode), in both frameworks.
    cfg = ModelConfig.from_dict(STEP_CONFIGS["simple_cnn"] | {"freeze": ["conv1", "bn1"]})
    arch = build_arch(cfg)
    w0 = init_weights(arch, seed=3)
    batches = [batch(arch, 4, seed=9, dtype="float64")]
    opt = OptimConfig("sgd", 0.1, momentum=0.9, weight_decay=5e-4, weight_decay_mode="decoupled")
    a = train_steps_torch(arch, w0, batches, opt, [0.1])
    b = train_steps_tf(arch, w0, batches, opt, [0.1])
    for out in (a, b):
        for k in ("conv1.weight", "bn1.weight", "bn1.bias", "bn1.running_mean", "bn1.running_var"):
            assert np.array_equal(out[k], w0[k]), k
        assert not np.array_equal(out["bn2.running_mean"], w0["bn2.running_mean"])
        assert not np.array_equal(out["conv2.weight"], w0["conv2.weight"])
    assert_same_step(w0, a, b, "frozen conv1/bn1", 1e-9)
