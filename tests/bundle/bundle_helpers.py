"""Hand-made runs for bundle tests: a two-framework plan and events written by the workload's writer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from runner.spec.plan import Plan, Run, plan_file
from runner.workload.events import EventWriter

SPEC = """\
# two frameworks, one repeat: the smallest plan with two runs
name: bundle-test
dataset:
  name: cifar10
  synthetic: {train_size: 256, test_size: 64, seed: 0}
model: {name: simple_cnn}
frameworks: [pytorch, tensorflow]
recipe: {epochs: 2, batch_size: 32, optimizer: sgd, lr: 0.05}
measurement: {warmup_steps: 2, latency_batch_sizes: [1, 8], latency_iterations: 10, target_accuracy: 0.3}
"""

STEPS_PER_EPOCH = 8


def make_plan(tmp: Path, text: str = SPEC) -> tuple[Plan, str]:
    spec = tmp / "spec.yaml"
    spec.write_text(text)
    return plan_file(spec), text


def write_run(out: Path, run: Run, *, epochs: int = 2, kill_in_epoch: int | None = None,
              end: dict[str, Any] | None = None) -> Path:
    """events.jsonl (+ result.json when the run ends) as the workload writes them.

    kill_in_epoch: stop writing in that epoch, tearing the last line in half, with no run_end.
    """
    out.mkdir(parents=True, exist_ok=True)
    path = out / "events.jsonl"
    with EventWriter(path, run.id) as ev:
        ev.emit("run_start", framework=run.framework, framework_version="9.9.9", python={"python": "3.11.2"},
                build={"cuda": None, "cudnn": None}, devices=[{"name": "cpu", "type": "CPU"}],
                threads={"intra_op": 2}, params={"trainable": 62006, "total": 62006}, flops_per_image=1_300_000,
                config_sha256="c" * 64)
        gstep = 0
        for epoch in range(epochs):
            for step in range(STEPS_PER_EPOCH):
                ev.emit("step", epoch=epoch, step=step, global_step=gstep, loss=2.3 - 0.01 * gstep, lr=0.05,
                        batch_size=32, data_time_s=0.001, compute_time_s=0.02, warmup=gstep < 2)
                gstep += 1
                if kill_in_epoch == epoch and step == STEPS_PER_EPOCH // 2:
                    ev.close()
                    with open(path, "a") as fh:
                        fh.write('{"type":"step","t":17000000')  # torn: killed mid-write
                    return path
            if epoch == 0:
                ev.emit("compile", time_s=0.5)
            ev.emit("epoch", epoch=epoch, train_loss=2.0 - epoch * 0.3, train_accuracy=0.2 + epoch * 0.1,
                    images=256, timed_images=192 if epoch == 0 else 256, time_s=0.2, images_per_s=1280.0,
                    data_time_s=0.01, compute_time_s=0.16)
            ev.emit("eval", epoch=epoch, test_loss=1.9 - epoch * 0.2, test_accuracy=0.25 + epoch * 0.1,
                    images=64, time_s=0.05)
            if epoch == 1:
                ev.emit("target_reached", accuracy=0.35, epoch=1, time_s=0.4, wall_s=0.6)
        for bs, p50 in ((1, 1.5), (8, 4.0)):
            ev.emit("latency", batch_size=bs, iterations=10, p50_ms=p50, p90_ms=p50 * 1.2, p99_ms=p50 * 1.5,
                    mean_ms=p50 * 1.1, per_image_ms=p50 / bs)
        ev.emit("memory", peak_device_bytes=None, peak_host_bytes=512 * 2**20)
        ev.emit("run_end", **(end or {"status": "ok", "reason": None, "error": None, "wall_s": 1.0}))
    (out / "result.json").write_text('{"status": "ok"}\n')
    return path


def all_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())
