"""ImageNet folders: layout and labels, bad input, the one decoder, shards, the manifest cache."""

from __future__ import annotations

import io
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("PIL")

from PIL import Image  # noqa: E402

from runner.data import decode  # noqa: E402
from runner.data.imagenet import scan  # noqa: E402
from runner.data.manifest import dataset_manifest  # noqa: E402
from runner.data.manifest_cache import cache_file  # noqa: E402
from runner.data.prepared import load_prepared, prepare  # noqa: E402
from runner.data.synth_imagenet import write_synthetic_imagenet  # noqa: E402
from runner.errors import DatasetError, DatasetRefused  # noqa: E402


@pytest.fixture(scope="module")
def master(tmp_path_factory) -> Path:
    return write_synthetic_imagenet(tmp_path_factory.mktemp("in") / "ds", classes=3, per_class=6,
                                    val_per_class=2, side=48, seed=1).out


@pytest.fixture
def ds(master, tmp_path) -> Path:
    """A private, writable copy (tests damage it)."""
    out = tmp_path / "ds"
    shutil.copytree(master, out)
    return out


def _jpeg(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", **kw)
    return buf.getvalue()


# -- layout and labels ------------------------------------------------------------------------------

def test_class_index_is_the_position_in_sorted_wnids_and_both_val_layouts_agree(tmp_path):
    folders = write_synthetic_imagenet(tmp_path / "a", classes=3, per_class=2, val_per_class=2, side=32, seed=3)
    flat = write_synthetic_imagenet(tmp_path / "b", classes=3, per_class=2, val_per_class=2, side=32, seed=3,
                                    flat_val=True)
    a, b = scan(folders.out), scan(flat.out)
    assert a.classes == b.classes == ("n00000000", "n00000001", "n00000002")
    assert [y for _, y in a.train] == [0, 0, 1, 1, 2, 2]
    assert a.val_layout == "class-folders" and b.val_layout == "flat+LOC_val_solution.csv"
    assert [y for _, y in a.val] == [y for _, y in b.val] == [0, 0, 1, 1, 2, 2]
    # the same image bytes under both layouts: the flat label file labels each one as its folder does
    for (ra, _), (rb, _) in zip(a.val, b.val, strict=True):
        assert (folders.out / ra).read_bytes() == (flat.out / rb).read_bytes()


def test_a_label_file_naming_a_missing_image_is_one_line_naming_file_and_line(tmp_path):
    r = write_synthetic_imagenet(tmp_path / "d", classes=2, per_class=1, val_per_class=2, side=32, flat_val=True)
    (r.out / "val" / "ILSVRC2012_val_00000002.JPEG").unlink()
    with pytest.raises(DatasetError) as e:
        scan(r.out)
    line = e.value.describe()
    assert "LOC_val_solution.csv:3" in line and "ILSVRC2012_val_00000002" in line and "\n" not in line


def test_an_empty_class_folder_is_a_reported_skip_and_keeps_the_class_index(ds):
    shutil.rmtree(ds / "train" / "n00000001")
    (ds / "train" / "n00000001").mkdir()
    index = scan(ds)
    assert index.classes == ("n00000000", "n00000001", "n00000002")
    assert {y for _, y in index.train} == {0, 2}
    assert [(s.path, s.reason.split(" (")[0]) for s in index.skipped] == [("train/n00000001", "empty class folder")]


def test_a_symlink_leaving_the_dataset_is_refused_in_one_line(ds, tmp_path):
    outside = tmp_path / "elsewhere.JPEG"
    outside.write_bytes((ds / "train" / "n00000000" / "n00000000_0.JPEG").read_bytes())
    (ds / "train" / "n00000000" / "n00000000_99.JPEG").symlink_to(outside)
    with pytest.raises(DatasetRefused, match="symlink escaping the folder"):
        scan(ds)
    with pytest.raises(DatasetRefused, match="n00000000_99.JPEG"):
        dataset_manifest(ds)


# -- bad images through `runner data prepare` --------------------------------------------------------

def test_bad_images_are_counted_reported_skips_cmyk_is_converted(ds, tmp_path, cli):
    cls = ds / "train" / "n00000000"
    good = (cls / "n00000000_0.JPEG").read_bytes()
    (cls / "n00000000_1.JPEG").write_bytes(good[: len(good) // 2])  # truncated
    png = io.BytesIO()
    Image.new("RGB", (40, 30), (10, 200, 30)).save(png, format="PNG")
    (cls / "n00000000_2.JPEG").write_bytes(png.getvalue())  # a PNG named .JPEG
    cmyk = Image.new("CMYK", (40, 30), (0, 255, 255, 0))
    (cls / "n00000000_3.JPEG").write_bytes(_jpeg(cmyk))
    before = dataset_manifest(ds)[1]
    out = tmp_path / "prep"
    res = cli("data", "prepare", ds, "--out", out, "--size", "160")
    assert res.code == 0, res.err
    meta = json.loads((out / "meta.json").read_text())
    reasons = {s["path"]: s["reason"] for s in meta["skipped"]}
    assert reasons == {"train/n00000000/n00000000_1.JPEG": "is truncated",
                       "train/n00000000/n00000000_2.JPEG": "is a PNG, not a JPEG"}
    assert "skipped train/n00000000/n00000000_1.JPEG: is truncated" in res.out
    assert meta["counts"] == {"train": 18 - 2, "test": 6}
    assert meta["decode"]["size"] == 160 and meta["decode"]["filter"].startswith("pillow bilinear")
    p = load_prepared(out)
    assert p.train_x.shape == (16, 160, 160, 3)
    # the CMYK image is in, converted by Pillow's one CMYK -> RGB rule (red)
    red = decode.decode(_jpeg(cmyk))
    assert red.shape == (30, 40, 3) and red[..., 0].mean() > 200 and red[..., 1:].mean() < 60
    assert dataset_manifest(ds)[1] == before  # the source was only read


def test_a_read_only_dataset_stays_untouched(ds, tmp_path):
    before = {p: p.stat().st_mtime_ns for p in ds.rglob("*")}
    for p in [ds, *ds.rglob("*")]:
        os.chmod(p, 0o555 if p.is_dir() else 0o444)
    try:
        prepare(ds, tmp_path / "prep", size=160)
    finally:
        for p in [ds, *ds.rglob("*")]:
            os.chmod(p, 0o755 if p.is_dir() else 0o644)
    assert {p: p.stat().st_mtime_ns for p in ds.rglob("*")} == before


def test_size_is_refused_for_cifar_and_for_unsupported_sides(ds, synth10, tmp_path, cli):
    res = cli("data", "prepare", synth10.folder, "--out", tmp_path / "c", "--size", "160")
    assert res.code == 2 and "ImageNet folders" in res.err and res.err.count("\n") == 1
    res = cli("data", "prepare", ds, "--out", tmp_path / "d", "--size", "100")
    assert res.code == 2 and not (tmp_path / "d").exists()


# -- the decoder --------------------------------------------------------------------------------------

def test_rrc_box_follows_torchvision_rules():
    rng = np.random.default_rng(0)
    for _ in range(200):
        w, h = (int(v) for v in rng.integers(20, 600, size=2))
        left, top, right, bottom = decode.rrc_box(rng.random((10, 4)), w, h, (0.08, 1.0), (3 / 4, 4 / 3))
        assert 0 <= left < right <= w and 0 <= top < bottom <= h
    # first attempt fits: area fraction = scale lo + u * (hi - lo), ratio = exp(log-interp)
    u = np.zeros((10, 4))
    u[0] = [1.0, 0.5, 0.0, 1.0]
    assert decode.rrc_box(u, 100, 100, (0.25, 0.25), (1.0, 1.0)) == (50, 0, 100, 50)
    # no attempt fits (a 4:1 box in a square) -> torchvision's fallback: the central crop at the max ratio
    assert decode.rrc_box(np.full((10, 4), 0.5), 100, 100, (0.9, 1.0), (4.0, 5.0)) == (0, 37, 100, 62)


def test_center_box_is_resize_256_then_centre_224():
    left, top, right, bottom = decode.center_box(500, 375, 224, 0.875)
    s = 256 / 375  # shorter side 375 -> 256; the long side becomes int(256 * 500 / 375) = 341
    assert (left * s, top * s) == pytest.approx((58, 16))  # round((341 - 224) / 2), round((256 - 224) / 2)
    assert ((right - left) * s, (bottom - top) * s) == pytest.approx((224, 224))


def test_crop_resize_is_pillow_bilinear_without_reducing_gap():
    rng = np.random.default_rng(1)
    img = Image.fromarray(rng.integers(0, 256, (120, 90, 3), dtype=np.uint8))
    box = (5.0, 7.0, 80.0, 100.0)
    want = np.asarray(img.resize((32, 32), Image.Resampling.BILINEAR, box=box, reducing_gap=None))
    assert np.array_equal(decode.crop_resize(img, box, 32), want)


# -- the loader: the same pixels whoever decodes ------------------------------------------------------

def test_pixels_identical_in_process_and_in_worker_processes_and_on_repeat(master):
    from runner.data.augment import plan_epoch
    from runner.data.image_loader import FileSource, ImageBatches

    index = scan(master)
    source = FileSource(str(index.root), tuple(r for r, _ in index.train))
    labels = np.array([y for _, y in index.train])
    ops = [{"op": "random_resized_crop", "size": 40}, {"op": "horizontal_flip"}]

    def epoch(e: int, workers: int) -> list[np.ndarray]:
        plan = plan_epoch(5, e, len(labels), ops)
        it = ImageBatches(source, labels, plan, 8, 40, (0.5,) * 3, (0.25,) * 3, workers=workers)
        return [u8 for u8, _ in it.uint8_batches()]

    a, b, c = epoch(0, 0), epoch(0, 2), epoch(0, 0)
    assert len(a) == 3 and a[0].shape == (8, 40, 40, 3) and a[-1].shape == (2, 40, 40, 3)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert all(np.array_equal(x, y) for x, y in zip(a, c, strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(a, epoch(1, 0), strict=True))


def test_a_bad_image_in_a_worker_is_one_line_naming_it(ds):
    from runner.data.augment import EpochPlan
    from runner.data.image_loader import FileSource, ImageBatches

    index = scan(ds)
    bad = ds / index.train[3][0]
    bad.write_bytes(bad.read_bytes()[:100])
    source = FileSource(str(index.root), tuple(r for r, _ in index.train))
    it = ImageBatches(source, np.zeros(len(index.train)), EpochPlan.identity(len(index.train)), 4, 32,
                      (0.5,) * 3, (0.25,) * 3, workers=2)
    with pytest.raises(decode.BadImage) as e:
        list(it)
    assert str(bad) in e.value.describe() and "truncated" in e.value.describe()


# -- the manifest: parallel, cached, --full ----------------------------------------------------------

def test_cached_manifest_equals_cold_and_sees_a_changed_file(ds, tmp_path):
    cache = tmp_path / "cache"
    cold = dataset_manifest(ds, workers=4)
    first = dataset_manifest(ds, cache_dir=cache, workers=4)
    assert first == cold and cache_file(cache, ds.resolve()).is_file()
    assert not any(p.name.endswith(".json") and "cache" in p.name for p in ds.rglob("*"))
    assert dataset_manifest(ds, cache_dir=cache) == cold  # from the cache
    target = ds / "train" / "n00000002" / "n00000002_0.JPEG"
    data = bytearray(target.read_bytes())
    data[-3] ^= 0xFF  # same size, new bytes (and a new mtime)
    target.write_bytes(bytes(data))
    changed = dataset_manifest(ds, cache_dir=cache)
    assert changed[1] != cold[1] and changed == dataset_manifest(ds)


def test_a_stale_cache_entry_with_forged_stat_is_bypassed_by_full(ds, tmp_path, cli):
    cache = tmp_path / "cache"
    dataset_manifest(ds, cache_dir=cache)
    target = ds / "val" / "n00000000" / "ILSVRC2012_val_00000001.JPEG"
    st = target.stat()
    data = bytearray(target.read_bytes())
    data[-3] ^= 0xFF
    target.write_bytes(bytes(data))
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))  # a deliberate in-place rewrite, same mtime
    assert dataset_manifest(ds, cache_dir=cache)[1] != dataset_manifest(ds)[1]  # the cache cannot see it
    full = cli("data", "verify", ds, "--full", "--json")
    assert full.code == 0 and json.loads(full.out)["root_sha256"] == dataset_manifest(ds)[1]


# -- hostile input through the CLI: one line, exit 2, nothing written ---------------------------------

@pytest.mark.parametrize("kind", ["fifo", "link-out", "link-in"])
def test_special_files_and_links_are_one_line_exit_2_and_nothing_is_written(ds, tmp_path, cli, kind):
    where = ds / "train" / "n00000001" / "odd.JPEG"
    if kind == "fifo":
        os.mkfifo(where)
    elif kind == "link-out":
        where.symlink_to("/etc/hostname")
    else:
        where.symlink_to(ds / "train" / "n00000001" / "n00000001_0.JPEG")
    for args in (["data", "verify", ds, "--full"], ["data", "prepare", ds, "--out", tmp_path / "out"]):
        res = cli(*args)
        assert res.code == 2 and res.err.count("\n") == 1 and "odd.JPEG" in res.err, (args, res.err)
    assert not (tmp_path / "out").exists()


def test_a_jpeg_claiming_81_megapixels_is_a_skip_before_any_decode(ds, tmp_path):
    target = ds / "train" / "n00000002" / "n00000002_1.JPEG"
    data = bytearray(target.read_bytes())
    sof = data.find(b"\xff\xc0")
    assert sof > 0
    data[sof + 5:sof + 9] = (9000).to_bytes(2, "big") * 2  # 81 M pixels: over MAX_PIXELS, under Pillow's own guard
    target.write_bytes(bytes(data))
    prepare(ds, tmp_path / "prep", size=160)
    meta = json.loads((tmp_path / "prep" / "meta.json").read_text())
    (skip,) = meta["skipped"]
    assert skip["path"] == "train/n00000002/n00000002_1.JPEG" and "9000x9000" in skip["reason"]


def test_synth_imagenet_cli_is_deterministic_and_verifies(tmp_path, cli):
    roots = []
    for name in ("a", "b"):
        res = cli("data", "synth", "imagenet", "--classes", "2", "--per-class", "3", "--val-per-class", "1",
                  "--side", "32", "--flat-val", "--seed", "4", "--out", tmp_path / name)
        assert res.code == 0, res.err
        v = cli("data", "verify", tmp_path / name, "--json", "--full")
        assert v.code == 0, v.err
        roots.append(json.loads(v.out)["root_sha256"])
        assert f"root sha256 {roots[-1]}" in res.out
    assert roots[0] == roots[1]
    assert (tmp_path / "a" / "LOC_val_solution.csv").read_text().splitlines()[1].startswith(
        "ILSVRC2012_val_00000001,n00000000 ")
