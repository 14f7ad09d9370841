"""Every model, MXNet (Gluon, hybridized) vs PyTorch: parameter counts, eval logits, round trips,
and training-step parity with the canonical optimizers.

PyTorch runs in this process; MXNet in `.venv-mxnet` (mxnet_subprocess.py), from the SAME
canonical weights and the SAME input arrays (saved `.npz`). Skipped with a reason where
`.venv-mxnet` is absent (`just setup` creates it, so CI has it).

Eval-logit tolerances (float32, CPU, batch 2, BN on running statistics, dropout off), absolute,
per model. The two frameworks sum the same products in different orders (oneDNN vs PyTorch's
kernels), each float32 sum carrying ~1e-7 relative rounding that later layers pass on and
amplify; the difference is of the size of either framework's own float32 rounding. Measured
here (seed 123), max |MXNet - PyTorch| / max |PyTorch float32 - PyTorch float64| / max |logit|:
simple_cnn 7.5e-8 / 5.2e-8 / 0.13; ResNet-50 ImageNet stem 1.5e-5 / 1.2e-5 / 10.8 and CIFAR stem
1.4e-5 / 1.2e-5 / 17.9 (50 layers; with BatchNorm on its initial statistics the activations grow
through every residual sum, so the logits are large and so is their rounding); AlexNet 224
1.5e-8 / 8.7e-9 / 0.034; AlexNet CIFAR 1.0e-8 / 6.9e-9 / 0.024; VGG16 2.9e-8 / 8.7e-9 / 0.042.
Bounds: 1e-4 for the ResNets (PyTorch-TensorFlow's bound; ~7x the measured value, ~1e-5 of the
logits), 1e-6 for the shallow nets (>= 13x the measured value, still <= 5e-5 of their logits: a
wrong padding, flatten order or BN epsilon moves them by far more).

Step tolerances are test_models_step.py's (float64, where formula differences are large and
rounding is not), for the same reasons given there.
"""

from __future__ import annotations

import numpy as np
import pytest

from runner.workload.models import ModelConfig, build_arch, count_params, init_weights
from runner.workload.optim import OptimConfig
from tests.workload.asym_arch import asym_arch
from tests.workload.mxnet_subprocess import require_mxnet, run_job
from tests.workload.test_models_parity import EVAL_CONFIGS
from tests.workload.test_models_step import (
    ALL_OPTIMIZERS,
    SLOW,
    STEP_CASES,
    STEP_CONFIGS,
    assert_same_grads,
    assert_same_step,
    batch,
    lipschitz,
    torch_step,
    train_steps_torch,
)

pytestmark = [pytest.mark.torch]

LOGIT_TOLERANCE = {"simple_cnn": 1e-6, "resnet50": 1e-4, "resnet50_cifar": 1e-4, "alexnet_imagenet": 1e-6,
                   "alexnet_cifar": 1e-6, "vgg16": 1e-6}


