"""The live view follows the workload's real event stream (keys as EventWriter writes them)."""

from __future__ import annotations

import io
import json

from rich.console import Console

from runner.reproduce.live import LiveView
from runner.workload.events import EventWriter


def test_progress_follows_epoch_and_eval_events(tmp_path):
    writer = EventWriter(tmp_path / "events.jsonl", "r1")
    events = [
        writer.emit("step", epoch=0, step=0, global_step=0, loss=2.3, warmup=False),
        writer.emit("epoch", epoch=0, train_loss=1.85, images_per_s=588.9),
        writer.emit("eval", epoch=0, test_accuracy=0.746),
        writer.emit("epoch", epoch=1, train_loss=0.9, images_per_s=600.0),
    ]
    writer.close()
    assert [json.loads(line)["type"] for line in (tmp_path / "events.jsonl").read_text().splitlines()] == \
        ["step", "epoch", "eval", "epoch"]
    view = LiveView(Console(file=io.StringIO(), width=120), total_runs=1)
    view.start_run("r1 pytorch", epochs=4)
    for e in events[:3]:
        view.on_event(e)
    task = view.progress.tasks[-1]
    assert task.completed == 1 and task.fields["status"] == "test acc 0.746"
    view.on_event(events[3])
    assert view.progress.tasks[-1].completed == 2 and "600 img/s" in view.progress.tasks[-1].fields["status"]


def test_null_figures_do_not_break_the_view():
    """A diverged loss and an epoch made only of warm-up steps are written as null."""
    view = LiveView(Console(file=io.StringIO(), width=120), total_runs=1)
    view.start_run("r1 pytorch", epochs=2)
    view.on_event({"type": "step", "epoch": 0, "step": 3, "loss": None, "warmup": False})
    view.on_event({"type": "epoch", "epoch": 0, "images_per_s": None, "train_loss": None})
    view.on_event({"type": "eval", "epoch": 0, "test_accuracy": None})
    assert view.progress.tasks[-1].completed == 1 and view.progress.tasks[-1].fields["status"] == "test acc -"
