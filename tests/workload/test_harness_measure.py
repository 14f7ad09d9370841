"""measure.py: percentiles and latency against hand-computed values, epoch and run bookkeeping."""

from __future__ import annotations

import pytest

from runner.workload.measure import EpochMeter, Latency, RunMeter, SyncedClock, peak_host_bytes, percentile


def test_percentile_interpolates_linearly_between_order_statistics():
    values = [40.0, 10.0, 30.0, 20.0]  # sorted: 10 20 30 40, n-1 = 3
    assert percentile(values, 0) == 10.0
    assert percentile(values, 100) == 40.0
    assert percentile(values, 50) == 25.0  # rank 1.5: halfway between 20 and 30
    assert percentile(values, 90) == pytest.approx(37.0)  # rank 2.7: 30 + 0.7 * 10
    assert percentile(values, 99) == pytest.approx(39.7)  # rank 2.97
    assert percentile([7.0], 99) == 7.0
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_latency_from_values_by_hand():
    # 1..10 ms; ranks: p50 4.5 -> 5.5 ms, p90 8.1 -> 9.1 ms, p99 8.91 -> 9.91 ms.
    seconds = [i / 1000 for i in range(10, 0, -1)]
    lat = Latency.from_values(seconds, batch_size=4)
    assert lat.iterations == 10 and lat.batch_size == 4
    assert lat.p50_ms == pytest.approx(5.5)
    assert lat.p90_ms == pytest.approx(9.1)
    assert lat.p99_ms == pytest.approx(9.91)
    assert lat.mean_ms == pytest.approx(5.5)
    assert lat.per_image_ms == pytest.approx(5.5 / 4)
    assert set(lat.as_dict()) == {"batch_size", "iterations", "p50_ms", "p90_ms", "p99_ms", "mean_ms",
                                  "per_image_ms"}


def test_synced_clock_synchronises_before_every_read():
    calls = []
    clock = SyncedClock(lambda: calls.append(1))
    a, b = clock.now(), clock.now()
    assert len(calls) == 2 and b >= a


def test_epoch_meter_excludes_warmup_from_throughput():
    m = EpochMeter(epoch=0, start=0.0)
    # Warm-up step: 10 s for 8 images would ruin throughput if counted.
    m.add_step(start=0.0, end=10.0, images=8, loss=2.0, correct=1, data_s=1.0, compute_s=9.0, warmup=True)
    m.add_step(start=10.0, end=11.0, images=8, loss=1.0, correct=4, data_s=0.25, compute_s=0.75, warmup=False)
    m.add_step(start=11.0, end=12.0, images=8, loss=float("nan"), correct=2, data_s=0.25, compute_s=0.75,
               warmup=False)
    m.finish(12.5)
    s = m.summary()
    assert s["images"] == 24 and s["timed_images"] == 16
    assert s["images_per_s"] == pytest.approx(16 / 2.0)  # 10.0 .. 12.0, warm-up excluded
    assert s["train_loss"] == pytest.approx(1.5)  # the non-finite (skipped) step is left out
    assert s["train_accuracy"] == pytest.approx(7 / 24)
    assert s["time_s"] == pytest.approx(12.5)
    assert s["data_time_s"] == pytest.approx(1.5) and s["compute_time_s"] == pytest.approx(10.5)


def test_epoch_of_only_warmup_has_no_throughput():
    m = EpochMeter(epoch=0, start=0.0)
    m.add_step(start=0.0, end=1.0, images=8, loss=1.0, correct=0, data_s=0.1, compute_s=0.9, warmup=True)
    m.finish(1.0)
    assert m.images_per_s is None


def test_run_meter_target_is_reported_once_with_training_time():
    run = RunMeter(target_accuracy=0.8)
    for epoch, (t, acc) in enumerate([(2.0, 0.5), (3.0, 0.85), (4.0, 0.9)]):
        m = EpochMeter(epoch=epoch, start=0.0)
        m.add_step(start=0.0, end=t, images=10, loss=1.0, correct=5, data_s=0.0, compute_s=t, warmup=False)
        m.finish(t)
        run.add_epoch(m)
        hit = run.check_target(acc, epoch, wall_s=100.0)
        assert (hit is not None) == (epoch == 1)
    assert run.target == {"accuracy": 0.85, "epoch": 1, "time_s": 5.0, "wall_s": 100.0}
    assert run.images_per_s == pytest.approx(30 / 9.0)
    assert RunMeter().check_target(1.0, 0, 0.0) is None  # no target configured


def test_peak_host_bytes_is_plausible():
    assert 1 << 20 < peak_host_bytes() < 1 << 40
