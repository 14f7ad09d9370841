"""Numpy batches for any framework: (x float32 NHWC, y int64), same order and pixels everywhere.

`BatchIterator` walks one epoch of a prepared split. With `shard=(r, k)` (a data-parallel
replica) it yields slice r of k of every batch of the same global order: the k shards of a
batch, concatenated in rank order, are exactly the unsharded batch. The train split follows
`plan_epoch(seed, epoch, n, ops)` (shuffled, augmented); the test split uses a fixed order and
only the deterministic ops (resize), never random augmentation. The last short batch is kept
unless `drop_last`.

Raw mode (`raw=True`, for augmentation on the device: runner.workload.harness.device_augment)
yields `(x_uint8, y, decisions)` instead: the uint8 NHWC images at the batch's plan positions
(`x[plan.order[positions]]`, nothing augmented or normalised), the labels, and the plan's
decisions for those positions (`augment.batch_decisions`, one entry per op, None for resize).
The same sharding and prefetch apply; the test split's plan is the identity (resize only).
Applying the decisions to the raw batch gives exactly the batch of the default mode.

Prefetch: with `prefetch=k > 0`, one background thread builds up to k batches ahead into a
bounded queue while the caller trains on the current one. numpy releases the GIL in the
gather, arithmetic and copy kernels that dominate batch assembly, so the data time overlaps
the framework's compute. The batches, and their order, are identical with and without
prefetch; an error in the thread is re-raised in the caller; leaving the loop early stops the
thread.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from collections.abc import Iterator, Sequence

import numpy as np

from runner.data.augment import EpochPlan, Op, apply_batch, batch_decisions, normalize_ops, plan_epoch
from runner.data.prepared import PreparedDataset
from runner.data.registry import get_dataset
from runner.errors import UsageError

Batch = tuple[np.ndarray, np.ndarray]
RawBatch = tuple[np.ndarray, np.ndarray, tuple[np.ndarray | None, ...]]  # (x uint8 NHWC, y, decisions)


class BatchIterator:
    def __init__(self, prepared: PreparedDataset, split: str, batch_size: int, seed: int, epoch: int,
                 ops: Sequence[Op], mean: Sequence[float], std: Sequence[float],
                 drop_last: bool = False, prefetch: int = 0, shard: tuple[int, int] = (0, 1),
                 raw: bool = False) -> None:
        if split not in ("train", "test"):
            raise UsageError(f"unknown split {split!r}", field="split", fix="use 'train' or 'test'")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise UsageError(f"batch_size must be a positive integer, got {batch_size!r}", field="batch_size")
        if isinstance(prefetch, bool) or not isinstance(prefetch, int) or prefetch < 0:
            raise UsageError(f"prefetch must be a non-negative integer, got {prefetch!r}", field="prefetch")
        rank, replicas = shard
        if not (isinstance(rank, int) and isinstance(replicas, int) and 0 <= rank < replicas):
            raise UsageError(f"shard must be (rank, replicas) with 0 <= rank < replicas, got {shard!r}", field="shard")
        self.shard = (rank, replicas)
        self.raw = bool(raw)
        self.x, self.y = prepared.split(split)
        self.split = split
        self.batch_size = batch_size
        self.drop_last = drop_last
        self.prefetch = prefetch
        self.mean = tuple(float(v) for v in mean)
        self.std = tuple(float(v) for v in std)
        n = len(self.y)
        if split == "train":
            self.plan = plan_epoch(seed, epoch, n, ops)
        else:
            self.plan = EpochPlan.identity(n, ops)
        self.ops = self.plan.ops

    def __len__(self) -> int:
        n = self.plan.n
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def _batches(self) -> Iterator[Batch | RawBatch]:
        rank, replicas = self.shard
        for b in range(len(self)):
            start = b * self.batch_size
            size = min(self.batch_size, self.plan.n - start)  # the GLOBAL batch; this shard takes slice `rank`
            positions = slice(start + rank * size // replicas, start + (rank + 1) * size // replicas)
            idx = self.plan.order[positions]
            y = np.asarray(self.y[idx], dtype=np.int64)
            if self.raw:  # fancy indexing copies, also from a read-only memmap
                yield np.asarray(self.x[idx]), y, batch_decisions(self.plan, positions)
            else:
                yield apply_batch(self.x, self.plan, positions, self.ops, self.mean, self.std), y

    def __iter__(self) -> Iterator[Batch | RawBatch]:
        return self._prefetched() if self.prefetch else self._batches()

    def _prefetched(self) -> Iterator[Batch | RawBatch]:
        q: queue.Queue = queue.Queue(maxsize=self.prefetch)
        stop = threading.Event()
        done = object()

        def put(item: object) -> bool:
            while not stop.is_set():
                try:
                    q.put(item, timeout=0.05)
                    return True
                except queue.Full:
                    continue
            return False

        def work() -> None:
            try:
                for batch in self._batches():
                    if not put(batch):
                        return
                put(done)
            except BaseException as exc:  # handed to the consumer, re-raised there
                put(_Failure(exc))

        thread = threading.Thread(target=work, name="runner-data-prefetch", daemon=True)
        thread.start()
        try:
            while True:
                item = q.get()
                if item is done:
                    return
                if isinstance(item, _Failure):
                    raise item.exc
                yield item
        finally:
            stop.set()
            thread.join(timeout=10)


class _Failure:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def measure_loader_throughput(prepared: PreparedDataset, batch_size: int, ops: Sequence[Op], seconds: float,
                              *, mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                              prefetch: int = 0, seed: int = 0) -> float:
    """Train-split images per second the loader alone delivers (augmentation + normalisation).

    Runs epochs 0, 1, ... until `seconds` have passed (at least one batch) and divides the images
    delivered by the elapsed wall time. Mean/std default to the registry's values for the dataset.
    """
    info = get_dataset(prepared.name)
    mean = info.mean if mean is None else mean
    std = info.std if std is None else std
    normalize_ops(ops)
    if len(prepared.train_y) == 0 or seconds <= 0:
        raise UsageError("needs a non-empty train split and seconds > 0", field="seconds")
    images, epoch = 0, 0
    start = time.perf_counter()
    while True:
        it = BatchIterator(prepared, "train", batch_size, seed, epoch, ops, mean, std, prefetch=prefetch)
        for x, _ in it:
            images += len(x)
            if time.perf_counter() - start >= seconds:
                return images / (time.perf_counter() - start)
        epoch += 1
