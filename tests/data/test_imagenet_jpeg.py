"""`dataset.decode: jpeg`: runs decode the ImageNet JPEGs themselves (no pre-decoded shards).

The host writes only an index (decode-checked, skips recorded) and mounts the JPEG folder
read-only; the workload's batches equal, byte for byte, what `render` makes of the same files
with the plan's transforms, in both frameworks' run configs; a spec asking it for CIFAR is refused
at plan time; and `runner reproduce` runs it end to end in the real framework containers.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

pytest.importorskip("PIL")

from PIL import Image  # noqa: E402

from runner.data.augment import EpochPlan, normalize_ops, plan_epoch  # noqa: E402
from runner.data.image_loader import FileSource, render  # noqa: E402
from runner.data.imagenet import scan  # noqa: E402
from runner.data.imagenet_prepare import EVAL_CROP_FRACTION  # noqa: E402
from runner.data.jpeg_index import load_jpeg_index, read_index, write_index  # noqa: E402
from runner.data.manifest import dataset_manifest  # noqa: E402
from runner.data.prepared import prepare  # noqa: E402
from runner.data.reader import SourceRecord  # noqa: E402
from runner.data.synth_imagenet import write_synthetic_imagenet  # noqa: E402
from runner.engine.base import Launch, RunRequest  # noqa: E402
from runner.engine.local_engine import LocalEngine  # noqa: E402
from runner.engine.sandbox import IMAGES_MOUNT, container_launch  # noqa: E402
from runner.errors import DatasetError, SpecError, UsageError  # noqa: E402
from runner.spec.plan import plan_file  # noqa: E402
from runner.spec.workload_config import workload_config  # noqa: E402
from runner.workload.harness.batches import Batches, open_dataset  # noqa: E402
from runner.workload.harness.config import load_config  # noqa: E402
from tests.reproduce.conftest import (  # noqa: E402,F401,F811 (fixtures)
    LOCAL_BASE,
    cpu_images,
    docker_client,
    podman_engine,
    podman_images,
)

OPS = [{"op": "random_resized_crop", "size": 32, "scale": [0.3, 1.0]}, {"op": "horizontal_flip"}]
TINY = {
    "name": "imagenet-jpeg",
    "dataset": {"name": "imagenet", "decode": "jpeg",
                "synthetic": {"train_size": 48, "test_size": 12, "seed": 0, "classes": 3}},
    "model": {"name": "simple_cnn"},
    "frameworks": ["pytorch", "tensorflow"],
    "recipe": {"epochs": 1, "batch_size": 16, "optimizer": "sgd", "lr": 0.01, "deterministic": True,
               "augmentation": OPS},
    "measurement": {"warmup_steps": 1, "latency_batch_sizes": [1], "latency_iterations": 3},
    "resources": {"threads": 1, "cpus": 2, "memory": "2g", "time_limit_s": 600},
}
RECORD = SourceRecord("folder", "src", "root-hash", False, "ab" * 32)


def _png_named_jpeg() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (40, 30), (10, 200, 30)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    """A synthetic ImageNet (3 classes, 16 + 4 images each) with two bad files in train/."""
    src = write_synthetic_imagenet(tmp_path_factory.mktemp("jpeg") / "src", classes=3, per_class=17,
                                   val_per_class=4, side=64, seed=0).out
    cls = src / "train" / "n00000001"
    good = (cls / "n00000001_3.JPEG").read_bytes()
    (cls / "n00000001_3.JPEG").write_bytes(good[: len(good) // 2])  # truncated
    (cls / "n00000001_5.JPEG").write_bytes(_png_named_jpeg())  # a PNG named .JPEG
    return src


@pytest.fixture(scope="module")
def index_dir(source, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("index")
    write_index(scan(source), RECORD, folder, 224, workers=2)
    return folder


def _configs(tmp_path: Path, spec: dict) -> dict:
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    out = {}
    for run in plan_file(path).runs:
        doc = workload_config(run)
        cfg_path = tmp_path / f"{run.framework}.json"
        cfg_path.write_text(json.dumps(doc))
        out[run.framework] = load_config(cfg_path)
    return out


# -- the host's index ---------------------------------------------------------------------------------

def test_the_index_lists_every_decodable_jpeg_and_reports_the_others_as_skips(source, index_dir):
    doc, _ = read_index(index_dir)
    assert sorted(os.listdir(index_dir)) == ["index.json"]  # nothing pre-decoded
    reasons = {s["path"]: s["reason"] for s in doc["skipped"]}
    assert reasons == {"train/n00000001/n00000001_3.JPEG": "is truncated",
                       "train/n00000001/n00000001_5.JPEG": "is a PNG, not a JPEG"}
    assert doc["counts"] == {"train": 51 - 2, "test": 12}
    assert doc["decode"]["mode"] == "jpeg" and doc["image_shape"] == [224, 224, 3]
    listed = {rel for rel, _, _ in doc["train"]}
    assert not listed & set(reasons) and len(listed) == 49
    rel, label, size = doc["train"][0]
    assert (source / rel).stat().st_size == size and label == 0
    assert doc["source"]["root_sha256"] == "ab" * 32


def test_a_file_changed_after_indexing_is_one_line_before_training(source, index_dir, tmp_path):
    import shutil

    copy = tmp_path / "src"
    shutil.copytree(source, copy)
    data = load_jpeg_index(index_dir, copy)
    assert data.counts == {"train": 49, "test": 12} and data.name == "imagenet" and data.num_classes == 3
    victim = copy / read_index(index_dir)[0]["train"][7][0]
    victim.write_bytes(victim.read_bytes()[:100])
    with pytest.raises(DatasetError) as e:
        load_jpeg_index(index_dir, copy)
    assert str(victim) in e.value.describe() and "changed after runner indexed it" in e.value.describe()
    victim.unlink()
    with pytest.raises(DatasetError, match="is missing"):
        load_jpeg_index(index_dir, copy)
    with pytest.raises(DatasetError, match="needs the JPEG folder"):
        load_jpeg_index(index_dir, None)


def test_the_lazy_arrays_hold_the_pixels_the_shards_would(source, index_dir, tmp_path):
    """x[i] of a JpegDataset is what `prepare --size 224` writes: the calibration images of the
    inference comparison and a recipe without random_resized_crop see the shards' pixels."""
    data = load_jpeg_index(index_dir, source)
    shards = prepare(source, tmp_path / "prep", size=224)
    assert data.train_x.shape == shards.train_x.shape and data.test_x.shape == shards.test_x.shape
    np.testing.assert_array_equal(data.train_x[np.array([0, 5, 48])], shards.train_x[[0, 5, 48]])
    np.testing.assert_array_equal(data.test_x[3], shards.test_x[3])
    np.testing.assert_array_equal(data.train_y, shards.train_y)


