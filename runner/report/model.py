"""The value objects of a report: a table of columns and rows whose statistic cells know how to print.

Kept free of any rendering library, so building a report costs no imports of rich or matplotlib.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from runner.report.stats import Stat

NOISE_MARK = "≈"


@dataclass(frozen=True)
class Cell:
    """A statistic of our runs, or a single reported number (a reference, or one run)."""

    stat: Stat | None = None
    value: float | None = None  # a reference's number
    within_noise: bool | None = None  # the framework gap here is within the seed-to-seed noise

    @property
    def point(self) -> float | None:
        return self.stat.median if self.stat is not None else self.value


@dataclass(frozen=True)
class Column:
    key: str
    header: str
    unit: str = ""  # as in the bundle schemas: fraction, images/s, s, ms, J, parameters, ...
    kind: str = "text"  # text | cell | int | number


@dataclass
class ReportTable:
    name: str  # file stem: summary, throughput, accuracy_by_epoch, latency, time_to_target, energy
    title: str
    columns: list[Column]
    rows: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    hidden: list[str] = field(default_factory=list)  # row keys written to CSV/Parquet but not displayed

    def visible_columns(self) -> list[Column]:
        """The columns to display: `source` only when a reference row is there to tell apart."""
        refs = any(r.get("source") not in (None, "ours") for r in self.rows)
        return [c for c in self.columns if c.key != "source" or refs]


def fmt_number(value: float | int | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "fraction":
        return f"{100 * value:.2f}%"
    if unit in ("parameters", "FLOP", "images", "count", "bytes") or isinstance(value, int):
        return f"{int(value):,}"
    if unit == "images/s":
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
    if unit in ("s", "J", "ms"):
        return f"{value:,.1f}" if abs(value) >= 100 else f"{value:.3g}"
    return f"{value:.4g}"


def fmt_cell(cell: Cell | None, unit: str, with_ci: bool = True) -> str:
    if cell is None:
        return "-"
    if cell.stat is None:
        return fmt_number(cell.value, unit) if cell.value is not None else "-"
    s = cell.stat
    text = fmt_number(s.median, unit)
    if with_ci and s.ci_low is not None and s.ci_high is not None:
        lo, hi = fmt_number(s.ci_low, unit), fmt_number(s.ci_high, unit)
        if unit == "fraction":
            lo, hi = lo.rstrip("%"), hi.rstrip("%")
        text += f" [{lo}, {hi}]"
    if s.n > 1:
        text += f" n={s.n}"
    if cell.within_noise:
        text += f" {NOISE_MARK}"
    return text


def fmt_text(row: dict[str, Any], col: Column) -> str:
    value = row.get(col.key)
    if col.kind == "cell":
        return fmt_cell(value, col.unit)
    if value is None or value == "":
        return ""
    if col.kind in ("int", "number"):
        return fmt_number(value, col.unit)
    return str(value)


def flat_rows(table: ReportTable) -> tuple[list[str], list[dict[str, Any]]]:
    """Machine-readable rows: each statistic cell becomes <key>_median, _mean, _ci_low, _ci_high, _n,
    _within_noise (a reference's number goes to <key>_median with n empty)."""
    names: list[str] = list(table.hidden)
    for col in table.columns:
        if col.kind == "cell":
            names += [f"{col.key}_{s}" for s in ("median", "mean", "std", "ci_low", "ci_high", "n", "within_noise")]
        else:
            names.append(col.key)
    out = []
    for row in table.rows:
        flat: dict[str, Any] = {k: row.get(k) for k in table.hidden}
        for col in table.columns:
            value = row.get(col.key)
            if col.kind != "cell":
                flat[col.key] = value
                continue
            s = value.stat if isinstance(value, Cell) else None
            flat.update({
                f"{col.key}_median": value.point if isinstance(value, Cell) else None,
                f"{col.key}_mean": s.mean if s else None, f"{col.key}_std": s.std if s else None,
                f"{col.key}_ci_low": s.ci_low if s else None, f"{col.key}_ci_high": s.ci_high if s else None,
                f"{col.key}_n": s.n if s else None,
                f"{col.key}_within_noise": value.within_noise if isinstance(value, Cell) else None,
            })
        out.append(flat)
    return names, out
