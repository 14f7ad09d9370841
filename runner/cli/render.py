"""Rich rendering of command results. Kept apart so commands stay thin and output testable."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich import box
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from runner.cli.fit import Fit

if TYPE_CHECKING:
    from runner.doctor import Check
    from runner.spec.plan import Plan

console = Console()

_STATUS_STYLE = {"OK": "green", "WARN": "yellow", "FAIL": "red bold"}


# The plan's columns: header -> how a run fills it. Recipe fields a sweep's grid sets show in
# their own column; any other grid key shows under "grid".
_RECIPE_COLUMNS = {"batch": "batch_size", "optim": "optimizer", "lr": "lr", "epochs": "epochs"}


def _plan_rows(plan: Plan) -> tuple[list[str], list[list[str]]]:
    headers = ["id", "sweep", "framework", "rep", "seed", *_RECIPE_COLUMNS, "grid"]
    rows = []
    for run in plan.runs:
        r = run.recipe
        grid = ", ".join(f"{k}={v}" for k, v in run.params.items() if k not in _RECIPE_COLUMNS.values())
        rows.append([run.id, run.sweep, run.framework, str(run.repeat), str(run.seed), str(r["batch_size"]),
                     str(r["optimizer"]), f"{r['lr']:g}", str(r["epochs"]), grid])
    return headers, rows


def _plan_title(plan: Plan) -> str:
    exp = plan.experiment
    pin = exp.model.pretrained
    weights = "" if pin is None else (f"; weights sha256 {pin.sha256[:16]}"
                                      + (f" (seeded: {', '.join(pin.skip)})" if pin.skip else ""))
    return (f"{exp.name}: {len(plan.runs)} runs; model {exp.model.name.value} on {exp.dataset.name.value} "
            f"({exp.variant.value}); spec sha256 {plan.spec_hash[:16]}{weights}")


def _plan_wide(plan: Plan) -> Table:
    headers, rows = _plan_rows(plan)
    keep = [i for i, h in enumerate(headers) if h != "grid" or any(row[i] for row in rows)]
    table = Table(title=_plan_title(plan), title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for i in keep:
        table.add_column(headers[i], no_wrap=True)
    for row in rows:
        table.add_row(*(row[i] for i in keep))
    return table


def _plan_narrow(plan: Plan, width: int) -> Group:
    """Columns every run shares go to one line; one block per sweep with the columns that vary."""
    from runner.cli.fit import grid_or_lines

    headers, rows = _plan_rows(plan)
    shared = {i: rows[0][i] for i in range(1, len(headers)) if len({row[i] for row in rows}) == 1}
    parts: list = [Text(_plan_title(plan))]
    same = ", ".join(f"{headers[i]} {v}" for i, v in shared.items() if v and headers[i] != "sweep")
    if same:
        parts.append(Text(f"every run: {same}"))
    keep = [i for i in range(len(headers)) if i not in shared and headers[i] != "sweep"]
    for sweep in dict.fromkeys(row[1] for row in rows):
        block = [[row[i] for i in keep] for row in rows if row[1] == sweep]
        if 1 not in shared or sweep != "main":
            parts.append(Text(f"sweep {sweep}: {len(block)} runs"))
        parts.append(grid_or_lines([headers[i] for i in keep], block, width, right=("rep", "seed", "batch", "lr",
                                                                                   "epochs"), indent=1))
    return Group(*parts)


def plan_view(plan: Plan) -> Fit:
    """The plan as a table where the console is wide enough, else as blocks per sweep (80 columns)."""
    return Fit(lambda: _plan_wide(plan), lambda width: _plan_narrow(plan, width))


def plan_markdown(plan: Plan) -> str:
    from runner.audit.render import markdown_table

    headers, rows = _plan_rows(plan)
    return f"# {_plan_title(plan)}\n\n" + markdown_table(headers, rows) + "\n"


def plan_table(plan: Plan, out: Console | None = None) -> None:
    (out or Console()).print(plan_view(plan))


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
