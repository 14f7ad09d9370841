"""The inference comparison (`measurement.inference`): what is refused, at plan time and by the
workload's run.json reader, naming the field; and end to end on tiny synthetic CIFAR-10, per
framework: fp32 / bf16 / int8 rows, int8 calibrated on the SAME images and timed on the SAME inputs
in PyTorch and TensorFlow (equal hashes), the quantized model smaller on disk, the drop and speedup
computed against the run's own fp32."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest
import yaml

from runner.errors import SpecError
from runner.spec.plan import plan_file
from runner.workload.events import read_events
from runner.workload.harness.config import parse_config
from runner.workload.inference.support import check_support
from tests.workload.test_harness_run import BASE_CONFIG, FRAMEWORK_MODULE, config, run_workload

INFERENCE = {"precisions": ["fp32", "bf16", "int8"], "batch_sizes": [1, 4], "calibration_images": 32}
MEASUREMENT = {"warmup_steps": 1, "eval_every_epochs": 1, "latency_batch_sizes": [], "latency_iterations": 5,
               "target_accuracy": None, "synthetic_compute": False, "inference": INFERENCE}
SPEC = {
    "name": "q", "dataset": {"name": "cifar10", "synthetic": {"train_size": 64, "test_size": 32}},
    "model": {"name": "simple_cnn"}, "frameworks": ["pytorch", "tensorflow"],
    "recipe": {"epochs": 1, "batch_size": 8, "optimizer": "sgd", "lr": 0.01},
    "measurement": {"inference": {"precisions": ["fp32", "int8"], "batch_sizes": [1, 8], "calibration_images": 32}},
}


def doc(**inference) -> dict:
    d = copy.deepcopy(BASE_CONFIG)
    d["measurement"] = copy.deepcopy(MEASUREMENT)
    d["measurement"]["inference"].update(inference)
    return d


@pytest.mark.parametrize(("change", "field"), [
    ({"precisions": ["int8"]}, "measurement.inference.precisions"),  # no fp32 baseline
    ({"precisions": ["fp32", "fp32"]}, "measurement.inference.precisions"),
    ({"precisions": ["fp32", "int4"]}, r"measurement.inference.precisions\[1\]"),
    ({"batch_sizes": []}, "measurement.inference.batch_sizes"),
    ({"batch_sizes": [0]}, "measurement.inference.batch_sizes"),
    ({"calibration_images": 0}, "measurement.inference.calibration_images"),
    ({"extra": 1}, "measurement.inference"),
])
def test_reader_refuses_naming_the_field(change, field):
    with pytest.raises(SpecError, match=field):
        parse_config(doc(**change), Path("run.json"))


def test_reader_accepts_and_keeps_the_section():
    cfg = parse_config(doc(), Path("run.json"))
    assert cfg.measurement.inference.precisions == ("fp32", "bf16", "int8")
    assert cfg.measurement.inference.batch_sizes == (1, 4) and cfg.measurement.inference.calibration_images == 32
    no_section = doc()
    del no_section["measurement"]["inference"]
    assert parse_config(no_section, Path("run.json")).measurement.inference is None


def test_support_table():
    check_support("pytorch", "cpu", INFERENCE)
    check_support("tensorflow", "cpu", INFERENCE)
    with pytest.raises(SpecError, match=r"precisions\[2\].*int8 inference on cuda"):
        check_support("pytorch", "cuda", INFERENCE)
    with pytest.raises(SpecError, match=r"measurement\.inference: mxnet has no inference comparison"):
        check_support("mxnet", "cpu", INFERENCE)
    check_support("mxnet", "cpu", None)  # no section: nothing to refuse


@pytest.mark.parametrize(("change", "field", "says"), [
    ({"frameworks": ["pytorch", "mxnet"]}, "measurement.inference", "mxnet has no inference comparison"),
    ({"variant": "cuda", "resources": {"gpus": 1}}, r"measurement.inference.precisions\[1\]", "int8"),
    ({"measurement": {"inference": {"calibration_images": 65}}}, "measurement.inference.calibration_images",
     "the training set has 64"),
    ({"resources": {"parallel": "data", "replicas": 2}, "frameworks": ["pytorch"]}, "measurement.inference",
     "a data-parallel run would repeat it"),
])
def test_plan_refuses_naming_the_spec_field_and_line(tmp_path, change, field, says):
    spec = copy.deepcopy(SPEC)
    for key, value in change.items():
        if key == "measurement":
            spec["measurement"]["inference"].update(value["inference"])
        else:
            spec[key] = value
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    with pytest.raises(SpecError, match=says) as info:
        plan_file(path)
    assert info.value.line is not None
    assert re.search(field, info.value.describe())


def test_workload_refuses_more_calibration_images_than_training_images(tmp_path):
    from runner.data import prepare, write_synthetic

    synth = write_synthetic("cifar10", tmp_path / "synth", train=40, test=16, seed=0)
    prepare(synth.folder, tmp_path / "prepared")
    cfg = config("pytorch", measurement=dict(MEASUREMENT, inference=dict(INFERENCE, calibration_images=41)))
    code, err, out = run_workload(cfg, tmp_path / "prepared", tmp_path / "w")
    assert code == 2 and "measurement.inference.calibration_images" in err and "training set has 40" in err
    assert not (out / "events.jsonl").exists()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One run per framework of the small CNN with the inference section, on the same data."""
    from runner.data import prepare, write_synthetic

    root = tmp_path_factory.mktemp("quant")
    synth = write_synthetic("cifar10", root / "synth", train=160, test=48, seed=0)
    prepare(synth.folder, root / "prepared")
    made = {}
    for fw in ("pytorch", "tensorflow"):
        pytest.importorskip(FRAMEWORK_MODULE[fw])
        cfg = config(fw, measurement=copy.deepcopy(MEASUREMENT))
        made[fw] = run_workload(cfg, root / "prepared", root / fw)
    return made


