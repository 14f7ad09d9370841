"""A report as terminal tables (rich), Markdown, CSV, Parquet and one self-contained HTML page."""

from __future__ import annotations

import base64
import csv
import html
import io
import json
from pathlib import Path
from typing import TYPE_CHECKING

from runner.report.model import ReportTable, flat_rows, fmt_text
from runner.report.stats import CI_METHOD

if TYPE_CHECKING:
    from rich.table import Table

    from runner.report.tables import Report


def rich_table(table: ReportTable) -> Table:
    from rich import box
    from rich.table import Table
    from rich.text import Text

    out = Table(title=table.title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False,
                caption="; ".join(table.notes) or None, caption_justify="left")
    columns = table.visible_columns()
    for col in columns:
        out.add_column(col.header, overflow="fold", justify="right" if col.kind != "text" else "left")
    for row in table.rows:
        style = "italic cyan" if str(row.get("source", "")).startswith("reported") else None
        out.add_row(*(Text(fmt_text(row, c)) for c in columns), style=style)
    return out


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_table(table: ReportTable) -> str:
    columns = table.visible_columns()
    lines = [f"### {table.title}", "",
             "| " + " | ".join(_md(c.header) for c in columns) + " |",
             "|" + "|".join("---:" if c.kind != "text" else "---" for c in columns) + "|"]
    for row in table.rows:
        cells = [_md(fmt_text(row, c)) for c in columns]
        if str(row.get("source", "")).startswith("reported"):
            cells = [f"*{c}*" if c else c for c in cells]
        lines.append("| " + " | ".join(cells) + " |")
    if table.notes:
        lines += ["", *(f"- {_md(n)}" for n in table.notes)]
    return "\n".join(lines) + "\n"


def report_markdown(report: Report, plots: dict[str, str] | None = None) -> str:
    parts = ["# Framework comparison", "", "Bundles:", ""]
    parts += [f"- `{b['name']}` ({b['experiment']}, {b['runs']} runs, spec {str(b['spec_sha256'])[:12]})"
              for b in report.bundles]
    parts += ["", f"Statistics: {CI_METHOD}. Only runs that ended ok are counted.", ""]
    parts += [f"- {n}" for n in report.notes]
    for table in report.tables:
        parts += ["", markdown_table(table)]
        if plots and table.name in plots:
            parts += [f"![{table.title}]({plots[table.name]})", ""]
    return "\n".join(parts)


def write_csv(table: ReportTable, path: Path) -> None:
    names, rows = flat_rows(table)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=names, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
    path.write_text(buf.getvalue(), encoding="utf-8")


def write_parquet(table: ReportTable, path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    names, rows = flat_rows(table)
    units = {c.key: c.unit for c in table.columns}
    columns = {n: [r.get(n) for r in rows] for n in names}
    arrays = {}
    for name, values in columns.items():
        try:
            arrays[name] = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            arrays[name] = pa.array([None if v is None else str(v) for v in values], pa.string())
    fields = [pa.field(name, arr.type if arr.type != pa.null() else pa.string(),
                       metadata={b"unit": _unit_of(name, units).encode()}) for name, arr in arrays.items()]
    schema = pa.schema(fields, metadata={b"table": table.name.encode(), b"title": table.title.encode(),
                                         b"notes": json.dumps(table.notes).encode()})
    pq.write_table(pa.table([arrays[f.name].cast(f.type) for f in fields], schema=schema), path)


_STAT_SUFFIXES = ("_median", "_mean", "_std", "_ci_low", "_ci_high", "_n", "_within_noise")


def _unit_of(name: str, units: dict[str, str]) -> str:
    if name in units:
        return units[name]
    for suffix in _STAT_SUFFIXES:
        if name.endswith(suffix):
            return "" if suffix in ("_n", "_within_noise") else units.get(name[: -len(suffix)], "")
    return ""


def report_html(report: Report, pngs: dict[str, bytes]) -> str:
    """One page, nothing fetched: styles inline, figures as base64 data URIs."""
    esc = html.escape
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>Framework comparison</title><style>",
             "body{font-family:system-ui,sans-serif;margin:2em;max-width:1400px}"
             "table{border-collapse:collapse;margin:1em 0;font-size:13px}"
             "td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}td.t,th.t{text-align:left}"
             "tr.ref{font-style:italic;color:#06c}caption{caption-side:bottom;text-align:left;color:#555}"
             "img{max-width:100%}",
             "</style></head><body><h1>Framework comparison</h1><ul>"]
    parts += [f"<li><code>{esc(b['name'])}</code>: {esc(str(b['experiment']))}, {b['runs']} runs</li>"
              for b in report.bundles]
    parts.append(f"</ul><p>{esc(CI_METHOD)}. Only runs that ended ok are counted.</p>")
    parts += [f"<p>{esc(n)}</p>" for n in report.notes]
    for table in report.tables:
        columns = table.visible_columns()
        parts.append(f"<h2>{esc(table.title)}</h2><table><thead><tr>")
        parts += [f"<th class='{'t' if c.kind == 'text' else ''}'>{esc(c.header)}</th>" for c in columns]
        parts.append("</tr></thead><tbody>")
        for row in table.rows:
            cls = " class='ref'" if str(row.get("source", "")).startswith("reported") else ""
            parts.append(f"<tr{cls}>" + "".join(
                f"<td class='{'t' if c.kind == 'text' else ''}'>{esc(fmt_text(row, c))}</td>" for c in columns)
                + "</tr>")
        parts.append(f"</tbody><caption>{esc('; '.join(table.notes))}</caption></table>")
        if table.name in pngs:
            data = base64.b64encode(pngs[table.name]).decode()
            parts.append(f"<p><img alt='{esc(table.title)}' src='data:image/png;base64,{data}'></p>")
    parts.append("</body></html>\n")
    return "".join(parts)