# -- (a) the run's batches, byte for byte -----------------------------------------------------------

def _expected(source: Path, index_dir: Path, cfg, epoch: int, split: str) -> list[np.ndarray]:
    """The batches made directly: `render` of each file with the plan's transform, then the harness's
    normalisation, in batch order."""
    doc, _ = read_index(index_dir)
    rows = doc["train" if split == "train" else "val"]
    files = FileSource(str(source), tuple(r[0] for r in rows))
    ops = normalize_ops(cfg.data.augmentation)
    n = len(rows)
    mean, std = np.asarray(cfg.data.mean, np.float32), np.asarray(cfg.data.std, np.float32)
    if split == "train":
        plan = plan_epoch(cfg.seed, epoch, n, ops)
        u, flips = plan.decisions[0], plan.decisions[1]
        rrc = ops[0]
        transforms = [("rrc", u[p], tuple(rrc["scale"]), tuple(rrc["ratio"]), 32, bool(flips[p])) for p in range(n)]
    else:
        plan = EpochPlan.identity(n, ops)
        transforms = [("center", 32, EVAL_CROP_FRACTION)] * n
    bs = cfg.train.batch_size
    end = n - n % bs if split == "train" and cfg.train.drop_last else n
    out = []
    for start in range(0, end, bs):
        u8 = np.stack([render(files, int(plan.order[p]), transforms[p]) for p in range(start, min(n, start + bs))])
        x = u8.astype(np.float32)
        x /= np.float32(255.0)
        x -= mean
        x /= std
        out.append(x)
    return out


