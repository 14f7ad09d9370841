"""PNG figures of a report's tables (matplotlib, Agg backend: no display needed).

Drawn from the report tables themselves, so a figure never shows a number the tables do not:
lines with 95% CI bars for throughput vs batch size and accuracy per epoch, grouped bars for
final accuracy, latency and time to target. Study references are hollow markers.
"""

from __future__ import annotations

import io
from typing import Any

from runner.errors import RunnerError
from runner.report.model import Cell, ReportTable
from runner.report.tables import Report

# A figure stays a figure whatever the bundle holds (an edited one may hold a 10,000-character grid
# point, a sweep may hold hundreds of configurations): labels are cut for display (the groups keep
# their full labels, so none merge), and a figure draws at most this many panels or bar groups, its
# title saying so. The tables (Markdown, CSV, HTML) keep everything.
MAX_LABEL = 80
MAX_PANELS = 12
MAX_GROUPS = 40

_CONFIG_KEYS = ("experiment", "model", "dataset", "variant", "accelerator", "sweep", "epochs", "batch_size",
                "optimizer", "lr", "params_json")


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise RunnerError("plots need matplotlib, which is not installed",
                          fix="pip install 'runner[report]', or pass --no-plots") from None
    return plt


def _label(row: dict[str, Any], table: ReportTable, skip: tuple[str, ...]) -> str:
    """The configuration fields that vary between the table's own rows, as `k=v, ...`."""
    ours = [r for r in table.rows if not _is_ref(r)]
    keys = [c.key for c in table.columns if c.key in _CONFIG_KEYS and c.key not in skip
            and len({str(r.get(c.key)) for r in ours}) > 1]
    return ", ".join(f"{k}={row.get(k)}" for k in keys if row.get(k) not in (None, ""))


def _shown(label: str) -> str:
    return label if len(label) <= MAX_LABEL else label[:MAX_LABEL - 1] + "\u2026"


def _title(title: str, drawn: int, total: int, what: str) -> str:
    return title if drawn == total else f"{title} (the first {drawn} of {total} {what}; all in the table)"


def _is_ref(row: dict[str, Any]) -> bool:
    return str(row.get("source", "")).startswith("reported")


def _err(cell: Cell) -> tuple[float, float]:
    s = cell.stat
    if s is None or s.ci_low is None or s.ci_high is None:
        return 0.0, 0.0
    return max(s.median - s.ci_low, 0.0), max(s.ci_high - s.median, 0.0)


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    return buf.getvalue()


