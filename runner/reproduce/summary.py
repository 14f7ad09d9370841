"""The table printed at the end of a reproduction: one row per run, then the bundle's path."""

from __future__ import annotations

from pathlib import Path

from rich import box
from rich.console import Console
from rich.table import Table


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_summary(console: Console, records: list, bundle: Path) -> None:
    table = Table(title="runs", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for col in ("run", "framework", "status", "test acc", "img/s", "train s", "reason"):
        table.add_column(col, overflow="fold")
    for rec in records:
        s = rec.summary
        status = "[green]ok[/]" if rec.status == "ok" else "[red]failed[/]"
        table.add_row(rec.run.id, rec.run.framework, status, _fmt(s.get("final_test_accuracy"), ".3f"),
                      _fmt(s.get("mean_images_per_s"), ",.0f"), _fmt(s.get("training_time_s"), ".1f"),
                      rec.reason or "")
    console.print(table)
    failed = sum(r.status != "ok" for r in records)
    console.print(f"{len(records) - failed} ok, {failed} failed")
    console.print(f"bundle: {bundle}")