def test_jpeg_batches_equal_render_of_the_same_files_in_both_frameworks(source, index_dir, tmp_path):
    cfgs = _configs(tmp_path, TINY)
    assert set(cfgs) == {"pytorch", "tensorflow"}
    assert all(cfg.data.decode == "jpeg" for cfg in cfgs.values())
    got = {}
    for fw, cfg in cfgs.items():
        data = open_dataset(cfg, index_dir, source)
        b = Batches(data, cfg, 32)
        assert b.output_side() == 32 and b.train_size == 49
        train = list(b.train(0))  # worker processes (2 here), shared-memory batches
        got[fw] = ([x for x, _ in train], [y for _, y in train], [x for x, _ in b.test()])
    (tx, ty, ex), (tx2, ty2, ex2) = got["pytorch"], got["tensorflow"]
    for a, b2 in zip(tx + ty + ex, tx2 + ty2 + ex2, strict=True):
        assert a.dtype == b2.dtype and a.tobytes() == b2.tobytes()
    cfg = cfgs["pytorch"]
    for a, e in zip(tx, _expected(source, index_dir, cfg, 0, "train"), strict=True):
        assert a.tobytes() == e.tobytes()
    for a, e in zip(ex, _expected(source, index_dir, cfg, 0, "test"), strict=True):
        assert a.tobytes() == e.tobytes()
    labels = np.asarray([r[1] for r in read_index(index_dir)[0]["train"]])
    order = plan_epoch(cfg.seed, 0, 49, normalize_ops(OPS)).order[:48]  # drop_last: 3 batches of 16
    assert len(tx) == 3 and np.concatenate(ty).tolist() == labels[order].tolist()
    # another epoch is another plan
    other = [x for x, _ in Batches(open_dataset(cfg, index_dir, source), cfg, 32).train(1)]
    assert not all(np.array_equal(a, b2) for a, b2 in zip(tx, other, strict=True))


def test_open_dataset_refuses_images_for_a_shards_run(tmp_path, index_dir, source):
    cfg = _configs(tmp_path, {**TINY, "dataset": {**TINY["dataset"], "decode": "shards"}})["pytorch"]
    with pytest.raises(UsageError, match="--images is for decode: jpeg runs"):
        open_dataset(cfg, index_dir, source)


# -- (c) bad input ------------------------------------------------------------------------------------