def _lines(table: ReportTable, frameworks: list[str], x_key: str, metric: str, xlabel: str, ylabel: str,
           panel_skip: tuple[str, ...], logx: bool = False, scale: float = 1.0) -> bytes | None:
    plt = _pyplot()
    panels: dict[str, dict[tuple[str, bool], list[tuple[float, float, float, float]]]] = {}
    for row in table.rows:
        if row.get(x_key) is None:
            continue
        panel = _label(row, table, (x_key, *panel_skip))
        for fw in frameworks:
            cell = row.get(f"{fw}|{metric}")
            if not isinstance(cell, Cell) or cell.point is None:
                continue
            lo, hi = _err(cell)
            panels.setdefault(panel, {}).setdefault((fw, _is_ref(row)), []).append(
                (float(row[x_key]), cell.point * scale, lo * scale, hi * scale))
    if not panels:
        return None
    drawn = sorted(panels.items())[:MAX_PANELS]
    n = len(drawn)
    fig, axes = plt.subplots(1, n, figsize=(5 * n, 3.6), squeeze=False)
    if n < len(panels):
        fig.suptitle(_title(table.title, n, len(panels), "configurations"), fontsize=10)
    for ax, (panel, series) in zip(axes[0], drawn, strict=True):
        for (fw, ref), points in sorted(series.items()):
            points.sort()
            xs, ys = [p[0] for p in points], [p[1] for p in points]
            if ref:
                ax.plot(xs, ys, "o", mfc="none", label=f"{fw} (study)")
            else:
                ax.errorbar(xs, ys, yerr=[[p[2] for p in points], [p[3] for p in points]], marker="o", capsize=3,
                            label=fw)
        if logx:
            ax.set_xscale("log", base=2)
            ticks = sorted({p[0] for points in series.values() for p in points})
            ax.set_xticks(ticks)
            ax.set_xticklabels([f"{t:g}" for t in ticks])
            ax.minorticks_off()
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(_shown(panel) or table.title, fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    data = _png(fig)
    plt.close(fig)
    return data


def _bars(table: ReportTable, frameworks: list[str], metric: str, ylabel: str, skip: tuple[str, ...] = (),
          scale: float = 1.0, long: bool = False) -> bytes | None:
    """Grouped bars: one group per row label, one bar per framework (`long`: a row per framework)."""
    plt = _pyplot()
    groups: dict[str, dict[str, tuple[float, float, float]]] = {}
    refs: dict[str, dict[str, float]] = {}
    for row in table.rows:
        label = _label(row, table, skip) + (f" b{row['latency_batch']}" if row.get("latency_batch") else "")
        cells = {row.get("framework"): row.get(metric)} if long else {fw: row.get(f"{fw}|{metric}")
                                                                        for fw in frameworks}
        for fw, cell in cells.items():
            if not isinstance(cell, Cell) or cell.point is None:
                continue
            if _is_ref(row):
                refs.setdefault(label, {})[fw] = cell.point * scale
            else:
                lo, hi = _err(cell)
                groups.setdefault(label, {})[fw] = (cell.point * scale, lo * scale, hi * scale)
    if not groups:
        return None
    labels = list(groups)[:MAX_GROUPS]
    width = 0.8 / max(len(frameworks), 1)
    fig, ax = plt.subplots(figsize=(max(5.0, 1.2 * len(labels) * max(len(frameworks), 1) * 0.6 + 2), 3.8))
    for i, fw in enumerate(frameworks):
        xs = [j + (i - (len(frameworks) - 1) / 2) * width for j in range(len(labels))]
        vals = [groups[lb].get(fw, (0.0, 0.0, 0.0)) for lb in labels]
        ax.bar(xs, [v[0] for v in vals], width, yerr=[[v[1] for v in vals], [v[2] for v in vals]], capsize=3,
               label=fw)
        rx = [x for x, lb in zip(xs, labels, strict=True) if fw in refs.get(lb, {})]
        ry = [refs[lb][fw] for lb in labels if fw in refs.get(lb, {})]
        if rx:
            ax.plot(rx, ry, "D", mfc="none", color="black", label=f"{fw} (study)")
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels([_shown(lb) or "all" for lb in labels], rotation=20, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(_title(table.title, len(labels), len(groups), "configurations"), fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    data = _png(fig)
    plt.close(fig)
    return data


def report_plots(report: Report) -> dict[str, bytes]:
    """table name -> PNG bytes, for the tables that have something to draw."""
    fws = report.frameworks
    out: dict[str, bytes | None] = {}
    for table in report.tables:
        if table.name == "summary":
            out["summary"] = _bars(table, fws, "final_test_accuracy", "final test accuracy (%)", scale=100,
                                   long=True, skip=("framework",))
        elif table.name == "throughput":
            out["throughput"] = _lines(table, fws, "batch_size", "images_per_s", "mini-batch size", "images/s",
                                       ("epoch",), logx=True)
        elif table.name == "accuracy_by_epoch":
            out["accuracy_by_epoch"] = _lines(table, fws, "epoch", "test_accuracy", "epoch", "test accuracy (%)",
                                              (), scale=100)
        elif table.name == "latency":
            out["latency"] = _bars(table, fws, "per_image_ms", "ms per image (p50)")
        elif table.name == "time_to_target":
            out["time_to_target"] = _bars(table, fws, "time_to_target_s", "seconds to target")
        elif table.name == "energy":
            out["energy"] = _bars(table, fws, "energy_per_epoch_j", "J per epoch")
    return {k: v for k, v in out.items() if v is not None}
