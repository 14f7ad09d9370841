"""Pre-decoded ImageNet shards: every image decoded once at one size into the prepared form.

`runner data prepare DIR --size S` (and `runner reproduce`, into its cache) decodes with
`decode.py` in a pool of worker processes:

* train: the shorter side resized to S and the central S x S square kept (one BILINEAR pass);
  the training run's random-resized-crop and flip are then drawn per epoch on these pixels;
* val (the prepared `test` split): the evaluation transform, shorter side to round(S / 0.875),
  central S x S (256 -> 224 at S = 224).

The result is the ordinary prepared folder (`train_x.npy` uint8 (N, S, S, 3), ...) plus two
facts in meta.json: `decode` (size, filter, transforms, Pillow version) and `skipped` (every
file not decoded, with its reason).

Streamed, not held in memory: each decoded image is appended to `train_x.npy` / `test_x.npy`
in the staging folder as it arrives (`npy_stream.NpyRowWriter`; the worker pool keeps a bounded
number of images in flight), so preparing the full 1.28 M images at 224 (193 GB of pixels) needs
the disk, not the memory. Skipped images are simply not appended: the header is written with the
number of inputs and rewritten with the number of rows when the split is done (header then
rows; numpy's header keeps its length for any count, see npy_stream.py), which is cheaper than
counting first (that would decode every image twice). The finished files equal `np.save` of the
same arrays byte for byte, so meta.json's sha256 values are those the in-memory path gave
(tested). Each file is hashed after it is written (`fileio.sha256_file`), and the channel
statistics are computed from the written train file in chunks (`prepared.channel_stats_file`).
Peak memory stays bounded (tested in a fresh process through ru_maxrss).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from runner.data import decode
from runner.data.image_loader import FileSource, default_workers, render_all
from runner.data.imagenet import ImagenetIndex, Skip
from runner.data.npy_stream import NpyRowWriter
from runner.data.reader import RawDataset, SourceRecord
from runner.errors import DatasetError
from runner.fileio import sha256_file

EVAL_CROP_FRACTION = 0.875
SIZES = (160, 224)


def _stream_split(index: ImagenetIndex, items: tuple[tuple[str, int], ...], size: int, crop_fraction: float,
                  workers: int, skipped: list[Skip], npy: Path) -> tuple[dict[str, Any], np.ndarray]:
    """Decode a split's images in order straight into `npy`; (its meta.json entry, the labels)."""
    source = FileSource(str(index.root), tuple(rel for rel, _ in items))
    transform = ("center", size, crop_fraction)
    writer = NpyRowWriter(npy, (size, size, 3), capacity=len(items))
    labels: list[int] = []
    try:
        for k, r in enumerate(render_all(source, range(len(items)), [transform] * len(items), workers=workers)):
            if isinstance(r, np.ndarray):
                writer.append(r)
                labels.append(items[k][1])
            else:
                skipped.append(Skip(items[k][0], r.message if isinstance(r, DatasetError) else str(r)))
        writer.finish()
    finally:
        writer.close()
    nbytes, sha = sha256_file(npy)
    entry = {"size": nbytes, "sha256": sha, "dtype": "uint8", "shape": [len(labels), size, size, 3]}
    return entry, np.asarray(labels, dtype=np.int64)


def decode_facts(index: ImagenetIndex, size: int) -> dict[str, Any]:
    return {"size": size, "filter": f"pillow {decode.FILTER}, reducing_gap=None",
            "pillow": decode.pillow_version(),
            "train": "shorter side to size, central square",
            "test": f"shorter side to round(size / {EVAL_CROP_FRACTION}), central square",
            "val_layout": index.val_layout}


def check_size(size: int) -> None:
    if size not in SIZES:
        raise DatasetError(f"size {size} is not one of {', '.join(map(str, SIZES))}", field="--size")


def write_shards(index: ImagenetIndex, size: int, record: SourceRecord, folder: Path,
                 workers: int | None = None) -> dict[str, Any]:
    """Write the prepared form of `index` at `size` into an empty (staging) folder; its meta.json."""
    from runner.data.prepared import channel_stats_file, write_array, write_meta

    check_size(size)
    workers = default_workers() if workers is None else workers
    skipped = list(index.skipped)
    files: dict[str, dict[str, Any]] = {}
    files["train_x.npy"], train_y = _stream_split(index, index.train, size, 1.0, workers, skipped,
                                                  folder / "train_x.npy")
    if len(train_y) == 0:
        raise DatasetError("holds no decodable training image", file=index.root / "train")
    files["test_x.npy"], test_y = _stream_split(index, index.val, size, EVAL_CROP_FRACTION, workers, skipped,
                                                folder / "test_x.npy")
    files["train_y.npy"] = write_array(folder, "train_y.npy", train_y)
    files["test_y.npy"] = write_array(folder, "test_y.npy", test_y)
    mean, std = channel_stats_file(folder / "train_x.npy")
    extra = {"decode": decode_facts(index, size),
             "skipped": [s.to_json() for s in sorted(skipped, key=lambda s: s.path)]}
    empty = np.empty((0, size, size, 3), np.uint8)  # the pixels are on disk; meta comes from `files`
    raw = RawDataset(name="imagenet", classes=index.classes, train_x=empty, train_y=train_y, test_x=empty,
                     test_y=test_y, source=record, extra=extra)
    return write_meta(folder, raw, dict(sorted(files.items())), mean, std)
