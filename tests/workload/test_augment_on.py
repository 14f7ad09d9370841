"""`recipe.augment_on` (run.json `train.augment_on`): where training augmentation runs.

The rule (runner.workload.capabilities.augment_on, pure Python, read by the planner through the
run.json reader and by the workload): auto -> device for PyTorch on cuda when every op can run
there and the batches come from the array loader, else host; device -> PyTorch only, any
variant, refused for an op the device cannot apply. On this machine (no GPU) the device path runs
its torch ops on the CPU: a real PyTorch run with augment_on: device computes bit-identical
losses to the host path (the pixels are bit-identical), single-process and with 2 data-parallel
replicas. The CUDA path itself (pinned buffers, side stream) is not run here.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from runner.data.augment import DEVICE_OPS, batch_decisions, plan_epoch
from runner.errors import SpecError
from runner.workload.capabilities import augment_on
from runner.workload.events import read_events
from tests.spec.test_mxnet_capabilities import _plan
from tests.workload.test_harness_run import config, prepared, run_workload  # noqa: F401 - fixture

OPS = [{"op": "random_crop", "padding": 4}, {"op": "horizontal_flip", "p": 0.5},
       {"op": "brightness", "max_delta": 0.2}]
RRC = [{"op": "random_resized_crop", "size": 32}]


# -- the rule ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(("framework", "variant", "requested", "ops", "dataset", "on"), [
    ("pytorch", "cuda", "auto", OPS, "cifar10", "device"),
    ("pytorch", "cuda", "auto", [*OPS, {"op": "resize", "size": 64}], "imagenet", "device"),  # array loader
    ("pytorch", "cuda", "auto", [], "cifar10", "device"),
    ("pytorch", "cpu", "auto", OPS, "cifar10", "host"),
    ("pytorch", "ppc64le", "auto", OPS, "cifar10", "host"),
    ("tensorflow", "cuda", "auto", OPS, "cifar10", "host"),
    ("mxnet", "cuda", "auto", OPS, "cifar10", "host"),
    ("pytorch", "cuda", "auto", RRC, "imagenet", "host"),  # the image loader's path stays on the host
    ("pytorch", "cuda", "host", OPS, "cifar10", "host"),
    ("pytorch", "cpu", "device", OPS, "cifar10", "device"),  # torch ops on the CPU: testable here
    ("pytorch", "cuda", "device", OPS, "cifar10", "device"),
    ("tensorflow", "cpu", "host", RRC, "imagenet", "host"),
])
def test_the_rule(framework, variant, requested, ops, dataset, on):
    assert augment_on(framework, variant, requested, ops, dataset) == on


@pytest.mark.parametrize(("framework", "ops", "words"), [
    ("tensorflow", OPS, "PyTorch"), ("mxnet", OPS, "PyTorch"),
    ("pytorch", RRC, "augmentation[0] (random_resized_crop)"),
])
def test_device_refused_naming_the_field(framework, ops, words):
    with pytest.raises(SpecError) as info:
        augment_on(framework, "cuda", "device", ops, "imagenet")
    assert info.value.field == "train.augment_on" and words in info.value.message


def test_the_op_list_is_the_device_paths_own():
    pytest.importorskip("torch")
    from runner.workload.harness import device_augment

    assert device_augment.SUPPORTED_OPS is DEVICE_OPS and device_augment.batch_decisions is batch_decisions


def _docs(tmp_path: Path, frameworks: list[str], variant: str, **recipe) -> list[dict]:
    from runner.spec.workload_config import workload_config

    plan, _ = _plan(tmp_path, frameworks, variant=variant, **recipe)
    return [workload_config(run) for run in plan.runs]


@pytest.mark.parametrize(("variant", "on"), [("cpu", "host"), ("cuda", "device")])
def test_auto_resolves_from_the_planned_run_json(tmp_path, variant, on):
    """The spec default is auto; run.json carries the request; the same rule resolves it."""
    for doc in _docs(tmp_path, ["pytorch"], variant, augmentation=OPS):
        t, d = doc["train"], doc["data"]
        assert t["augment_on"] == "auto"
        assert augment_on(doc["framework"], doc["variant"], t["augment_on"], d["augmentation"], d["name"]) == on


def test_auto_is_host_for_tensorflow_on_cuda_and_device_for_pytorch_beside_it(tmp_path):
    docs = {d["framework"]: d for d in _docs(tmp_path, ["pytorch", "tensorflow"], "cuda", augmentation=OPS)}
    got = {fw: augment_on(fw, d["variant"], d["train"]["augment_on"], d["data"]["augmentation"], d["data"]["name"])
           for fw, d in docs.items()}
    assert got == {"pytorch": "device", "tensorflow": "host"}


# -- plan-time refusals -----------------------------------------------------------------------------

def _refused(tmp_path: Path, frameworks: list[str], variant: str = "cpu", spec_extra: dict | None = None,
             **recipe) -> SpecError:
    import copy

    import yaml

    from runner.spec.plan import plan_file
    from tests.spec.test_field_walk import BASE

    spec = {**copy.deepcopy(BASE), "frameworks": frameworks, "variant": variant, **(spec_extra or {})}
    spec["recipe"].update(recipe)
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    with pytest.raises(SpecError) as info:
        plan_file(path)
    err = info.value
    assert err.field == "recipe.augment_on" and err.file == path and err.line is not None
    assert path.read_text().splitlines()[err.line - 1].strip().startswith("augment_on:")
    assert "\n" not in err.describe()
    return err


@pytest.mark.parametrize("framework", ["tensorflow", "mxnet"])
def test_device_for_another_framework_is_refused_at_plan_time(tmp_path, framework):
    err = _refused(tmp_path, ["pytorch", framework], augment_on="device")
    assert framework in err.message and "augment_on" in err.describe()


def test_device_with_random_resized_crop_is_refused_at_plan_time(tmp_path):
    imagenet = {"dataset": {"name": "imagenet", "synthetic": {"train_size": 64, "test_size": 32, "classes": 4}}}
    from runner.spec.plan import plan_file

    err = _refused(tmp_path, ["pytorch"], spec_extra=imagenet, augment_on="device", augmentation=RRC)
    assert "random_resized_crop" in err.message
    # auto and host plan (the image loader's host path)
    for value in ("auto", "host"):
        path = tmp_path / value
        path.mkdir()
        spec = (tmp_path / "spec.yaml").read_text().replace("augment_on: device", f"augment_on: {value}")
        (path / "spec.yaml").write_text(spec)
        assert plan_file(path / "spec.yaml").runs


def test_device_with_random_resized_crop_in_a_grid_names_the_grid(tmp_path):
    import copy

    import yaml

    from runner.spec.plan import plan_file
    from tests.spec.test_field_walk import BASE

    spec = {**copy.deepcopy(BASE), "frameworks": ["pytorch"],
            "dataset": {"name": "imagenet", "synthetic": {"train_size": 64, "test_size": 32, "classes": 4}},
            "sweeps": [{"name": "where", "grid": {"augment_on": ["host", "device"]}}]}
    spec["recipe"]["augmentation"] = RRC
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    with pytest.raises(SpecError) as info:
        plan_file(path)
    assert info.value.field == "sweeps[0].grid.augment_on" and "random_resized_crop" in info.value.message
    assert path.read_text().splitlines()[info.value.line - 1].strip().startswith("augment_on:")


def test_the_workload_reader_refuses_and_defaults(tmp_path):
    from runner.workload.harness.config import parse_config

    cfg = config("pytorch")
    assert "augment_on" not in cfg["train"]
    read = parse_config(cfg, tmp_path / "run.json")
    assert read.train.augment_on == "host" and read.augment_on == "host"  # a hand-written run.json: host
    cfg["train"]["augment_on"] = "device"
    assert parse_config(cfg, tmp_path / "run.json").augment_on == "device"
    for framework, data, field in (("tensorflow", {}, "train.augment_on"),
                                   ("pytorch", {"name": "imagenet", "augmentation": RRC}, "train.augment_on")):
        bad = {**cfg, "framework": framework, "data": {**cfg["data"], **data}}
        with pytest.raises(SpecError) as info:
            parse_config(bad, tmp_path / "run.json")
        assert info.value.field == field
    cfg["train"]["augment_on"] = "gpu"
    with pytest.raises(SpecError) as info:
        parse_config(cfg, tmp_path / "run.json")
    assert info.value.field == "train.augment_on" and "auto, host, device" in info.value.message


# -- the loader's raw mode --------------------------------------------------------------------------

def test_raw_batches_are_the_plan_positions_and_their_decisions(prepared):  # noqa: F811
    from runner.data.loader import BatchIterator
    from runner.data.prepared import load_prepared

    ds = load_prepared(prepared, verify="sizes")
    mean, std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
    plan = plan_epoch(3, 1, len(ds.train_y), OPS)
    for replicas in (1, 2):
        for rank in range(replicas):
            raw = list(BatchIterator(ds, "train", 16, 3, 1, OPS, mean, std, drop_last=True, prefetch=2,
                                     shard=(rank, replicas), raw=True))
            cooked = list(BatchIterator(ds, "train", 16, 3, 1, OPS, mean, std, drop_last=True,
                                        shard=(rank, replicas)))
            assert len(raw) == len(cooked) == 10
            per = 16 // replicas
            for b, ((x, y, dec), (_, y_host)) in enumerate(zip(raw, cooked, strict=True)):
                positions = slice(b * 16 + rank * per, b * 16 + (rank + 1) * per)
                assert x.dtype == np.uint8 and x.shape == (per, 32, 32, 3)
                assert np.array_equal(x, ds.train_x[plan.order[positions]])
                assert np.array_equal(y, y_host) and y.dtype == np.int64
                assert len(dec) == len(OPS)
                for got, want in zip(dec, batch_decisions(plan, positions), strict=True):
                    assert np.array_equal(got, want)
    # the test split: fixed order, deterministic ops only (here: none)
    test = list(BatchIterator(ds, "test", 16, 3, 1, [*OPS, {"op": "resize", "size": 32}], mean, std, raw=True))
    assert [len(y) for _, y, _ in test] == [16, 16, 16]
    assert np.array_equal(np.concatenate([x for x, _, _ in test]), ds.test_x[:])
    assert all(d == (None,) for _, _, d in test)  # only the resize survives in the identity plan


def test_raw_batches_augmented_on_the_device_equal_the_host_batches(prepared):  # noqa: F811
    torch = pytest.importorskip("torch")
    from runner.data.loader import BatchIterator
    from runner.data.prepared import load_prepared
    from runner.workload.harness.device_augment import DeviceAugment, DevicePrefetcher

    ds = load_prepared(prepared, verify="sizes")
    ops = [*OPS, {"op": "resize", "size": 40}]
    mean, std = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)
    for split in ("train", "test"):
        loader = BatchIterator(ds, split, 16, 5, 2, ops, mean, std, prefetch=2, raw=True)
        aug = DeviceAugment(loader.ops, mean, std, "cpu")  # the test split's plan: the resize only
        raw = DevicePrefetcher(loader, "cpu")
        host = BatchIterator(ds, split, 16, 5, 2, ops, mean, std)
        n = 0
        for (x, y, dec), (xh, yh) in zip(raw, host, strict=True):
            got = aug(x, dec).permute(0, 2, 3, 1).contiguous().numpy()  # NCHW -> the host's NHWC
            assert got.shape == xh.shape and got.tobytes() == xh.tobytes()  # 0 ulp
            assert torch.equal(y, torch.from_numpy(yh))
            n += 1
        assert n == (10 if split == "train" else 3)


# -- real runs --------------------------------------------------------------------------------------

def _run(cfg: dict, data: Path, work: Path) -> tuple[list[dict], dict]:
    code, err, out = run_workload(cfg, data, work)
    assert code == 0, err[-3000:]
    return read_events(out / "events.jsonl"), json.loads((out / "result.json").read_text())


def _losses(events: list[dict], kind: str = "step", key: str = "loss") -> list[float]:
    return [e[key] for e in events if e["type"] == kind]


@pytest.mark.parametrize("channels_last", [False, True])
def test_pytorch_run_on_the_device_path_equals_the_host_path(prepared, tmp_path, channels_last):  # noqa: F811
    pytest.importorskip("torch")
    got = {}
    for requested in ("auto", "device"):  # auto on a CPU: the host path
        cfg = config("pytorch", train={"augment_on": requested, "channels_last": channels_last})
        cfg["data"]["augmentation"] = list(OPS)
        got[requested] = _run(cfg, prepared, tmp_path / requested)
    (host, _), (dev, dev_result) = got["auto"], got["device"]
    assert host[0]["settings"]["augmentation"] == {"requested": "auto", "on": "host"}
    assert dev[0]["settings"]["augmentation"] == {"requested": "device", "on": "device"}
    assert dev_result["settings"]["augmentation"]["on"] == "device"  # result.json, so the bundle
    assert len(_losses(dev)) == 8 and np.ptp(_losses(dev)) > 1e-3  # the steps change the model
    assert _losses(dev) == _losses(host)  # bit-identical: the same pixels, the same math
    assert _losses(dev, "eval", "test_loss") == _losses(host, "eval", "test_loss")
    assert _losses(dev, "epoch", "train_accuracy") == _losses(host, "epoch", "train_accuracy")


def test_pytorch_data_parallel_run_on_the_device_path_equals_the_host_path(tmp_path):
    pytest.importorskip("torch")
    from runner.data import prepare, write_synthetic
    from tests.workload.test_data_parallel import dp_config, events_of
    from tests.workload.test_data_parallel import run as dp_run

    synth = write_synthetic("cifar10", tmp_path / "synth", train=160, test=40, seed=0)
    prepare(synth.folder, tmp_path / "prepared")
    losses = {}
    for requested in ("host", "device"):
        cfg = dp_config("pytorch", 2, augment_on=requested)
        cfg["data"]["augmentation"] = list(OPS)
        code, err, out = dp_run(cfg, tmp_path / "prepared", tmp_path / requested)
        assert code == 0, err[-3000:]
        events = events_of(out)
        assert events["run_start"][0]["settings"]["augmentation"]["on"] == requested
        assert events["run_start"][0]["settings"]["parallel"]["replicas"] == 2
        losses[requested] = [s["loss"] for s in events["step"]]
    assert len(losses["device"]) == 3 and losses["device"] == losses["host"]
