"""`dataset.decode: jpeg`: runs decode the ImageNet JPEGs themselves; the host writes only an index.

With `decode: shards` (the default) the host pre-decodes every image once (imagenet_prepare.py)
and runs read the .npy shards. With `decode: jpeg` nothing is pre-decoded: the host writes a
small index folder (`index.json`) and mounts it read-only at the data path, and mounts the
ImageNet source folder itself read-only beside it (`--images`); every batch is then decoded
from the original JPEGs by `image_loader.ImageBatches(FileSource(...))` in worker processes
(shared-memory batches), training with the random-resized-crop + flip of the shared seeded plan,
evaluation with the centre crop (EVAL_CROP_FRACTION), so both frameworks see byte-identical
pixels drawn from the full-resolution image.

index.json: `format`, `format_version`, `dataset`, `classes` (sorted wnids), `counts`,
`image_shape` (S x S x 3: the side a plain `x[i]` is rendered at, see below), `decode` (mode,
filter, Pillow version, transforms, val layout), `source` (the verification record: the root
hash), `skipped`, and `train` / `val`: `[relative path, label, size in bytes]` per image.

Unreadable or corrupt JPEGs: **reported skips decided on the host, before any run**. Building
the index decodes every listed image once in a worker pool (nothing is stored); a file that
does not decode (truncated, a PNG named .JPEG, over the pixel cap) is left out of the index and
recorded in `skipped` with its reason, beside the layout skips `imagenet.scan` reports (empty
class folders, files not named .JPEG). The index is cached by the source's root hash, so this
costs one decode pass per dataset version. Inside the run, before the first epoch,
`load_jpeg_index` checks that every indexed file is still a regular file of the indexed size
(one line naming the file otherwise); a file rewritten in place with the same size after the
host's check is the one case left, and it ends the run with the decoder's one line naming the
file (a failed run with that reason, not a crash), never a silent change of the data.

`JpegDataset` looks like a `PreparedDataset` to the harness: `train_x` / `test_x` are lazy
`JpegArray`s of shape (N, S, S, 3) whose items are rendered on demand with the transform the
pre-decoded shards hold (train: shorter side to S, central square; test: the evaluation centre
crop), so code that indexes arrays (the calibration images of the inference comparison, a recipe
without random_resized_crop) sees exactly the shards' pixels.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from runner.data import decode
from runner.data.files import read_regular_file, write_bytes_durable
from runner.data.image_loader import FileSource, Transform, default_workers, render, render_all
from runner.data.imagenet import ImagenetIndex, Skip
from runner.data.prepared import MetaFacts
from runner.data.reader import SourceRecord
from runner.errors import DatasetError

FORMAT = "runner-jpeg-index"
FORMAT_VERSION = 1
INDEX = "index.json"
DECODE_MODES = ("shards", "jpeg")
_MAX_INDEX_BYTES = 1 << 30  # ~80 bytes per image: the 1.33 M images of ILSVRC-2012 take ~110 MB
_REINDEX = "remove the cached index folder; runner reproduce writes it again"


def _eval_crop() -> float:
    from runner.data.imagenet_prepare import EVAL_CROP_FRACTION

    return EVAL_CROP_FRACTION


def write_index(index: ImagenetIndex, record: SourceRecord, folder: Path, size: int,
                workers: int | None = None) -> dict[str, Any]:
    """Decode-check every image of `index`, then write index.json into an empty (staging) folder."""
    workers = default_workers() if workers is None else workers
    skipped = list(index.skipped)
    splits: dict[str, list[list[Any]]] = {}
    for split, items in (("train", index.train), ("val", index.val)):
        source = FileSource(str(index.root), tuple(rel for rel, _ in items))
        kept = []
        checks = render_all(source, range(len(items)), [("check",)] * len(items), workers=workers)
        for (rel, label), r in zip(items, checks, strict=True):
            if isinstance(r, np.ndarray):
                kept.append([rel, int(label), os.stat(index.root / rel).st_size])
            else:
                skipped.append(Skip(rel, r.message if isinstance(r, DatasetError) else str(r)))
        splits[split] = kept
    if not splits["train"]:
        raise DatasetError("holds no decodable training image", file=index.root / "train")
    doc = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "dataset": "imagenet",
        "classes": list(index.classes),
        "counts": {"train": len(splits["train"]), "test": len(splits["val"])},
        "image_shape": [size, size, 3],
        "decode": decode_facts(index.val_layout),
        "source": record.to_json(),
        "skipped": [s.to_json() for s in sorted(skipped, key=lambda s: s.path)],
        "train": splits["train"],
        "val": splits["val"],
    }
    write_bytes_durable(folder / INDEX, (json.dumps(doc, sort_keys=True, separators=(",", ":")) + "\n").encode())
    return doc


def decode_facts(val_layout: str) -> dict[str, Any]:
    return {"mode": "jpeg", "filter": f"pillow {decode.FILTER}, reducing_gap=None",
            "pillow": decode.pillow_version(),
            "train": "each epoch from the original JPEG: random_resized_crop + flip of the seeded plan "
                     "(without random_resized_crop: shorter side to the index's size, central square)",
            "test": f"from the original JPEG: shorter side to round(side / {_eval_crop()}), central square",
            "val_layout": val_layout, "workers": "decoded in the run, worker processes, shared-memory batches"}


class JpegArray:
    """uint8 (N, S, S, 3) images rendered on demand from JPEG files with one fixed transform."""

    dtype = np.dtype(np.uint8)
    ndim = 4

    def __init__(self, source: FileSource, side: int, transform: Transform) -> None:
        self.source, self.transform = source, transform
        self.shape = (len(source), side, side, 3)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key: Any) -> np.ndarray:
        if isinstance(key, int | np.integer):
            return render(self.source, int(key) % len(self), self.transform)
        indices = np.arange(len(self))[key]
        out = np.empty((len(indices), *self.shape[1:]), np.uint8)
        for k, i in enumerate(indices):
            out[k] = render(self.source, int(i), self.transform)
        return out

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        x = self[:]
        return x if dtype is None else x.astype(dtype)


@dataclass(frozen=True)
class JpegDataset(MetaFacts):
    """The index folder (mounted at --data) and the JPEG folder (--images), as the harness reads them."""

    path: Path
    images: Path
    meta: dict[str, Any]
    train_source: FileSource
    test_source: FileSource
    train_y: np.ndarray
    test_y: np.ndarray
    content_id: str = field(default="")  # sha256 of index.json

    name = "imagenet"

    @property
    def side(self) -> int:
        return int(self.meta["image_shape"][0])

    @property
    def train_x(self) -> JpegArray:
        return JpegArray(self.train_source, self.side, ("center", self.side, 1.0))

    @property
    def test_x(self) -> JpegArray:
        return JpegArray(self.test_source, self.side, ("center", self.side, _eval_crop()))

    def split(self, split: str) -> tuple[JpegArray, np.ndarray]:
        if split == "train":
            return self.train_x, self.train_y
        if split == "test":
            return self.test_x, self.test_y
        raise DatasetError(f"unknown split {split!r}", field="split", fix="use 'train' or 'test'")


def read_index(path: Path) -> tuple[dict[str, Any], bytes]:
    """index.json of an index folder, checked (one line naming the file and field otherwise)."""
    data = read_regular_file(Path(path) / INDEX, _MAX_INDEX_BYTES, "jpeg index", fix=_REINDEX)
    where = Path(path) / INDEX
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise DatasetError(f"is not valid JSON ({type(exc).__name__})", file=where, fix=_REINDEX) from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise DatasetError(f"is not a {FORMAT} index", file=where, field="format", fix=_REINDEX)
    if doc.get("format_version") != FORMAT_VERSION:
        raise DatasetError(f"has format_version {doc.get('format_version')!r}, this runner reads {FORMAT_VERSION}",
                           file=where, field="format_version", fix=_REINDEX)
    classes = doc.get("classes")
    if not (isinstance(classes, list) and classes and all(isinstance(c, str) for c in classes)):
        raise DatasetError("must be a list of class names", file=where, field="classes", fix=_REINDEX)
    shape = doc.get("image_shape")
    if not (isinstance(shape, list) and len(shape) == 3 and all(isinstance(v, int) and v > 0 for v in shape)):
        raise DatasetError("must be [side, side, 3]", file=where, field="image_shape", fix=_REINDEX)
    for split in ("train", "val"):
        rows = doc.get(split)
        if not isinstance(rows, list) or not all(_row(r, len(classes)) for r in rows):
            raise DatasetError("must list [relative path, label, size] per image", file=where, field=split,
                               fix=_REINDEX)
    counts = doc.get("counts")
    if counts != {"train": len(doc["train"]), "test": len(doc["val"])}:
        raise DatasetError("does not match the images listed", file=where, field="counts", fix=_REINDEX)
    if not doc["train"]:
        raise DatasetError("lists no training image", file=where, field="train", fix=_REINDEX)
    return doc, data


def _row(r: Any, classes: int) -> bool:
    return (isinstance(r, list) and len(r) == 3 and isinstance(r[0], str) and _safe_rel(r[0])
            and isinstance(r[1], int) and 0 <= r[1] < classes and isinstance(r[2], int) and r[2] >= 0)


def _safe_rel(rel: str) -> bool:
    parts = rel.split("/")
    return bool(rel) and not rel.startswith("/") and all(p not in ("", ".", "..") for p in parts) and "\0" not in rel


def load_jpeg_index(path: str | Path, images: str | Path | None) -> JpegDataset:
    """The workload's view of a `decode: jpeg` run's data; every indexed file is checked first
    (a regular file, not a link, of the indexed size), so a damaged dataset is one line before
    training, not an error mid-epoch."""
    path = Path(path)
    if images is None:
        raise DatasetError("a decode: jpeg run needs the JPEG folder (--images)", field="--images",
                           fix="pass --images DIR (the engines mount the dataset's folder read-only)")
    images = Path(images)
    if not images.is_dir():
        raise DatasetError("is not the ImageNet folder (needs train/ and val/)", file=images, field="--images")
    doc, data = read_index(path)
    for split in ("train", "val"):
        for rel, _, size in doc[split]:
            full = images / rel
            try:
                st = os.lstat(full)
            except OSError:
                raise DatasetError(f"is missing: the index of {INDEX} lists it", file=full,
                                   fix="mount the dataset the index was written for") from None
            if not stat.S_ISREG(st.st_mode) or st.st_size != size:
                raise DatasetError(f"changed after runner indexed it (a regular file of {size} bytes was indexed)",
                                   file=full, fix="restore the file, or run again: runner re-verifies and re-indexes")
    root = str(images)
    return JpegDataset(
        path=path, images=images, meta={k: v for k, v in doc.items() if k not in ("train", "val")},
        train_source=FileSource(root, tuple(r[0] for r in doc["train"])),
        test_source=FileSource(root, tuple(r[0] for r in doc["val"])),
        train_y=np.asarray([r[1] for r in doc["train"]], dtype=np.int64),
        test_y=np.asarray([r[1] for r in doc["val"]], dtype=np.int64),
        content_id=hashlib.sha256(data).hexdigest())
