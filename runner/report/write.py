"""`runner report`: every table and figure of a comparison written into one new folder.

    <out>/report.md, report.html (self-contained), sources.json
    <out>/tables/<name>.csv and <name>.parquet (statistics expanded into columns)
    <out>/plots/<name>.png

The folder is written under a staging name and renamed into place at the end; an existing
folder is never overwritten.
"""

from __future__ import annotations

import json
from pathlib import Path

from runner.publish.files import staged_folder
from runner.report.load import load_bundles
from runner.report.output import report_html, report_markdown, write_csv, write_parquet
from runner.report.tables import Report, build_report


def compare_bundles(paths: list[Path]) -> Report:
    """The report of some bundles, in memory (what `runner compare` prints)."""
    return build_report(load_bundles(paths))


def write_report(paths: list[Path], out: Path, plots: bool = True) -> tuple[Path, Report]:
    report = compare_bundles(paths)
    pngs: dict[str, bytes] = {}
    if plots:
        from runner.report.plots import report_plots

        pngs = report_plots(report)
    with staged_folder(out) as stage:
        (stage / "tables").mkdir()
        for table in report.tables:
            write_csv(table, stage / "tables" / f"{table.name}.csv")
            write_parquet(table, stage / "tables" / f"{table.name}.parquet")
        links = {}
        if pngs:
            (stage / "plots").mkdir()
            for name, data in pngs.items():
                (stage / "plots" / f"{name}.png").write_bytes(data)
                links[name] = f"plots/{name}.png"
        (stage / "report.md").write_text(report_markdown(report, links), encoding="utf-8")
        (stage / "report.html").write_text(report_html(report, pngs), encoding="utf-8")
        (stage / "sources.json").write_text(json.dumps({"bundles": report.bundles}, indent=1) + "\n",
                                            encoding="utf-8")
        for path in stage.rglob("*"):
            path.chmod(0o755 if path.is_dir() else 0o644)
    return out, report
