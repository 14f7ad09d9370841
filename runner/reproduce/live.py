"""Live progress of a sweep: the sweep bar, the current run's epochs, throughput and loss."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


class LiveView:
    def __init__(self, console: Console, total_runs: int) -> None:
        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TextColumn("{task.fields[status]}"), console=console, transient=False,
        )
        self._sweep = self.progress.add_task("sweep", total=total_runs, status="")
        self._run: int | None = None

    def __enter__(self) -> LiveView:
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.stop()

    def start_run(self, label: str, epochs: int) -> None:
        if self._run is not None:
            self.progress.remove_task(self._run)
        self._run = self.progress.add_task(f"  {label}", total=epochs, status="starting")

    def on_event(self, event: dict) -> None:
        if self._run is None:
            return
        kind = event.get("type")
        if kind == "step" and not event.get("warmup"):
            self.progress.update(self._run, status=f"epoch {event.get('epoch')} step {event.get('step')} "
                                                    f"loss {event.get('loss', float('nan')):.4f}")
        elif kind == "epoch":
            self.progress.update(self._run, completed=int(event.get("epoch", 0)) + 1,
                                 status=f"{event.get('images_per_s', 0):,.0f} img/s, "
                                        f"loss {event.get('train_loss', float('nan')):.4f}")
        elif kind == "eval":
            self.progress.update(self._run, status=f"test acc {event.get('test_accuracy', 0):.3f}")

    def end_run(self, status: str) -> None:
        self.progress.advance(self._sweep)
        if self._run is not None:
            self.progress.update(self._run, status=status)
