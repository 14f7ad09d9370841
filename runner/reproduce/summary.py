"""The table printed at the end of a reproduction: one row per run, then the bundle's path.

"other CPU" is the mean share of the host's cores other processes used during the run (from
telemetry): a high figure says the run's timings were measured on a busy machine.
"""

from __future__ import annotations

from pathlib import Path

from rich import box
from rich.console import Console, Group
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from runner.cli.fit import Fit, grid_or_lines

HEADERS = ("run", "framework", "status", "test acc", "img/s", "train s", "other CPU")
NUMERIC = ("test acc", "img/s", "train s", "other CPU")


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _cells(rec) -> list[str]:
    s = rec.summary
    other = s.get("host_other_cpu_mean_pct")
    return [rec.run.id, rec.run.framework, rec.status, _fmt(s.get("final_test_accuracy"), ".3f"),
            _fmt(s.get("mean_images_per_s"), ",.0f"), _fmt(s.get("training_time_s"), ".1f"),
            "-" if other is None else f"{other:.0f}%"]


def _wide(records: list) -> Table:
    table = Table(title="runs", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for col in (*HEADERS, "reason"):
        table.add_column(col, no_wrap=col != "reason", justify="right" if col in NUMERIC else "left")
    for rec in records:
        cells = _cells(rec)
        cells[2] = "[green]ok[/]" if rec.status == "ok" else "[red]failed[/]"
        table.add_row(*cells, rec.reason or "")
    return table


def _narrow(records: list, width: int) -> Group:
    """The columns without the reason; each failed run's reason on its own wrapped line below."""
    parts = [Text("runs"), grid_or_lines(HEADERS, [_cells(r) for r in records], width, right=NUMERIC, indent=1)]
    parts += [Padding(Text(f"{r.run.id}: {r.reason}"), (0, 0, 0, 1)) for r in records if r.reason]
    return Group(*parts)


def print_summary(console: Console, records: list, bundle: Path) -> None:
    console.print(Fit(lambda: _wide(records), lambda width: _narrow(records, width)))
    failed = sum(r.status != "ok" for r in records)
    console.print(f"{len(records) - failed} ok, {failed} failed")
    console.print(f"bundle: {bundle}")
