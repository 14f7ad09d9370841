"""Rich tables and Markdown for verification results, provenance diffs and reproduction reports."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from rich import box
from rich.console import Group, RenderableType
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from runner.audit.diff import GROUPS, DiffItem, MetricDelta, short
from runner.cli.fit import Fit

if TYPE_CHECKING:
    from runner.audit.reproduction import Check, ReproductionReport
    from runner.audit.verify import VerifyResult

_VERDICT_STYLE = {"pass": "green", "miss": "red bold", "missing": "red", "skip": "dim"}
_GROUP_TEXT = dict(GROUPS)


def verify_table(result: VerifyResult) -> Table:
    table = Table(title=f"verify {result.path}", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("file", overflow="fold")
    table.add_column("problem", no_wrap=True)
    table.add_column("detail", overflow="fold")
    for p in result.problems:
        table.add_row(Text(p.path), Text(p.kind, style="red"), Text(p.detail))
    return table


def diff_table(items: list[DiffItem], title: str, limit: int | None = None) -> Fit:
    """Provenance differences: a table where it fits unwrapped, else one block per field (80 columns)."""
    shown = items[:limit]
    return Fit(lambda: _diff_wide(shown, title), lambda width: _diff_blocks(shown, title))


def _diff_field(item: DiffItem) -> str:
    return item.field + (f" ({len(item.runs)} run{'s' * (len(item.runs) > 1)})" if item.runs else "")


def _diff_wide(items: list[DiffItem], title: str) -> Table:
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for col in ("rank", "group", "field", "A", "B"):
        table.add_column(col, no_wrap=True)
    for item in items:
        a, b = item.text(48)
        table.add_row(str(item.rank), item.group, Text(_diff_field(item)), Text(a), Text(b))
    return table


def _diff_blocks(items: list[DiffItem], title: str) -> Group:
    parts: list[RenderableType] = [Text(title)]
    for item in items:
        a, b = item.text(200)
        parts += [Text(f"{item.rank} {item.group}: {_diff_field(item)}"),
                  Padding(Text(f"A: {a}"), (0, 0, 0, 2)), Padding(Text(f"B: {b}"), (0, 0, 0, 2))]
    return Group(*parts)


def deltas_table(deltas: list[MetricDelta], title: str) -> Fit:
    """Metrics that differ: a table where it fits unwrapped, else one block per run pair (80 columns)."""
    changed = [d for d in deltas if d.a != d.b]
    return Fit(lambda: _deltas_wide(changed, title), lambda width: _deltas_blocks(changed, title, width))


def _delta_text(d: MetricDelta) -> str:
    if d.delta is None:
        return ""
    return f"{d.delta:+.4g}" + (f" ({d.relative:+.1%})" if d.relative else "")


def _deltas_wide(deltas: list[MetricDelta], title: str) -> Table:
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for col in ("run A", "run B", "framework", "metric", "A", "B", "delta"):
        table.add_column(col, no_wrap=True, justify="right" if col in ("A", "B", "delta") else "left")
    for d in deltas:
        table.add_row(d.run_a, d.run_b if d.run_b != d.run_a else "=", d.framework, d.metric, _value(d.a),
                      _value(d.b), _delta_text(d))
    return table


def _deltas_blocks(deltas: list[MetricDelta], title: str, width: int) -> Group:
    from runner.cli.fit import grid_or_lines

    parts: list[RenderableType] = [Text(title)]
    pairs: dict[tuple[str, str], list[MetricDelta]] = {}
    for d in deltas:
        pairs.setdefault((d.run_a, d.run_b), []).append(d)
    for (run_a, run_b), group in pairs.items():
        other = f" (B: {run_b})" if run_b != run_a else ""
        parts.append(Text(f"{run_a} {group[0].framework}{other}"))
        rows = [[d.metric, _value(d.a, 14), _value(d.b, 14), _delta_text(d)] for d in group]
        parts.append(grid_or_lines(["metric", "A", "B", "delta"], rows, width, right=("A", "B", "delta"), indent=1))
    return Group(*parts)


def _value(v: object, width: int = 24) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return short(v, width) if v is not None else "-"


def reproduction_table(report: ReproductionReport, only_misses: bool = False) -> Fit:
    """The verdict: one table where the console is wide enough, else one block per run (80 columns)."""
    checks = [c for c in report.checks if not only_misses or c.verdict in ("miss", "missing")]
    return Fit(lambda: _reproduction_wide(report, checks), lambda width: _reproduction_blocks(report, checks))


def _detail(c: Check) -> str:
    return "; ".join(part for part in (c.detail, c.cause) if part)


def _reproduction_wide(report: ReproductionReport, checks: list[Check]) -> Table:
    table = Table(title=f"reproduction of {report.original.name}", title_justify="left", box=box.SIMPLE_HEAD,
                  pad_edge=False)
    for col in ("run", "framework", "metric", "original", "new", "tolerance", "verdict", "detail"):
        table.add_column(col, no_wrap=col != "detail")
    for c in checks:
        table.add_row(c.run_id, c.framework, c.metric, _value(c.original), _value(c.new), c.tolerance,
                      Text(c.verdict, style=_VERDICT_STYLE[c.verdict]), Text(_detail(c)))
    return table


_NARROW_VALUE = 14  # characters of a value in the narrow form (numbers take at most 12)


def _reproduction_blocks(report: ReproductionReport, checks: list[Check]) -> Group:
    """Per run: a heading, then metric / original / new / verdict; a miss's tolerance and detail below it."""
    parts: list[RenderableType] = [Text(f"reproduction of {report.original.name}")]
    metric_w = max((len(c.metric) for c in checks), default=6)
    runs: dict[str, list[Check]] = {}
    for c in checks:
        runs.setdefault(c.run_id, []).append(c)
    for run_id, run_checks in runs.items():
        first = run_checks[0]
        counts = {v: sum(c.verdict == v for c in run_checks) for v in _VERDICT_STYLE}
        tally = ", ".join(f"{n} {v}" for v, n in counts.items() if n)
        renamed = f" (new run {first.new_run_id})" if first.new_run_id and first.new_run_id != run_id else ""
        parts += [Text(""), Text(f"{run_id} {first.framework}{renamed}: {tally}", style="bold")]
        rows = [(c, _value(c.original, _NARROW_VALUE), _value(c.new, _NARROW_VALUE)) for c in run_checks]
        value_w = max([len(o) for _, o, _ in rows] + [len(n) for _, _, n in rows] + [len("original")])
        parts.append(Text(f"  {'metric':<{metric_w}}  {'original':>{value_w}}  {'new':>{value_w}}  verdict",
                          style="dim"))
        for c, orig, new in rows:
            line = Text(f"  {c.metric:<{metric_w}}  {orig:>{value_w}}  {new:>{value_w}}  ")
            line.append(c.verdict.upper() if c.verdict in ("miss", "missing") else c.verdict,
                        style=_VERDICT_STYLE[c.verdict])
            parts.append(line)
            if c.verdict != "pass":
                why = "; ".join(p for p in (c.detail, f"tolerance {c.tolerance}" if c.tolerance != "-" else "",
                                            c.cause) if p)
                parts.append(Padding(Text(why, style="dim" if c.verdict == "skip" else ""), (0, 0, 0, 6)))
    return Group(*parts)


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_table(headers: list[str], rows: Iterable[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(_md_escape(str(c)) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _check_row(c: Check) -> list[str]:
    verdict = {"pass": "pass", "miss": "**MISS**", "missing": "**MISSING**", "skip": "skip"}[c.verdict]
    return [f"`{c.run_id}`", c.framework, c.metric, _value(c.original), _value(c.new), c.tolerance, verdict,
            _detail(c)]


def reproduction_markdown(report: ReproductionReport, max_provenance: int = 25) -> str:
    parts = [f"# Reproduction of `{report.original.name}`", "",
             f"- original: `{report.original}`", f"- new: `{report.new}`", f"- verdict: **{report.summary()}**", ""]
    if report.unmatched:
        parts += [f"Original runs with no counterpart: {', '.join(f'`{r}`' for r in report.unmatched)}", ""]
    parts += ["## Checks", "",
              markdown_table(["run", "framework", "metric", "original", "new", "tolerance", "verdict", "detail"],
                             (_check_row(c) for c in report.checks)), ""]
    if report.provenance:
        heading = "## What differs (most result-moving first)" if not report.ok else "## Provenance differences"
        parts += [heading, "",
                  markdown_table(["rank", "group", "field", "original", "new"],
                                 ([str(d.rank), d.group, d.field + (f" ({len(d.runs)} runs)" if d.runs else ""),
                                   *d.text(60)] for d in report.provenance[:max_provenance])), ""]
        if len(report.provenance) > max_provenance:
            parts += [f"... and {len(report.provenance) - max_provenance} more (`runner bundle diff`).", ""]
    else:
        parts += ["No provenance differences were recorded.", ""]
    return "\n".join(parts)


def group_legend() -> str:
    return "; ".join(f"{i + 1} {name}: {text}" for i, (name, text) in enumerate(GROUPS))
