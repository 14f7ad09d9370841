"""Rich rendering of command results. Kept apart so commands stay thin and output testable."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich import box
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from runner.doctor import Check
    from runner.spec.plan import Plan

console = Console()

_STATUS_STYLE = {"OK": "green", "WARN": "yellow", "FAIL": "red bold"}


def plan_table(plan: Plan) -> None:
    exp = plan.experiment
    table = Table(title=f"{exp.name}: {len(plan.runs)} runs", title_justify="left", box=box.SIMPLE_HEAD,
                  pad_edge=False)
    show_point = any(run.params for run in plan.runs)
    table.add_column("id", no_wrap=True, min_width=15)
    table.add_column("sweep", overflow="fold")
    table.add_column("framework", min_width=10)
    for col in ("rep", "seed", "batch", "optim", "lr", "epochs"):
        table.add_column(col, overflow="fold")
    if show_point:
        table.add_column("grid point", overflow="fold")
    for run in plan.runs:
        r = run.recipe
        row = [run.id, run.sweep, run.framework, str(run.repeat), str(run.seed), str(r["batch_size"]),
               r["optimizer"], f"{r['lr']:g}", str(r["epochs"])]
        if show_point:
            row.append(", ".join(f"{k}={v}" for k, v in run.params.items()))
        table.add_row(*row)
    console.print(table)
    console.print(f"model {exp.model.name.value} on {exp.dataset.name.value} ({exp.variant.value}); "
                  f"spec sha256 {plan.spec_hash[:16]}")


def doctor_table(checks: list[Check]) -> None:
    table = Table(title="runner doctor", title_justify="left")
    for col in ("check", "status", "detail", "fix"):
        table.add_column(col)
    for c in checks:
        style = _STATUS_STYLE[c.status]
        table.add_row(c.name, f"[{style}]{c.status}[/]", c.detail, c.fix or "")
    console.print(table)


def models_table(rows: list[dict[str, Any]]) -> None:
    table = Table(title="models: parameters and FLOPs per image", title_justify="left")
    for col in ("model", "framework", "trainable", "total", "GFLOPs/image", "equal across frameworks"):
        table.add_column(col, justify="right" if col in ("trainable", "total", "GFLOPs/image") else "left")
    for row in rows:
        table.add_row(row["model"], row["framework"], f"{row['trainable']:,}", f"{row['total']:,}",
                      f"{row['flops_per_image'] / 1e9:.3f}", "yes" if row["equal"] else "[red]NO[/]")
    console.print(table)
