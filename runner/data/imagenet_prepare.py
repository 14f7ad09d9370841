"""Pre-decoded ImageNet shards: every image decoded once at one size into the prepared form.

`runner data prepare DIR --size S` (and `runner reproduce`, into its cache) decodes with
`decode.py` in a pool of worker processes:

* train: the shorter side resized to S and the central S x S square kept (one BILINEAR pass);
  the training run's random-resized-crop and flip are then drawn per epoch on these pixels;
* val (the prepared `test` split): the evaluation transform, shorter side to round(S / 0.875),
  central S x S (256 -> 224 at S = 224).

The result is the ordinary prepared folder (`train_x.npy` uint8 (N, S, S, 3), ...) plus two
facts in meta.json: `decode` (size, filter, transforms, Pillow version) and `skipped` (every
file not decoded, with its reason). Images are held in memory while they are written: fine for
the synthetic and subset datasets here; the full 1.28 M images at 224 need 193 GB.
"""

from __future__ import annotations

import numpy as np

from runner.data import decode
from runner.data.image_loader import FileSource, default_workers, render_all
from runner.data.imagenet import ImagenetIndex, Skip
from runner.data.reader import RawDataset, SourceRecord
from runner.errors import DatasetError

EVAL_CROP_FRACTION = 0.875
SIZES = (160, 224)


def _decode_split(index: ImagenetIndex, items: tuple[tuple[str, int], ...], size: int, crop_fraction: float,
                  workers: int, skipped: list[Skip]) -> tuple[np.ndarray, np.ndarray]:
    source = FileSource(str(index.root), tuple(rel for rel, _ in items))
    transform = ("center", size, crop_fraction)
    x = np.empty((len(items), size, size, 3), np.uint8)  # filled as images arrive, no second copy
    labels: list[int] = []
    for k, r in enumerate(render_all(source, range(len(items)), [transform] * len(items), workers=workers)):
        if isinstance(r, np.ndarray):
            x[len(labels)] = r
            labels.append(items[k][1])
        else:
            skipped.append(Skip(items[k][0], r.message if isinstance(r, DatasetError) else str(r)))
    x = x[: len(labels)]
    y = np.asarray(labels, dtype=np.int64)
    return x, y


def decode_all(index: ImagenetIndex, size: int, record: SourceRecord, workers: int | None = None) -> RawDataset:
    if size not in SIZES:
        raise DatasetError(f"size {size} is not one of {', '.join(map(str, SIZES))}", field="--size")
    workers = default_workers() if workers is None else workers
    skipped = list(index.skipped)
    train_x, train_y = _decode_split(index, index.train, size, 1.0, workers, skipped)
    test_x, test_y = _decode_split(index, index.val, size, EVAL_CROP_FRACTION, workers, skipped)
    if len(train_y) == 0:
        raise DatasetError("holds no decodable training image", file=index.root / "train")
    extra = {
        "decode": {"size": size, "filter": f"pillow {decode.FILTER}, reducing_gap=None",
                   "pillow": decode.pillow_version(),
                   "train": "shorter side to size, central square",
                   "test": f"shorter side to round(size / {EVAL_CROP_FRACTION}), central square",
                   "val_layout": index.val_layout},
        "skipped": [s.to_json() for s in sorted(skipped, key=lambda s: s.path)],
    }
    return RawDataset(name="imagenet", classes=index.classes, train_x=train_x, train_y=train_y,
                      test_x=test_x, test_y=test_y, source=record, extra=extra)
