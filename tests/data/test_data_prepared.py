"""The prepared .npy form: written atomically, verified on load."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from runner.data import prepared as prepared_mod
from runner.data.prepared import FORMAT_VERSION, META, load_prepared, prepare
from runner.data.sources import open_source
from runner.errors import DatasetError


def test_prepare_writes_arrays_and_meta(synth100, tmp_path):
    p = prepare(synth100.out, tmp_path / "p")
    raw = open_source(synth100.archive).read()
    np.testing.assert_array_equal(p.train_x, raw.train_x)
    np.testing.assert_array_equal(p.test_y, raw.test_y)
    np.testing.assert_array_equal(p.train_y_coarse, raw.train_y_coarse)
    assert sorted(os.listdir(p.path)) == sorted(
        ["meta.json", "train_x.npy", "train_y.npy", "test_x.npy", "test_y.npy", "train_y_coarse.npy",
         "test_y_coarse.npy"])
    meta = json.loads((p.path / META).read_text())
    assert meta["format_version"] == FORMAT_VERSION and meta["dataset"] == "cifar100"
    assert meta["counts"] == {"train": 200, "test": 40} and meta["layout"] == "NHWC"
    assert meta["source"]["verified_by"] == "manifest" and meta["source"]["root_sha256"] == synth100.manifest_root
    assert "/" not in meta["source"]["name"]  # no host paths in the record
    assert set(meta["files"]) == set(os.listdir(p.path)) - {META}
    assert len(meta["coarse_classes"]) == 20 and p.num_classes == 100
    assert all(0.0 < m < 1.0 for m in meta["train_channel_mean"])


def test_loaded_arrays_are_read_only_memory_maps(prepared10):
    p = load_prepared(prepared10.path)
    assert isinstance(p.train_x, np.memmap) and not p.train_x.flags.writeable
    assert p.train_x.shape == (60, 32, 32, 3) and p.train_y.dtype == np.int64
    eager = load_prepared(prepared10.path, mmap=False)
    assert not isinstance(eager.train_x, np.memmap)
    assert eager.content_id == p.content_id


def test_channel_stats_match_numpy(prepared10):
    mean, std = prepared_mod.channel_stats(prepared10.train_x, chunk=7)
    x = np.asarray(prepared10.train_x, np.float64) / 255
    np.testing.assert_allclose(mean, x.mean(axis=(0, 1, 2)), atol=1e-6)
    np.testing.assert_allclose(std, x.std(axis=(0, 1, 2)), atol=1e-6)


def _copy_prepared(src, dst):
    import shutil

    shutil.copytree(src.path, dst)
    return dst


def test_hash_check_catches_a_flipped_byte_that_sizes_mode_cannot(prepared10, tmp_path):
    d = _copy_prepared(prepared10, tmp_path / "p")
    f = d / "train_x.npy"
    data = bytearray(f.read_bytes())
    data[-1] ^= 1
    f.write_bytes(bytes(data))
    with pytest.raises(DatasetError) as exc:
        load_prepared(d)
    assert "train_x.npy" in exc.value.describe() and "sha256 recorded in meta.json" in exc.value.describe()
    load_prepared(d, verify="sizes")  # documented: sizes mode trusts a host-verified, read-only mount


def test_sizes_mode_catches_truncation_and_missing_files(prepared10, tmp_path):
    d = _copy_prepared(prepared10, tmp_path / "p")
    (d / "test_y.npy").write_bytes((d / "test_y.npy").read_bytes()[:-8])
    with pytest.raises(DatasetError, match="size recorded"):
        load_prepared(d, verify="sizes")
    (d / "test_y.npy").unlink()
    with pytest.raises(DatasetError, match="missing"):
        load_prepared(d, verify="sizes")


def test_extra_files_symlinks_and_bad_meta_are_refused(prepared10, tmp_path):
    d = _copy_prepared(prepared10, tmp_path / "p")
    (d / "stray.txt").write_text("x")
    with pytest.raises(DatasetError, match="not listed in meta.json"):
        load_prepared(d)
    (d / "stray.txt").unlink()
    os.symlink(d / "train_y.npy", d / "link.npy")
    with pytest.raises(DatasetError, match="symlink"):
        load_prepared(d)
    (d / "link.npy").unlink()
    meta = json.loads((d / META).read_text())
    meta["format_version"] = 99
    (d / META).write_text(json.dumps(meta))
    with pytest.raises(DatasetError, match="format_version 99"):
        load_prepared(d)
    (d / META).write_text("{not json")
    with pytest.raises(DatasetError, match="not valid JSON"):
        load_prepared(d)


def test_labels_outside_the_class_range_are_refused_on_load(prepared10, tmp_path):
    import hashlib
    import io

    d = _copy_prepared(prepared10, tmp_path / "p")
    y = np.load(d / "train_y.npy")
    y[0] = 10
    buf = io.BytesIO()
    np.save(buf, y)
    (d / "train_y.npy").write_bytes(buf.getvalue())
    meta = json.loads((d / META).read_text())
    meta["files"]["train_y.npy"]["sha256"] = hashlib.sha256(buf.getvalue()).hexdigest()
    (d / META).write_text(json.dumps(meta))
    with pytest.raises(DatasetError, match="labels outside 0..9"):
        load_prepared(d)


def test_existing_destination_is_never_overwritten(synth10, tmp_path):
    out = tmp_path / "p"
    out.mkdir()
    (out / "keep").write_text("mine")
    with pytest.raises(DatasetError, match="already exists"):
        prepare(synth10.archive, out)
    assert (out / "keep").read_text() == "mine"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert prepare(synth10.archive, empty).counts["train"] == 60  # an empty folder is fine


def test_a_failure_midway_leaves_nothing_behind(synth10, tmp_path, monkeypatch):
    real = prepared_mod.write_bytes_durable
    calls = []

    def flaky(path, data):
        calls.append(path.name)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        real(path, data)

    monkeypatch.setattr(prepared_mod, "write_bytes_durable", flaky)
    with pytest.raises(OSError):
        prepare(synth10.archive, tmp_path / "p")
    assert len(calls) == 3
    assert os.listdir(tmp_path) == ["synth"]  # no p/, no .p.*.tmp staging folder


def test_not_a_prepared_folder(tmp_path):
    with pytest.raises(DatasetError, match="not a prepared dataset folder"):
        load_prepared(tmp_path / "nope")
    (tmp_path / "d").mkdir()
    with pytest.raises(DatasetError, match="meta.json: no such prepared meta.json"):
        load_prepared(tmp_path / "d")
