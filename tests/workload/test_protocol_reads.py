"""Training statistics read back in groups (`measurement.read_every_steps`), device-timed steps,
and the peak-memory counter reset after warm-up (harness/protocol.py).

A recording backend shows WHEN the protocol reads and what it does with the reads; real PyTorch
and TensorFlow runs show that the read interval changes nothing a run computes (bit-identical
losses) and is recorded in settings.
"""

from __future__ import annotations

import json
import math
from types import SimpleNamespace
from typing import Any

import pytest

from runner.workload.events import read_events
from runner.workload.harness.protocol import Diverged, Protocol
from runner.workload.harness.replicas import NullEvents
from tests.workload.test_harness_run import FRAMEWORK_MODULE, config, prepared, run_workload  # noqa: F401


class RecordingBackend:
    """Steps launch instantly; reads, marks and memory calls are logged in order."""

    framework, device = "fake", "fake:0"

    def __init__(self, losses: list[float] | None = None, timer: bool = False) -> None:
        self.log: list[tuple[str, Any]] = []
        self.losses = losses
        self.timer = timer
        self.launched = 0
        self.peak = 1000

    def to_device(self, x: Any, y: Any) -> tuple[Any, Any]:
        return x, y

    def train_step(self, batch: Any, lr: float) -> int:
        self.launched += 1
        self.peak += 10
        self.log.append(("step", self.launched - 1))
        return self.launched - 1  # unread: the step's index

    def read_steps(self, pending: list[int]) -> list[tuple[float, int]]:
        self.log.append(("read", list(pending)))
        return [(self.losses[i] if self.losses else 1.0 / (i + 1), i) for i in pending]

    def mark(self) -> int | None:
        return self.launched if self.timer else None

    def elapsed_s(self, start: int, end: int) -> float:
        return 0.5 * (end - start)  # a step takes half a second "on the device"

    def reset_peak_device_bytes(self) -> int:
        self.log.append(("reset_peak", self.launched))
        peak, self.peak = self.peak, 0
        return peak

    def peak_device_bytes(self) -> int:
        return self.peak

    def settings(self) -> dict[str, Any]:
        return {"execution": "fake"}

    def sync(self) -> None:
        pass


class ResidentBatches:
    def __init__(self, steps: int) -> None:
        self.steps = steps

    def steps_per_epoch(self) -> int:
        return self.steps

    def synthetic_batch(self) -> tuple[list[int], list[int]]:
        return [0] * 4, [0] * 4


class ListEvents(NullEvents):
    def __init__(self) -> None:
        self.emitted: list[dict[str, Any]] = []

    def emit(self, type_: str, **fields: Any) -> dict[str, Any]:
        event = {"type": type_, **fields}
        self.emitted.append(event)
        return event


def protocol(backend: RecordingBackend, *, epochs: int = 1, steps: int = 9, warmup: int = 2,
             every: int = 3) -> tuple[Protocol, ListEvents]:
    cfg = SimpleNamespace(
        train=SimpleNamespace(epochs=epochs, batch_size=4, precision="fp32", compile=False),
        measurement=SimpleNamespace(warmup_steps=warmup, read_every_steps=every, synthetic_compute=True,
                                    eval_every_epochs=1, target_accuracy=None, latency_batch_sizes=()))
    events = ListEvents()
    return Protocol(backend, cfg, ResidentBatches(steps), events, lambda e, s, n: 0.1, 0.0), events


def reads(backend: RecordingBackend) -> list[list[int]]:
    return [what for kind, what in backend.log if kind == "read"]


def test_warmup_steps_are_read_one_by_one_then_every_n_and_at_epoch_end():
    backend = RecordingBackend()
    proto, events = protocol(backend, epochs=2, steps=9, warmup=2, every=3)
    out = proto.train()
    # epoch 0: warm-up 0, 1 alone; then 2-4, 5-7, and 8 at the epoch's end; epoch 1: 9-11, 12-14, 15-17
    assert reads(backend) == [[0], [1], [2, 3, 4], [5, 6, 7], [8], [9, 10, 11], [12, 13, 14], [15, 16, 17]]
    steps = [e for e in events.emitted if e["type"] == "step"]
    assert [s["global_step"] for s in steps] == list(range(18))  # one row per step, in order
    assert [s["loss"] for s in steps] == [1.0 / (i + 1) for i in range(18)]
    assert [s["warmup"] for s in steps] == [True, True] + [False] * 16
    epochs = [e for e in events.emitted if e["type"] == "epoch"]
    assert epochs[0]["train_accuracy"] == sum(range(9)) / 36  # correct counts summed from the reads
    assert out.global_steps == 18