def test_decode_jpeg_on_cifar_is_refused_at_plan_time_in_one_line(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = tmp_path / "bad.yaml"
    spec.write_text(yaml.safe_dump({
        "name": "bad", "dataset": {"name": "cifar10", "decode": "jpeg", "synthetic": {"train_size": 64,
                                                                                      "test_size": 32}},
        "model": {"name": "simple_cnn"}, "frameworks": ["pytorch"],
        "recipe": {"epochs": 1, "batch_size": 16, "optimizer": "sgd", "lr": 0.01}}, sort_keys=False))
    with pytest.raises(SpecError) as e:
        plan_file(spec)
    assert e.value.field == "dataset.decode" and e.value.line == 4
    before = set(tmp_path.rglob("*"))
    for command in ("plan", "reproduce"):
        result = cli(command, spec)
        lines = [line for line in result.err.splitlines() if line.strip()]
        assert result.code == 2 and len(lines) == 1, result
        assert str(spec) in lines[0] and "dataset.decode" in lines[0] and "fix:" in lines[0]
        assert "decode: jpeg reads ImageNet JPEG folders, not cifar10" in lines[0]
    assert set(tmp_path.rglob("*")) == before  # nothing written
    spec.write_text(spec.read_text().replace("decode: jpeg", "decode: png"))
    result = cli("plan", spec)
    assert result.code == 2 and "dataset.decode" in result.err


# -- the host: resolve, mount -------------------------------------------------------------------------

def test_reproduce_resolves_jpeg_mode_to_an_index_and_the_source_folder(tmp_path):
    from runner.reproduce.dataset import resolve_dataset
    from runner.spec.model import Dataset

    ds = Dataset.model_validate_json(json.dumps({"name": "imagenet", "decode": "jpeg",
                                                 "synthetic": {"train_size": 6, "test_size": 3, "classes": 3}}))
    cache = tmp_path / "cache"
    r = resolve_dataset(ds, tmp_path, cache, tmp_path / "spec.yaml")
    assert r.decode == "jpeg" and r.images == r.source.resolve() and (r.images / "train").is_dir()
    assert sorted(os.listdir(r.prepared)) == ["index.json"]
    assert not list((cache / "prepared").glob("*.npy")) and not list(cache.rglob("*_x.npy"))  # nothing decoded
    fp = r.fingerprint()
    assert fp["decode"]["mode"] == "jpeg" and fp["counts"] == {"train": 6, "test": 3} and fp["skipped"] == []
    assert fp["source_root_sha256"] == dataset_manifest(r.images)[1] == r.source_root_hash
    again = resolve_dataset(ds, tmp_path, cache, tmp_path / "spec.yaml")  # reused, checked
    assert again.prepared == r.prepared and again.fingerprint() == fp
    shards = resolve_dataset(ds.model_copy(update={"decode": "shards"}), tmp_path, cache, tmp_path / "spec.yaml")
    assert shards.images is None and shards.fingerprint()["decode"]["mode"] == "shards"


def _request(tmp_path: Path, images: Path | None) -> RunRequest:
    return RunRequest(run_id="r", bundle_id="b", framework="pytorch", variant="cpu", config_path=tmp_path / "run.json",
                      data_dir=tmp_path / "index", out_dir=tmp_path / "out", code_dir=tmp_path / "code",
                      image_id="sha256:x", images_dir=images)


def test_every_engine_mounts_the_jpeg_folder_read_only_and_passes_it(tmp_path):
    images = tmp_path / "src"
    for engine in ("docker", "podman"):  # the one sandbox description both container engines run
        launch = container_launch(_request(tmp_path, images), engine)
        (mount,) = [m for m in launch.mounts if m.target == IMAGES_MOUNT]
        assert mount.source == images.resolve() and mount.read_only
        assert launch.argv[launch.argv.index("--images") + 1] == IMAGES_MOUNT
        assert Launch.from_dict(json.loads(json.dumps(launch.as_dict()))) == launch  # a Slurm job's launch file
    local = LocalEngine().launch(_request(tmp_path, images))
    assert local.argv[local.argv.index("--images") + 1] == str(images.resolve())
    assert [m.read_only for m in local.mounts if m.source == images.resolve()] == [True]
    plain = _request(tmp_path, None)
    for launch in (container_launch(plain, "docker"), LocalEngine().launch(plain)):
        assert "--images" not in launch.argv and all(m.target != IMAGES_MOUNT for m in launch.mounts)


# -- (b) the real engine ------------------------------------------------------------------------------

PROBE = r'''
import json, os, sys
out = sys.argv[sys.argv.index("--out") + 1]
images = sys.argv[sys.argv.index("--images") + 1]
report = {"images": images, "listed": sorted(os.listdir(os.path.join(images, "train")))}
try:
    open(os.path.join(images, "train", "x"), "w").write("x"); report["write"] = "allowed"
except OSError as e:
    report["write"] = f"refused: {e.__class__.__name__}"
open(os.path.join(out, "probe.json"), "w").write(json.dumps(report))
'''


@pytest.mark.docker
@pytest.mark.parametrize("engine_name", ["docker", "podman"])
def test_the_container_engines_mount_the_jpeg_folder_read_only(engine_name, request, source, tmp_path):
    """A stand-in workload in the real engine lists the JPEG folder at --images and cannot write it."""
    if engine_name == "docker":
        from runner.engine.docker_engine import DockerEngine

        engine, image = DockerEngine(request.getfixturevalue("docker_client")), \
            request.getfixturevalue("cpu_images")["pytorch"]
    else:
        engine, image = request.getfixturevalue("podman_engine"), request.getfixturevalue("podman_images")["pytorch"]
    code = tmp_path / "code"
    (code / "runner" / "workload").mkdir(parents=True)
    (code / "runner" / "__init__.py").write_text("")
    (code / "runner" / "workload" / "__init__.py").write_text("")
    (code / "runner" / "workload" / "__main__.py").write_text(PROBE)
    for d in ("index", "out"):
        (tmp_path / d).mkdir()
    (tmp_path / "run.json").write_text("{}")
    for p in [tmp_path, *tmp_path.rglob("*")]:
        os.chmod(p, 0o777 if p.is_dir() else 0o644)
    before = dataset_manifest(source)[1]
    run = RunRequest(run_id="probe", bundle_id=f"test-jpeg-mount-{engine_name}", framework="pytorch", variant="cpu",
                     config_path=tmp_path / "run.json", data_dir=tmp_path / "index", out_dir=tmp_path / "out",
                     code_dir=code, image_id=image, memory="512m", cpus=1, images_dir=source)
    outcome = engine.start(run).finish()
    assert outcome.ok, outcome.log
    report = json.loads((tmp_path / "out" / "probe.json").read_text())
    assert report["images"] == IMAGES_MOUNT and report["listed"] == ["n00000000", "n00000001", "n00000002"]
    assert report["write"].startswith("refused")
    assert dataset_manifest(source)[1] == before


def _reproduce_jpeg(tmp_path: Path, engine: str, *extra: str) -> Path:
    spec = tmp_path / "imagenet-jpeg.yaml"
    spec.write_text(yaml.safe_dump(TINY))
    argv = [sys.executable, "-m", "runner.cli", "reproduce", str(spec), "--engine", engine, *extra]
    argv += ["--base", LOCAL_BASE] if engine == "docker" else []
    proc = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (bundle,) = list((tmp_path / "results" / "imagenet-jpeg").iterdir())
    return bundle


def _check_jpeg_bundle(bundle: Path, tmp_path: Path) -> dict:
    """Both runs ok, run.json and the bundle's dataset record say decode jpeg, nothing pre-decoded,
    the mounted source untouched."""
    import pyarrow.parquet as pq

    runs = {r["framework"]: r for r in pq.read_table(bundle / "tables" / "runs.parquet").to_pylist()}
    assert {fw: r["status"] for fw, r in runs.items()} == {"pytorch": "ok", "tensorflow": "ok"}
    for run in runs.values():
        doc = json.loads((bundle / "runs" / run["run_id"] / "run.json").read_text())
        assert doc["data"]["decode"] == "jpeg"
    ds = json.loads((bundle / "environment" / "dataset.json").read_text())
    assert ds["name"] == "imagenet" and ds["synthetic"] is True and ds["decode"]["mode"] == "jpeg"
    assert ds["counts"] == {"train": 48, "test": 12} and ds["skipped"] == []
    assert list(ds["prepared_files"]) == ["index.json"]  # nothing pre-decoded was mounted
    (synthetic,) = [p for p in (tmp_path / ".cache" / "runner" / "synthetic").iterdir() if p.is_dir()]
    assert dataset_manifest(synthetic)[1] == ds["source_root_sha256"]  # the mounted source is untouched
    assert not list((tmp_path / ".cache" / "runner").rglob("*_x.npy"))
    verify = subprocess.run([sys.executable, "-m", "runner.cli", "bundle", "verify", str(bundle)],
                            capture_output=True, text=True, cwd=tmp_path)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    return runs


@pytest.mark.docker
@pytest.mark.slow
def test_a_decode_jpeg_spec_runs_in_the_cpu_images_end_to_end(cpu_images, tmp_path):  # noqa: F811
    runs = _check_jpeg_bundle(_reproduce_jpeg(tmp_path, "docker"), tmp_path)
    assert {fw: r["image_id"] for fw, r in runs.items()} == cpu_images


@pytest.mark.slow
@pytest.mark.torch
@pytest.mark.tensorflow
def test_a_decode_jpeg_spec_runs_locally_end_to_end(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("tensorflow")
    _check_jpeg_bundle(_reproduce_jpeg(tmp_path, "local"), tmp_path)


@pytest.mark.slurm
@pytest.mark.docker
@pytest.mark.slow
def test_a_decode_jpeg_spec_runs_through_slurm_in_the_cpu_images(cpu_images, tmp_path):  # noqa: F811
    """The Launch a Slurm job runs carries the JPEG folder's read-only mount and --images."""
    bundle = _reproduce_jpeg(tmp_path, "docker", "--executor", "slurm")
    runs = _check_jpeg_bundle(bundle, tmp_path)
    assert {fw: r["image_id"] for fw, r in runs.items()} == cpu_images
    assert json.loads((bundle / "environment" / "executor.json").read_text())["kind"] == "slurm"
