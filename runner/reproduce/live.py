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
        """Events come from the run: any figure may be null (a diverged loss, an epoch of warm-up only)."""
        if self._run is None:
            return
        kind = event.get("type")
        if kind == "step" and not event.get("warmup"):
            self.progress.update(self._run, status=f"epoch {event.get('epoch')} step {event.get('step')} "
                                                    f"loss {_num(event.get('loss'), '.4f')}")
        elif kind == "epoch":
            self.progress.update(self._run, completed=int(event.get("epoch") or 0) + 1,
                                 status=f"{_num(event.get('images_per_s'), ',.0f')} img/s, "
                                        f"loss {_num(event.get('train_loss'), '.4f')}")
        elif kind == "eval":
            self.progress.update(self._run, status=f"test acc {_num(event.get('test_accuracy'), '.3f')}")

    def end_run(self, status: str) -> None:
        self.progress.advance(self._sweep)
        if self._run is not None:
            self.progress.update(self._run, status=status)


def _num(value: object, spec: str) -> str:
    return format(value, spec) if isinstance(value, int | float) else "-"