def test_every_step_read_when_n_is_one_and_the_first_step_always_alone():
    backend = RecordingBackend()
    proto, _ = protocol(backend, steps=5, warmup=0, every=1)
    proto.train()
    assert reads(backend) == [[0], [1], [2], [3], [4]]
    backend = RecordingBackend()
    proto, events = protocol(backend, steps=7, warmup=0, every=4)
    proto.train()
    assert reads(backend) == [[0], [1, 2, 3, 4], [5, 6]]  # the first step holds compilation: read alone
    (compile_ev,) = [e for e in events.emitted if e["type"] == "compile"]
    assert compile_ev["warmup_steps"] == 0


def test_device_timer_gives_each_steps_compute_time():
    backend = RecordingBackend(timer=True)
    proto, events = protocol(backend, steps=6, warmup=1, every=5)
    proto.train()
    steps = [e for e in events.emitted if e["type"] == "step"]
    # marks are taken around each launch: elapsed = 0.5 s x the one step between them
    assert [s["compute_time_s"] for s in steps] == [0.5] * 6


def test_peak_memory_counter_reset_when_warmup_ends():
    backend = RecordingBackend()
    proto, _ = protocol(backend, steps=6, warmup=2, every=2)
    out = proto.train()
    assert [what for kind, what in backend.log if kind == "reset_peak"] == [2]  # once, after step 2
    assert out.warmup_peak_device_bytes == 1020  # 1000 + two warm-up steps
    assert out.timed_peak_device_bytes == 40  # the four timed steps after the reset


def test_no_reset_for_a_run_shorter_than_its_warmup():
    backend = RecordingBackend()
    proto, _ = protocol(backend, steps=3, warmup=5, every=2)
    out = proto.train()
    assert not [k for k, _ in backend.log if k == "reset_peak"]
    assert out.warmup_peak_device_bytes is None and out.timed_peak_device_bytes is None


def test_a_non_finite_loss_inside_a_group_is_written_then_fails_the_run():
    losses = [1.0, 0.9, 0.8, math.nan, 0.7, 0.6, 0.5, 0.4]
    backend = RecordingBackend(losses=losses)
    proto, events = protocol(backend, steps=8, warmup=1, every=4)
    with pytest.raises(Diverged, match="epoch 0 step 3"):
        proto.train()
    steps = [e for e in events.emitted if e["type"] == "step"]
    # the group 1-4 was launched and read: every step of it is on record, the NaN one included
    assert [s["global_step"] for s in steps] == [0, 1, 2, 3, 4]
    assert math.isnan(steps[3]["loss"])


@pytest.mark.parametrize("framework", ["pytorch", "tensorflow"])
def test_read_interval_changes_nothing_a_run_computes(prepared, tmp_path, framework):  # noqa: F811
    pytest.importorskip(FRAMEWORK_MODULE[framework])
    runs = {}
    for every in (1, 3):
        cfg = config(framework, measurement={"read_every_steps": every, "latency_batch_sizes": []})
        code, err, out = run_workload(cfg, prepared, tmp_path / str(every))
        assert code == 0, err
        runs[every] = read_events(out / "events.jsonl")
    one, three = ([e["loss"] for e in runs[n] if e["type"] == "step"] for n in (1, 3))
    assert len(one) == 8 and one == three  # bit-identical: only when they are read differs
    (start,) = [e for e in runs[3] if e["type"] == "run_start"]
    assert start["settings"]["read_every_steps"] == 3
    assert start["settings"]["step_timing"].startswith("host clock")
    result = json.loads((tmp_path / "3" / "out" / "result.json").read_text())
    assert result["memory"]["peak_device_bytes"] is None  # CPU
    assert "warmup_peak_device_bytes" in result["memory"]
    epochs_one = [e["train_accuracy"] for e in runs[1] if e["type"] == "epoch"]
    assert epochs_one == [e["train_accuracy"] for e in runs[3] if e["type"] == "epoch"]
