"""Pre-decoded ImageNet shards are streamed to disk: the same bytes as the in-memory path, bounded memory."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("PIL")

from runner.data.image_loader import FileSource, render  # noqa: E402
from runner.data.imagenet import scan  # noqa: E402
from runner.data.imagenet_prepare import EVAL_CROP_FRACTION  # noqa: E402
from runner.data.npy_stream import NpyRowWriter  # noqa: E402
from runner.data.prepared import channel_stats, channel_stats_file, load_prepared, prepare, write_prepared  # noqa: E402
from runner.data.reader import RawDataset, SourceRecord  # noqa: E402
from runner.data.synth_imagenet import write_synthetic_imagenet  # noqa: E402
from runner.errors import DatasetError  # noqa: E402
from tests.helpers import REPO  # noqa: E402


@pytest.mark.parametrize(("capacity", "rows"), [(5, 5), (7, 3), (3, 0), (10**6, 2)])
def test_row_writer_equals_np_save_byte_for_byte(tmp_path, capacity, rows):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(rows, 6, 5, 3), dtype=np.uint8)
    w = NpyRowWriter(tmp_path / "a.npy", (6, 5, 3), capacity=capacity)
    for r in x:
        w.append(r)
    size = w.finish()
    buf = io.BytesIO()
    np.save(buf, x, allow_pickle=False)
    assert (tmp_path / "a.npy").read_bytes() == buf.getvalue() and size == len(buf.getvalue())
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), x)


def test_row_writer_refuses_a_wrong_row_and_more_rows_than_announced(tmp_path):
    w = NpyRowWriter(tmp_path / "a.npy", (2, 2, 3), capacity=1)
    with pytest.raises(ValueError, match="expected uint8"):
        w.append(np.zeros((2, 2, 3), np.float32))
    w.append(np.zeros((2, 2, 3), np.uint8))
    with pytest.raises(ValueError, match="more than the 1 rows"):
        w.append(np.zeros((2, 2, 3), np.uint8))
    w.close()


def _reference(src: Path, size: int) -> RawDataset:
    """The old path: every image rendered in memory, stacked, skips left out."""
    index = scan(src)
    out = {}
    for split, items, frac in (("train", index.train, 1.0), ("test", index.val, EVAL_CROP_FRACTION)):
        source = FileSource(str(index.root), tuple(rel for rel, _ in items))
        xs, ys = [], []
        for k, (_, y) in enumerate(items):
            try:
                xs.append(render(source, k, ("center", size, frac)))
            except DatasetError:
                continue
            ys.append(y)
        out[f"{split}_x"] = np.stack(xs)
        out[f"{split}_y"] = np.asarray(ys, np.int64)
    return RawDataset(name="imagenet", classes=index.classes, source=SourceRecord("folder", "x", "root-hash", False,
                                                                                   "0" * 64), **out)


def test_streamed_shards_equal_the_in_memory_path_byte_for_byte(tmp_path):
    src = write_synthetic_imagenet(tmp_path / "src", classes=3, per_class=7, val_per_class=3, side=40, seed=5).out
    bad = src / "train" / "n00000001" / "n00000001_2.JPEG"
    bad.write_bytes(bad.read_bytes()[:200])  # truncated: a skip in the middle of the stream
    p = prepare(src, tmp_path / "prep", size=160)
    assert load_prepared(tmp_path / "prep", verify="hashes").content_id == p.content_id
    ref = _reference(src, 160)
    assert p.train_x.shape == ref.train_x.shape == (20, 160, 160, 3) and p.test_x.shape == (9, 160, 160, 3)
    meta = json.loads((p.path / "meta.json").read_text())
    assert [s["path"] for s in meta["skipped"]] == ["train/n00000001/n00000001_2.JPEG"]
    # the in-memory writer (np.save through BytesIO) on the same arrays gives the same files and meta.json
    ref_dir = tmp_path / "ref"
    ref_dir.mkdir()
    write_prepared(replace(ref, source=SourceRecord(**meta["source"]),
                           extra={"decode": meta["decode"], "skipped": meta["skipped"]}), ref_dir)
    for name in ("train_x.npy", "train_y.npy", "test_x.npy", "test_y.npy", "meta.json"):
        assert (ref_dir / name).read_bytes() == (p.path / name).read_bytes(), name
    for name, info in meta["files"].items():
        assert hashlib.sha256((p.path / name).read_bytes()).hexdigest() == info["sha256"]


def test_channel_stats_from_the_file_equal_the_in_memory_ones(tmp_path):
    x = np.random.default_rng(1).integers(0, 256, size=(37, 9, 9, 3), dtype=np.uint8)
    np.save(tmp_path / "x.npy", x)
    assert channel_stats_file(tmp_path / "x.npy", max_chunk_bytes=5 * 9 * 9 * 3 * 8) == channel_stats(x)
    np.save(tmp_path / "f.npy", x.astype(np.float32))
    with pytest.raises(DatasetError, match="expected uint8 NHWC"):
        channel_stats_file(tmp_path / "f.npy")


_PROBE = """
import json, resource, sys


def main():
    from runner.data.prepared import prepare  # imports numpy; Pillow is imported before the baseline too
    import PIL.Image  # noqa: F401
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    prepare(sys.argv[1], sys.argv[2], size=224)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"growth_kib": after - before}))


if __name__ == "__main__":
    main()
"""


def test_peak_memory_while_preparing_stays_bounded(tmp_path):
    """720 images decoded at 224 are 104 MiB of pixels; preparing them grows the process's peak
    resident memory by at most 32 MiB (measured 14 MiB; the in-memory path grew 1.5 GiB: every
    finished result of Executor.map, the array, and np.save's copy). Measured in a FRESH process:
    ru_maxrss is inherited across fork/exec, so pytest's own peak would hide the growth."""
    src = write_synthetic_imagenet(tmp_path / "src", classes=4, per_class=150, val_per_class=30, side=48,
                                   seed=0).out
    probe = tmp_path / "probe.py"
    probe.write_text(_PROBE)
    proc = subprocess.run([sys.executable, str(probe), str(src), str(tmp_path / "out")], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300, env={"PYTHONPATH": str(REPO),
                                                                             "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    growth_mib = json.loads(proc.stdout.strip().splitlines()[-1])["growth_kib"] / 1024
    decoded_mib = sum(f.stat().st_size for f in (tmp_path / "out").glob("*_x.npy")) / 2**20
    assert decoded_mib > 100
    assert growth_mib < 32, f"peak memory grew {growth_mib:.0f} MiB while preparing {decoded_mib:.0f} MiB"
