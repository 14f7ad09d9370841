"""BatchIterator: epoch coverage, fixed test order, prefetch equivalence, throughput figure."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from runner.data import loader as loader_mod
from runner.data.augment import apply_batch, plan_epoch
from runner.data.loader import BatchIterator, measure_loader_throughput
from runner.errors import UsageError

OPS = [{"op": "random_crop", "padding": 4}, {"op": "horizontal_flip"}, {"op": "brightness", "max_delta": 0.2}]
MEAN, STD = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)


def _collect(it):
    xs, ys = zip(*list(it), strict=True)
    return np.concatenate(xs), np.concatenate(ys)


def test_train_epoch_visits_every_image_once_in_the_plan_order(prepared10):
    it = BatchIterator(prepared10, "train", 16, seed=4, epoch=2, ops=OPS, mean=MEAN, std=STD)
    assert len(it) == 4  # 60 images: 16+16+16+12
    batches = list(it)
    assert [len(b[1]) for b in batches] == [16, 16, 16, 12]
    x, y = _collect(batches)
    plan = plan_epoch(4, 2, 60, OPS)
    np.testing.assert_array_equal(y, prepared10.train_y[plan.order])
    np.testing.assert_array_equal(x, apply_batch(prepared10.train_x, plan, slice(0, 60), OPS, MEAN, STD))
    assert x.dtype == np.float32 and y.dtype == np.int64 and x.shape == (60, 32, 32, 3)


def test_drop_last_and_epochs_differ(prepared10):
    it = BatchIterator(prepared10, "train", 16, 4, 0, OPS, MEAN, STD, drop_last=True)
    assert len(it) == 3 and [len(y) for _, y in it] == [16, 16, 16]
    y0 = _collect(BatchIterator(prepared10, "train", 60, 4, 0, OPS, MEAN, STD))[1]
    y1 = _collect(BatchIterator(prepared10, "train", 60, 4, 1, OPS, MEAN, STD))[1]
    assert not np.array_equal(y0, y1) and sorted(y0) == sorted(y1)


def test_test_split_is_in_order_without_random_augmentation(prepared10):
    ops = OPS + [{"op": "resize", "size": 40, "method": "nearest"}]
    x, y = _collect(BatchIterator(prepared10, "test", 6, seed=1, epoch=3, ops=ops, mean=MEAN, std=STD))
    np.testing.assert_array_equal(y, prepared10.test_y)
    assert x.shape == (20, 40, 40, 3)
    x2, _ = _collect(BatchIterator(prepared10, "test", 20, seed=99, epoch=0, ops=ops, mean=MEAN, std=STD))
    np.testing.assert_array_equal(x, x2)  # seed and epoch play no part


def test_prefetch_yields_identical_batches(prepared10):
    plain = list(BatchIterator(prepared10, "train", 7, 1, 0, OPS, MEAN, STD))
    ahead = list(BatchIterator(prepared10, "train", 7, 1, 0, OPS, MEAN, STD, prefetch=2))
    assert len(plain) == len(ahead)
    for (a, b), (c, d) in zip(plain, ahead, strict=True):
        np.testing.assert_array_equal(a, c)
        np.testing.assert_array_equal(b, d)


def _prefetch_threads():
    return [t for t in threading.enumerate() if t.name == "runner-data-prefetch"]


def test_leaving_early_stops_the_prefetch_thread(prepared10):
    it = iter(BatchIterator(prepared10, "train", 2, 1, 0, OPS, MEAN, STD, prefetch=1))
    next(it)
    it.close()
    assert not _prefetch_threads()


def test_errors_in_the_prefetch_thread_reach_the_caller(prepared10, monkeypatch):
    calls = {"n": 0}
    real = loader_mod.apply_batch

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("boom in batch 3")
        return real(*args, **kwargs)

    monkeypatch.setattr(loader_mod, "apply_batch", failing)
    got = []
    with pytest.raises(RuntimeError, match="boom in batch 3"):
        for batch in BatchIterator(prepared10, "train", 10, 1, 0, OPS, MEAN, STD, prefetch=2):
            got.append(batch)
    assert len(got) == 2
    assert not _prefetch_threads()


@pytest.mark.parametrize("kwargs,field", [
    ({"split": "val"}, "split"), ({"batch_size": 0}, "batch_size"), ({"prefetch": -1}, "prefetch"),
])
def test_bad_arguments(prepared10, kwargs, field):
    args = {"prepared": prepared10, "split": "train", "batch_size": 4, "seed": 0, "epoch": 0, "ops": OPS,
            "mean": MEAN, "std": STD} | kwargs
    with pytest.raises(UsageError) as exc:
        BatchIterator(**args)
    assert exc.value.field == field


def test_measure_loader_throughput_reports_images_per_second(prepared10):
    rate = measure_loader_throughput(prepared10, 16, OPS, seconds=0.2)
    assert rate > 100  # many thousands on any machine; 100 only guards against a broken loop
    with pytest.raises(UsageError):
        measure_loader_throughput(prepared10, 16, OPS, seconds=0)
