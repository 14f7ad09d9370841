"""Every model, PyTorch vs TensorFlow: parameter counts, eval logits, weight round trips.

Each model is built once per framework in float32 from the same `Arch`, loaded with the same
canonical weights, and fed the same batch (NCHW for PyTorch, the same numbers transposed to NHWC
for TensorFlow). Training-step parity is in test_models_step.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from runner.workload.models import ModelConfig, build_arch, count_params, init_weights

pytestmark = [pytest.mark.torch, pytest.mark.tensorflow]

EVAL_CONFIGS: dict[str, dict] = {
    "simple_cnn": dict(name="simple_cnn", num_classes=10),
    "resnet50": dict(name="resnet50", num_classes=100, stem="imagenet"),
    "resnet50_cifar": dict(name="resnet50", num_classes=10, stem="cifar"),
    # the published fine-tuning setup: 224x224, head 9216-4096-1024-10, features frozen
    "alexnet_imagenet": dict(name="alexnet", num_classes=10, layout="imagenet", input_size=224,
                             freeze=["features"], init="torch_default"),
    "alexnet_cifar": dict(name="alexnet", num_classes=10, layout="cifar", init="torch_default"),
    "vgg16": dict(name="vgg16", num_classes=10),
}


@pytest.fixture(scope="module", params=list(EVAL_CONFIGS))
def built(request, torch_mod, tf_mod):
    from runner.workload.models import tf_impl, torch_impl

    arch = build_arch(ModelConfig.from_dict(EVAL_CONFIGS[request.param]))
    weights = init_weights(arch, seed=123)
    tm, km = torch_impl.build(arch, weights=weights), tf_impl.build(arch, weights=weights)
    yield request.param, arch, weights, tm, km
    del tm, km


def test_parameter_counts_are_equal(built):
    from runner.workload.models import tf_impl, torch_impl

    key, arch, _, tm, km = built
    assert torch_impl.count_params(tm) == tf_impl.count_params(km) == count_params(arch)
    if key == "resnet50":
        assert count_params(arch)[0] == 23_712_932
    if key == "alexnet_imagenet":  # frozen features: only the classifier trains, in both frameworks
        assert count_params(arch)[0] == (9216 * 4096 + 4096) + (4096 * 1024 + 1024) + (1024 * 10 + 10)
        frozen_torch = {n for n, p in tm.named_parameters() if not p.requires_grad}
        assert frozen_torch and all(n.startswith("features.") for n in frozen_torch)
        trainable_tf = {v.path.split("/")[0] for v in km.trainable_weights}
        assert trainable_tf and all(p.startswith("classifier.") for p in trainable_tf)


def test_eval_logits_are_equal(built):
    import torch

    _, arch, _, tm, km = built
    rng = np.random.default_rng(5)
    c, h, w = arch.input_shape
    x = rng.standard_normal((2, c, h, w)).astype(np.float32)
    tm.eval()
    with torch.no_grad():
        a = tm(torch.from_numpy(x)).numpy()
    b = km(x.transpose(0, 2, 3, 1), training=False).numpy()
    assert a.shape == b.shape == (2, arch.num_classes)
    assert np.abs(a - b).max() <= 1e-4, f"max |diff| {np.abs(a - b).max():.3g}, |logits| {np.abs(a).max():.3g}"
    assert np.abs(a).max() > 1e-3  # not trivially zero


def test_weights_round_trip_exactly(built):
    from runner.workload.models import tf_impl, torch_impl

    _, _, weights, tm, km = built
    built_with = tf_impl.export_weights(km)  # build(arch, weights=...) starts exactly there
    assert all(np.array_equal(built_with[k], w) for k, w in weights.items())
    from_torch = torch_impl.export_weights(tm)
    tf_impl.load_weights(km, from_torch)
    back = tf_impl.export_weights(km)
    assert list(back) == list(weights)
    for k, w in weights.items():
        assert back[k].dtype == np.float32 and np.array_equal(back[k], w), k
        assert np.array_equal(from_torch[k], w), k


def test_describe_measures_the_framework_models(torch_mod, tf_mod):
    from runner.errors import ModelError
    from runner.workload.models.describe import describe, describe_arch

    cfg = ModelConfig(name="alexnet", num_classes=10, layout="cifar", freeze=("features",))
    rows = [describe(cfg, fw) for fw in ("pytorch", "tensorflow")]
    arch_row = describe_arch(cfg)
    for row in rows:
        assert row["matches_arch"] and row["trainable"] == arch_row["trainable"] < row["total"]
        assert row["flops_per_image"] == arch_row["flops_per_image"] > 0
    with pytest.raises(ModelError, match="unknown framework"):
        describe(cfg, "caffe")
