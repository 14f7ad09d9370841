"""Where the protocol gets its batches: the data package's loader, or seeded random data.

Both frameworks read the same batches in the same order with the same augmentation decisions
(runner.data.image_loader.epoch_batches: the array loader, or for ImageNet with a
random_resized_crop op the Pillow decoder in worker processes, from the pre-decoded shards or,
with `data.decode: jpeg`, from the mounted JPEG files themselves; seeded by the run's seed and
the epoch). The loader reads the test split in a fixed order with only the deterministic ops (resize),
keeping the last partial batch. Batches are assembled `PREFETCH` ahead on a background thread in every framework; the
batches themselves do not depend on it.

Where a run's augmentation runs on the device (`RunConfig.augment_on`, the rule in
runner.workload.capabilities.augment_on), training batches are the array loader's raw ones:
`(x_uint8, y, decisions)`, the images at the batch's plan positions and the plan's decisions for
them; the PyTorch backend augments them on the device (harness/device_augment.py). Test batches
stay on the host path (deterministic ops only).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from runner.data.augment import normalize_ops, output_side
from runner.data.image_loader import epoch_batches
from runner.errors import SpecError, UsageError
from runner.workload.harness.config import RunConfig

PREFETCH = 2


def open_dataset(cfg: RunConfig, data_dir: Path, images_dir: Path | None = None) -> Any:
    """The run's data as run.json's `data.decode` says: the prepared .npy folder (`shards`, and
    every CIFAR run), or the host's JPEG index plus the mounted JPEG folder (`jpeg`:
    runner.data.jpeg_index, every indexed file checked before the first epoch)."""
    if cfg.data.decode == "jpeg":
        from runner.data.jpeg_index import load_jpeg_index

        return load_jpeg_index(data_dir, images_dir)
    if images_dir is not None:
        raise UsageError("--images is for decode: jpeg runs; run.json says data.decode: shards", field="--images",
                         fix="drop --images (the prepared folder holds the pixels)")
    from runner.data.prepared import load_prepared

    # The host verified every file's sha256 before mounting the folder read-only.
    return load_prepared(data_dir, verify="sizes")


class Batches:
    """`shard=(rank, replicas)`: a data-parallel process reads slice `rank` of every global
    training batch (the same global order in every replica); the test split is not sharded."""

    def __init__(self, prepared: Any, cfg: RunConfig, input_size: int, shard: tuple[int, int] = (0, 1)) -> None:
        self.prepared, self.cfg, self.input_size, self.shard = prepared, cfg, input_size, shard
        try:
            self.ops = list(normalize_ops(cfg.data.augmentation))
        except SpecError as exc:  # name the run.json field the op came from
            exc.file, exc.field = cfg.path, f"data.augmentation{(exc.field or '').removeprefix('ops')}"
            raise
        self._rng = np.random.default_rng([cfg.seed, 7])  # latency / synthetic inputs only
        self.raw = cfg.augment_on == "device"  # training batches unaugmented, with their decisions

    @property
    def train_size(self) -> int:
        return int(len(self.prepared.train_y))

    def output_side(self) -> int:
        """Image side after the ops (a resize changes it)."""
        return output_side(int(self.prepared.train_x.shape[1]), self.ops)

    def steps_per_epoch(self) -> int:
        bs, n = self.cfg.train.batch_size, self.train_size
        steps = n // bs if self.cfg.train.drop_last else -(-n // bs)
        cap = self.cfg.train.steps_per_epoch
        return min(steps, cap) if cap is not None else steps

    def _iterator(self, split: str, epoch: int, drop_last: bool, shard: tuple[int, int] = (0, 1),
                  raw: bool = False) -> Iterator[Any]:
        d, t = self.cfg.data, self.cfg.train
        if raw:  # the array loader (augment_on resolves to device only for it), unaugmented
            from runner.data.loader import BatchIterator

            return iter(BatchIterator(self.prepared, split, t.batch_size, self.cfg.seed, epoch, self.ops,
                                      d.mean, d.std, drop_last=drop_last, prefetch=PREFETCH, shard=shard,
                                      raw=True))
        return iter(epoch_batches(self.prepared, split, t.batch_size, self.cfg.seed, epoch, self.ops,
                                  d.mean, d.std, drop_last=drop_last, prefetch=PREFETCH, shard=shard))

    def train(self, epoch: int, raw: bool | None = None) -> Iterator[Any]:
        """(x, y) batches, or with `raw` (default: the run's augment_on is device) (x_uint8, y, decisions)."""
        return self._iterator("train", epoch, self.cfg.train.drop_last, self.shard,
                              raw=self.raw if raw is None else raw)

    def test(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        return self._iterator("test", 0, False)

    def random_batch(self, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        """A seeded standard-normal NHWC batch with uniform labels (latency, synthetic compute)."""
        s = self.input_size
        x = self._rng.standard_normal((batch_size, s, s, 3), dtype=np.float32)
        y = self._rng.integers(0, self.cfg.data.num_classes, size=batch_size, dtype=np.int64)
        return x, y

    def synthetic_batch(self) -> tuple[np.ndarray, np.ndarray]:
        """The global batch, or this replica's slice of it (the same draw in every replica)."""
        x, y = self.random_batch(self.cfg.train.batch_size)
        rank, replicas = self.shard
        part = slice(rank * len(y) // replicas, (rank + 1) * len(y) // replicas)
        return x[part], y[part]
