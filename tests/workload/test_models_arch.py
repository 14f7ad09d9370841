"""The framework-neutral model layer: configs, architectures, counts, FLOPs, canonical weights.

Pure Python + numpy. Reference figures come from outside this code: torchvision's published
parameter counts and GFLOPS (its model docs count multiply-adds) and hand arithmetic.
"""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

from runner.errors import ModelError
from runner.workload.models import (
    MODEL_NAMES,
    ModelConfig,
    build_arch,
    check_weights,
    count_params,
    flops_per_image,
    init_weights,
    layer_table,
    param_specs,
    walk,
    weights_fingerprint,
)
from runner.workload.models.arch import BatchNorm2d, Conv2d, Dense, MaxPool2d, Residual, ShapeError, trace
from runner.workload.models.npz import load_npz, save_npz


def arch_of(**kw):
    return build_arch(ModelConfig(**kw))


def test_no_framework_is_imported():
    # The host imports these (e.g. for `runner models`); they must stay framework-free.
    code = ("import sys, runner.workload.models, runner.workload.models.describe, runner.workload.optim, "
            "runner.workload.optim.reference, runner.workload.schedule; "
            "bad = [m for m in ('torch', 'tensorflow', 'keras') if m in sys.modules]; print(bad); "
            "sys.exit(1 if bad else 0)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_registry_lists_every_model():
    assert MODEL_NAMES == ("resnet50", "alexnet", "vgg16", "simple_cnn")
    for name, extra in [("resnet50", {"stem": "cifar"}), ("alexnet", {"layout": "cifar"}), ("vgg16", {}),
                        ("simple_cnn", {})]:
        assert build_arch(ModelConfig(name=name, num_classes=10, **extra)).name == name


# --- parameter counts against torchvision's published figures -------------------------------------

def test_resnet50_counts_match_torchvision():
    # torchvision resnet50(): 25,557,032 parameters with 1000 classes; fc = 2048*1000 + 1000.
    body = 25_557_032 - (2048 * 1000 + 1000)
    a = arch_of(name="resnet50", num_classes=100, stem="imagenet")
    trainable, total = count_params(a)
    assert trainable == body + 2048 * 100 + 100 == 23_712_932
    n_bn_channels = sum(layer.num_features for _, layer in walk(a.layers) if isinstance(layer, BatchNorm2d))
    assert total == trainable + 2 * n_bn_channels  # running mean + variance
    assert count_params(arch_of(name="resnet50", num_classes=1000, stem="imagenet", input_size=224))[0] == 25_557_032


def test_resnet50_cifar_stem_differs_only_in_the_first_conv():
    imagenet = count_params(arch_of(name="resnet50", num_classes=10, stem="imagenet"))[0]
    cifar = count_params(arch_of(name="resnet50", num_classes=10, stem="cifar"))[0]
    assert imagenet - cifar == 64 * 3 * (7 * 7 - 3 * 3)
    cifar_arch = arch_of(name="resnet50", num_classes=10, stem="cifar")
    assert not any(isinstance(layer, MaxPool2d) for _, layer in walk(cifar_arch.layers))


def test_resnet50_is_v1_5_stride_on_the_3x3():
    a = arch_of(name="resnet50", num_classes=10, stem="imagenet")
    blocks = {p.rsplit(".", 1)[0]: None for p, _ in walk(a.layers) if p.startswith("layer")}
    assert "layer2.0.downsample" in blocks
    leaves = dict(walk(a.layers))
    assert leaves["layer2.0.conv1"].stride == (1, 1)
    assert leaves["layer2.0.conv2"].stride == (2, 2)
    assert leaves["layer2.0.downsample.0"].stride == (2, 2) and leaves["layer2.0.downsample.0"].kernel == (1, 1)
    assert leaves["conv1"].padding == (3, 3, 3, 3) and leaves["maxpool"].padding == (1, 1, 1, 1)
    assert all(not c.bias for c in leaves.values() if isinstance(c, Conv2d))


def test_alexnet_imagenet_is_torchvision_alexnet():
    # torchvision alexnet(): 61,100,840 parameters (classifier 9216-4096-4096-1000).
    a = arch_of(name="alexnet", num_classes=1000, layout="imagenet", input_size=224, classifier=(4096, 4096))
    assert count_params(a) == (61_100_840, 61_100_840)
    keys = [s.key for s in param_specs(a)]
    assert keys[:2] == ["features.0.weight", "features.0.bias"]
    assert keys[-6:] == ["classifier.1.weight", "classifier.1.bias", "classifier.4.weight", "classifier.4.bias",
                         "classifier.6.weight", "classifier.6.bias"]


def test_alexnet_default_head_is_the_published_fine_tuning_head():
    a = arch_of(name="alexnet", num_classes=10, layout="imagenet", input_size=224)
    dense = [layer for _, layer in walk(a.layers) if isinstance(layer, Dense)]
    assert [(d.in_features, d.out_features) for d in dense] == [(9216, 4096), (4096, 1024), (1024, 10)]
    assert dense[0].input_chw == (256, 6, 6)


def test_alexnet_cifar_layout():
    a = arch_of(name="alexnet", num_classes=10, layout="cifar")
    leaves = [layer for _, layer in walk(a.layers)]
    assert sum(isinstance(x, Conv2d) for x in leaves) == 5
    assert sum(isinstance(x, MaxPool2d) for x in leaves) == 3
    dense = [x for x in leaves if isinstance(x, Dense)]
    assert [(d.in_features, d.out_features) for d in dense] == [(1024, 4096), (4096, 4096), (4096, 10)]
    assert dense[0].input_chw == (256, 2, 2)


def test_vgg16_features_match_torchvision_vgg16_bn():
    # torchvision vgg16_bn(): 138,365,992 parameters; its classifier is 25088-4096-4096-1000.
    classifier = (25088 * 4096 + 4096) + (4096 * 4096 + 4096) + (4096 * 1000 + 1000)
    a = arch_of(name="vgg16", num_classes=10)
    feats = sum(math.prod(s.shape) for s in param_specs(a) if s.trainable and s.path.startswith("features."))
    assert feats == 138_365_992 - classifier
    leaves = [layer for _, layer in walk(a.layers)]
    assert sum(isinstance(x, Conv2d) for x in leaves) == 13 and sum(isinstance(x, MaxPool2d) for x in leaves) == 5
    dense = [x for x in leaves if isinstance(x, Dense)]
    assert [(d.in_features, d.out_features) for d in dense] == [(512, 512), (512, 512), (512, 10)]


def test_simple_cnn_count_by_hand():
    a = arch_of(name="simple_cnn", num_classes=10)
    convs = 3 * 32 * 9 + 32 * 64 * 9 + 64 * 128 * 9  # no biases
    bns = 2 * (32 + 64 + 128)
    dense = (2048 * 120 + 120) + (120 * 84 + 84) + (84 * 10 + 10)
    assert count_params(a) == (convs + bns + dense, convs + 2 * bns + dense)
    assert count_params(a)[0] == 350_366  # the study printed 350,342; see docs/models.md


# --- FLOPs ----------------------------------------------------------------------------------------

def test_flops_match_torchvision_gflops():
    # torchvision's docs: resnet50 4.09 GFLOPS, alexnet 0.71 GFLOPS (multiply-adds); ours are x2.
    r = flops_per_image(arch_of(name="resnet50", num_classes=1000, stem="imagenet", input_size=224))
    assert round(r / 2e9, 2) == 4.09
    a = flops_per_image(arch_of(name="alexnet", num_classes=1000, layout="imagenet", input_size=224,
                                classifier=(4096, 4096)))
    assert round(a / 2e9, 2) == 0.71


def test_flops_of_simple_cnn_by_hand():
    conv = 2 * (32 * 32 * 32 * 3 * 9 + 16 * 16 * 64 * 32 * 9 + 8 * 8 * 128 * 64 * 9)
    dense = 2 * (2048 * 120 + 120 * 84 + 84 * 10)
    assert flops_per_image(arch_of(name="simple_cnn", num_classes=10)) == conv + dense


def test_layer_table_sums_to_the_totals():
    a = arch_of(name="resnet50", num_classes=10, stem="cifar")
    rows = layer_table(a)
    assert sum(r["params"] for r in rows) == count_params(a)[1]
    assert sum(r["flops"] for r in rows) == flops_per_image(a)
    assert rows[-1]["out_shape"] == (10,)


# --- configs --------------------------------------------------------------------------------------

RUN_JSON_MODEL = {  # what runner.spec.workload_config.model_section writes
    "name": "resnet50", "num_classes": 10, "input_size": 32, "stem": "imagenet", "layout": None,
    "bn_momentum": 0.1, "bn_epsilon": 1e-5, "dropout": 0.5, "init": "he_normal_fan_out",
    "zero_init_residual": False, "classifier": None, "freeze": [],
}


def test_from_dict_reads_the_run_json_section_and_round_trips():
    cfg = ModelConfig.from_dict(RUN_JSON_MODEL)
    assert cfg.freeze == () and cfg.stem == "imagenet"
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize(
    "change, field",
    [
        ({"colour": "red"}, "model.colour"),
        ({"name": "resnet18"}, "model.name"),
        ({"stem": None}, "model.stem"),
        ({"stem": "tiny"}, "model.stem"),
        ({"layout": "cifar"}, "model.layout"),
        ({"classifier": [512]}, "model.classifier"),
        ({"input_size": 64}, "model.input_size"),
        ({"bn_momentum": 0.0}, "model.bn_momentum"),
        ({"bn_epsilon": -1.0}, "model.bn_epsilon"),
        ({"dropout": 1.0}, "model.dropout"),
        ({"init": "orthogonal"}, "model.init"),
        ({"num_classes": 1}, "model.num_classes"),
        ({"num_classes": True}, "model.num_classes"),
    ],
)
def test_bad_model_configs_name_the_field(change, field):
    with pytest.raises(ModelError) as err:
        ModelConfig.from_dict(RUN_JSON_MODEL | change, source="run.json")
    assert err.value.field == field
    assert err.value.file == "run.json"
    assert field in err.value.describe()


def test_model_specific_options_are_rejected_elsewhere():
    with pytest.raises(ModelError, match="resnet50 only"):
        ModelConfig(name="vgg16", num_classes=10, zero_init_residual=True)
    with pytest.raises(ModelError, match="takes 224x224"):
        ModelConfig(name="alexnet", num_classes=10, layout="imagenet", input_size=32)
    with pytest.raises(ModelError, match="alexnet only"):
        ModelConfig(name="simple_cnn", num_classes=10, layout="cifar")


def test_freeze_prefix_must_name_a_layer():
    with pytest.raises(ModelError) as err:
        arch_of(name="alexnet", num_classes=10, layout="cifar", freeze=("featurez",))
    assert err.value.field == "model.freeze"
    a = arch_of(name="alexnet", num_classes=10, layout="cifar", freeze=("features",))
    trainable, total = count_params(a)
    assert trainable == sum(math.prod(s.shape) for s in param_specs(a) if s.path.startswith("classifier."))
    assert total == count_params(arch_of(name="alexnet", num_classes=10, layout="cifar"))[1]
    # a prefix matches whole name parts only: "layer1" must not freeze "layer10"-like names
    r = arch_of(name="resnet50", num_classes=10, stem="cifar", freeze=("layer1",))
    assert {s.path.split(".")[0] for s in param_specs(r) if not s.trainable and s.param in ("weight", "bias")} == {
        "layer1"}


def test_zero_init_residual_zeroes_the_last_bn_of_each_block():
    a = arch_of(name="resnet50", num_classes=10, stem="cifar", zero_init_residual=True)
    zero = {p for p, layer in walk(a.layers) if isinstance(layer, BatchNorm2d) and layer.zero_init}
    assert len(zero) == 16 and all(p.endswith(".bn3") for p in zero)
    w = init_weights(a, 0)
    assert all(not w[f"{p}.weight"].any() for p in zero)
    assert w["bn1.weight"].min() == 1.0 and w["layer1.0.bn2.weight"].min() == 1.0
    plain = arch_of(name="resnet50", num_classes=10, stem="cifar")
    assert not any(isinstance(layer, BatchNorm2d) and layer.zero_init for _, layer in walk(plain.layers))


def test_shape_errors_are_caught_when_building():
    from runner.workload.models.arch import Arch

    bad = Arch("x", (3, 8, 8), 2, (Conv2d("c", 4, 8, (3, 3), (1, 1), (1, 1, 1, 1), False),), "torch_default")
    with pytest.raises(ShapeError, match="expects 4 channels"):
        trace(bad)
    block = Residual("r", (Conv2d("c", 3, 8, (1, 1), (1, 1), (0, 0, 0, 0), False),))
    with pytest.raises(ShapeError, match="shortcut"):
        trace(Arch("x", (3, 8, 8), 2, (block,), "torch_default"))


# --- canonical weights ----------------------------------------------------------------------------

def test_init_is_deterministic_float32_and_complete():
    a = arch_of(name="simple_cnn", num_classes=10)
    w1, w2, w3 = init_weights(a, 7), init_weights(a, 7), init_weights(a, 8)
    assert list(w1) == [s.key for s in param_specs(a)]
    assert all(w.dtype == np.float32 for w in w1.values())
    assert weights_fingerprint(w1) == weights_fingerprint(w2) != weights_fingerprint(w3)
    check_weights(a, w1)


@pytest.mark.parametrize("scheme", ["he_normal_fan_out", "he_uniform", "glorot_uniform", "torch_default"])
def test_init_schemes_have_their_documented_spread(scheme):
    a = arch_of(name="vgg16", num_classes=10, init=scheme)
    w = init_weights(a, 0)
    conv = w["features.40.weight"]  # 512 x 512 x 3 x 3
    fan_in = fan_out = 512 * 9
    expected_std = {
        "he_normal_fan_out": math.sqrt(2 / fan_out),
        "he_uniform": math.sqrt(6 / fan_in) / math.sqrt(3),
        "glorot_uniform": math.sqrt(6 / (fan_in + fan_out)) / math.sqrt(3),
        "torch_default": 1 / math.sqrt(fan_in) / math.sqrt(3),
    }[scheme]
    assert conv.std() == pytest.approx(expected_std, rel=0.01)
    assert abs(float(conv.mean())) < 0.01 * expected_std * 10
    bias = w["features.40.bias"]
    assert (not bias.any()) == (scheme != "torch_default")
    assert w["features.41.weight"].min() == w["features.41.weight"].max() == 1.0
    assert w["features.41.running_var"].min() == 1.0 and not w["features.41.running_mean"].any()


def test_check_weights_rejects_foreign_weights():
    a = arch_of(name="simple_cnn", num_classes=10)
    w = init_weights(a, 0)
    with pytest.raises(ModelError, match="missing"):
        check_weights(a, {k: v for k, v in w.items() if k != "fc3.bias"})
    with pytest.raises(ModelError, match="float32"):
        check_weights(a, w | {"fc3.bias": w["fc3.bias"].astype(np.float64)})
    with pytest.raises(ModelError, match=r"expected float32 \(100, 84\)"):
        check_weights(arch_of(name="simple_cnn", num_classes=100), w)


def test_npz_round_trip_and_no_overwrite(tmp_path):
    a = arch_of(name="simple_cnn", num_classes=10)
    w = init_weights(a, 3)
    path = tmp_path / "w.npz"
    save_npz(path, w)
    back = load_npz(path)
    assert weights_fingerprint(back) == weights_fingerprint(w)
    with pytest.raises(ModelError, match="overwrite"):
        save_npz(path, w)
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(ModelError, match="readable"):
        load_npz(tmp_path / "bad.npz")
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