def inference_events(out: Path) -> list[dict]:
    return [e for e in read_events(out / "events.jsonl") if e["type"] == "inference"]


@pytest.mark.parametrize("framework", ["pytorch", "tensorflow"])
def test_each_precision_and_batch_size_is_a_row(runs, framework):
    code, err, out = runs[framework]
    assert code == 0, err
    rows = inference_events(out)
    assert [(r["precision"], r["batch_size"]) for r in rows] == [
        ("fp32", 1), ("fp32", 4), ("bf16", 1), ("bf16", 4), ("int8", 1), ("int8", 4)]
    assert all(r["error"] is None for r in rows), [r["error"] for r in rows]
    by = {(r["precision"], r["batch_size"]): r for r in rows}
    for r in rows:
        assert r["iterations"] == 5 and r["warmup_iterations"] == 3 and r["test_images"] == 48
        assert r["p50_ms"] <= r["p90_ms"] <= r["p99_ms"] and r["cpu_p50_ms"] > 0
        assert r["per_image_p50_ms"] == pytest.approx(r["p50_ms"] / r["batch_size"])
        base = by[("fp32", r["batch_size"])]
        assert r["speedup"] == pytest.approx(base["p50_ms"] / r["p50_ms"])
        assert r["accuracy_drop"] == pytest.approx(base["test_accuracy"] - r["test_accuracy"])
    assert by[("fp32", 1)]["speedup"] == 1.0 and by[("fp32", 1)]["fp32_agreement"] == 1.0
    # int8 weights are a quarter of float32's: the serialized model is well under half the size
    assert by[("int8", 1)]["model_bytes"] < 0.5 * by[("fp32", 1)]["model_bytes"]
    assert by[("int8", 1)]["calibration_images"] == 32 and by[("fp32", 1)]["calibration_images"] is None
    # int8 of the trained net still predicts mostly what fp32 predicts
    assert by[("int8", 1)]["fp32_agreement"] >= 0.8
    result = json.loads((out / "result.json").read_text())
    assert [(r["precision"], r["batch_size"]) for r in result["inference"]] == list(by)


def test_both_frameworks_calibrate_and_time_on_the_same_images(runs):
    rows = {fw: inference_events(runs[fw][2]) for fw in runs}
    for key in ("calibration_sha256", "calibration_indices_sha256"):
        values = {r[key] for fw in rows for r in rows[fw] if r["precision"] == "int8"}
        assert len(values) == 1 and None not in values, key
    for bs in (1, 4):
        hashes = {r["inputs_sha256"] for fw in rows for r in rows[fw] if r["batch_size"] == bs}
        assert len(hashes) == 1
    runtimes = {fw: {r["precision"]: r["runtime"] for r in rows[fw]} for fw in rows}
    assert "torch.ao FX static int8" in runtimes["pytorch"]["int8"]
    assert "TFLite" in runtimes["tensorflow"]["int8"]


def test_minpad_is_the_neg_inf_padding_before_a_max_pool_and_quantizes(tf_mod):
    """ResNet-50's ImageNet stem pads its max-pool with -inf (PyTorch's semantics): the TFLite copy
    pads with the tensor's minimum, the same function, with a finite int8 range."""
    import numpy as np

    from runner.workload.inference.protocol import Calibration
    from runner.workload.inference.tf_quant import TFLiteInference, for_quantization, quantize_int8
    from runner.workload.models import ModelConfig, build_arch, init_weights, tf_impl

    arch = build_arch(ModelConfig(name="resnet50", num_classes=10, stem="imagenet", input_size=32))
    model = tf_impl.build(arch, weights=init_weights(arch, 0))
    x = np.random.default_rng(0).standard_normal((8, 32, 32, 3), dtype=np.float32)
    ref = model(x, training=False).numpy()
    assert np.array_equal(for_quantization(model)(x, training=False).numpy(), ref)
    int8 = TFLiteInference(quantize_int8(model, Calibration(x, "", "")), threads=1)
    out = int8.logits(int8.place(x))
    assert "builtin kernels" not in int8.runtime  # XNNPACK accepted it (it refused the -inf model)
    assert (out.argmax(1) == ref.argmax(1)).mean() >= 0.75 and np.isfinite(out).all()