def _w(weights: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {f"w:{k}": v for k, v in weights.items()}


def _prefixed(out: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    return {k[len(prefix):]: v for k, v in out.items() if k.startswith(prefix)}


@pytest.fixture(scope="module", params=list(EVAL_CONFIGS))
def evaluated(request, torch_mod, tmp_path_factory):
    require_mxnet()
    from runner.workload.models import torch_impl

    key = request.param
    arch = build_arch(ModelConfig.from_dict(EVAL_CONFIGS[key]))
    weights = init_weights(arch, seed=123)
    c, h, w = arch.input_shape
    x = np.random.default_rng(5).standard_normal((2, c, h, w)).astype(np.float32)
    mx_out = run_job("eval_logits", tmp_path_factory.mktemp(key), {"model": EVAL_CONFIGS[key]},
                     {"x": x, **_w(weights)})
    tm = torch_impl.build(arch, weights=weights)
    tm.eval()
    with torch_mod.no_grad():
        logits = tm(torch_mod.from_numpy(x)).numpy()
    return key, arch, weights, tm, logits, mx_out


def test_parameter_counts_are_equal(evaluated):
    from runner.workload.models import torch_impl

    key, arch, _, tm, _, mx_out = evaluated
    assert tuple(int(n) for n in mx_out["counts"]) == count_params(arch) == torch_impl.count_params(tm)
    trainable = set(mx_out["trainable_keys"].tolist())
    assert trainable == {n for n, p in tm.named_parameters() if p.requires_grad}
    if key == "alexnet_imagenet":  # features frozen: only the classifier trains
        assert trainable and all(k.startswith("classifier.") for k in trainable)


def test_eval_logits_equal_pytorch(evaluated):
    key, arch, _, _, want, mx_out = evaluated
    got = mx_out["logits"]
    assert got.shape == want.shape == (2, arch.num_classes)
    err = float(np.abs(got - want).max())
    assert err <= LOGIT_TOLERANCE[key], f"{key}: max |diff| {err:.3g}, |logits| {np.abs(want).max():.3g}"
    assert np.abs(want).max() > 1e-3  # not trivially zero


def test_weights_round_trip_exactly(evaluated):
    _, _, weights, _, _, mx_out = evaluated
    back = _prefixed(mx_out, "w:")
    assert list(back) == list(weights)
    for k, w in weights.items():
        assert back[k].dtype == np.float32 and np.array_equal(back[k], w), k


def test_hybridized_graph_equals_imperative(tmp_path):
    # the cached graph computes what the blocks compute one by one (train and eval graphs alike)
    cfg = STEP_CONFIGS["simple_cnn"]
    arch = build_arch(ModelConfig.from_dict(cfg))
    w0 = init_weights(arch, seed=4)
    x, y = batch(arch, 4, dtype="float64")
    optims = {"sgd": ALL_OPTIMIZERS["sgd_momentum_l2"].__dict__}
    runs = [run_job("step", tmp_path / str(h), {"model": cfg, "optims": optims, "hybridize": h},
                    {"x": x, "y": y, **_w(w0)}) for h in (True, False)]
    assert runs[0].keys() == runs[1].keys()
    for k in runs[0]:
        np.testing.assert_allclose(runs[0][k], runs[1][k], rtol=1e-12, atol=1e-14, err_msg=k)


def _mx_step(tmp, key, w0, x, y, labels, dtype="float64"):
    optims = {label: ALL_OPTIMIZERS[label].__dict__ for label in labels}
    where = {"custom": key} if key == "asym" else {"model": STEP_CONFIGS[key]}
    out = run_job("step", tmp, where | {"optims": optims, "dtype": dtype}, {"x": x, "y": y, **_w(w0)})
    after = {label: _prefixed(out, f"after:{label}:") for label in labels}
    return float(out["loss"].reshape(())), _prefixed(out, "g:"), after


@pytest.mark.parametrize("key", [pytest.param(k, marks=pytest.mark.slow) if k in SLOW else k for k in STEP_CASES])
def test_one_step_equal_in_float64(key, torch_mod, tmp_path):
    require_mxnet()
    n, labels = STEP_CASES[key]
    arch = build_arch(ModelConfig.from_dict(STEP_CONFIGS[key]))
    w0 = init_weights(arch, seed=1)
    x, y = batch(arch, n, dtype="float64")
    a = torch_step(arch, w0, x, y, {label: ALL_OPTIMIZERS[label] for label in labels}, "float64")
    loss, grads, after = _mx_step(tmp_path, key, w0, x, y, labels)
    assert loss == pytest.approx(a.loss, rel=1e-12)
    assert_same_grads(a.grads, grads, key)
    for label in labels:
        cfg = ALL_OPTIMIZERS[label]
        bound = {k: lipschitz(cfg) * np.abs(a.grads[k] - grads[k]) if k in a.grads else 0.0 for k in w0}
        assert_same_step(w0, a.after[label], after[label], f"{key}/{label}", bound)
    stats = [k for k in w0 if k.endswith("running_var")]
    assert all(not np.array_equal(after[labels[0]][k], w0[k]) for k in stats)  # BN really trained


def test_asymmetric_padding_equals_pytorch(torch_mod, tmp_path):
    # explicit pads (zeros before a conv, -inf before a max-pool) where MXNet's own are symmetric
    arch = asym_arch()
    w0 = init_weights(arch, seed=6)
    x, y = batch(arch, 3, seed=2, dtype="float64")
    labels = ("sgd_momentum_l2",)
    a = torch_step(arch, w0, x, y, {"sgd_momentum_l2": ALL_OPTIMIZERS["sgd_momentum_l2"]}, "float64")
    loss, grads, after = _mx_step(tmp_path, "asym", w0, x, y, labels)
    assert loss == pytest.approx(a.loss, rel=1e-12)
    assert_same_grads(a.grads, grads, "asym")
    assert_same_step(w0, a.after["sgd_momentum_l2"], after["sgd_momentum_l2"], "asym", 1e-9)


def test_one_step_close_in_float32_small_cnn(torch_mod, tmp_path):
    require_mxnet()
    arch = build_arch(ModelConfig.from_dict(STEP_CONFIGS["simple_cnn"]))
    w0 = init_weights(arch, seed=1)
    x, y = batch(arch, 4)
    a = torch_step(arch, w0, x, y, {"sgd_nesterov_decoupled": ALL_OPTIMIZERS["sgd_nesterov_decoupled"]}, "float32")
    loss, _, after = _mx_step(tmp_path, "simple_cnn", w0, x, y, ("sgd_nesterov_decoupled",), "float32")
    b = after["sgd_nesterov_decoupled"]
    assert loss == pytest.approx(a.loss, rel=1e-5)
    num = sum(float(np.sum((a.after["sgd_nesterov_decoupled"][k].astype(np.float64) - b[k]) ** 2)) for k in w0)
    den = sum(float(np.sum((a.after["sgd_nesterov_decoupled"][k].astype(np.float64) - w0[k]) ** 2)) for k in w0)
    assert np.sqrt(num / den) <= 1e-4


def _mx_train(tmp, cfg_model, w0, batches, optim: OptimConfig, lrs):
    arrays = _w(w0)
    for i, (x, y) in enumerate(batches):
        arrays |= {f"x{i}": x, f"y{i}": y}
    out = run_job("train_steps", tmp, {"model": cfg_model, "optim": optim.__dict__, "lrs": lrs}, arrays)
    return _prefixed(out, "w:")


def test_sgd_momentum_over_steps_with_a_changing_lr(torch_mod, tmp_path):
    # MXNet's own SGD keeps lr inside the momentum (like Keras): equal to PyTorch only at constant lr
    require_mxnet()
    arch = build_arch(ModelConfig.from_dict(STEP_CONFIGS["simple_cnn"]))
    w0 = init_weights(arch, seed=2)
    batches = [batch(arch, 4, seed=s, dtype="float64") for s in range(3)]
    cfg = OptimConfig("sgd", 0.1, momentum=0.9, weight_decay=5e-4)
    lrs = [0.1, 0.02, 0.2]
    a = train_steps_torch(arch, w0, batches, cfg, lrs)
    b = _mx_train(tmp_path, STEP_CONFIGS["simple_cnn"], w0, batches, cfg, lrs)
    assert_same_step(w0, a, b, "sgd momentum, 3 steps", 1e-9)


def test_frozen_batchnorm_keeps_its_statistics(torch_mod, tmp_path):
    require_mxnet()
    model = STEP_CONFIGS["simple_cnn"] | {"freeze": ["conv1", "bn1"]}
    arch = build_arch(ModelConfig.from_dict(model))
    w0 = init_weights(arch, seed=3)
    batches = [batch(arch, 4, seed=9, dtype="float64")]
    opt = OptimConfig("sgd", 0.1, momentum=0.9, weight_decay=5e-4, weight_decay_mode="decoupled")
    a = train_steps_torch(arch, w0, batches, opt, [0.1])
    b = _mx_train(tmp_path, model, w0, batches, opt, [0.1])
    for k in ("conv1.weight", "bn1.weight", "bn1.bias", "bn1.running_mean", "bn1.running_var"):
        assert np.array_equal(b[k], w0[k]), k
    assert not np.array_equal(b["bn2.running_mean"], w0["bn2.running_mean"])
    assert not np.array_equal(b["conv2.weight"], w0["conv2.weight"])
    assert_same_step(w0, a, b, "frozen conv1/bn1", 1e-9)


def test_a_training_batch_of_another_size_is_refused(tmp_path):
    # BatchNorm's unbiased-variance factor uses n = batch x H x W from the arch's shapes
    out = run_job("wrong_input", tmp_path, {"model": STEP_CONFIGS["simple_cnn"]})
    assert str(out["field"]) == "model.input_size"  # a ModelError, before the graph runs
