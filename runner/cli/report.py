"""`runner compare`, `runner report` and `runner keygen`. Thin: parse, call the library, print."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

BundlesArg = Annotated[list[Path], typer.Argument(help="Bundle folders to compare, side by side.")]


class Format(StrEnum):
    table = "table"
    markdown = "markdown"


def compare(
    bundles: BundlesArg,
    fmt: Annotated[Format, typer.Option("--format", help="Terminal tables or Markdown.")] = Format.table,
    only: Annotated[list[str] | None, typer.Option("--table", help="Show only these tables (summary, "
                                                   "throughput, accuracy_by_epoch, latency, inference, time_to_target, "
                                                   "energy); repeatable.")] = None,
) -> None:
    """The studies' tables from bundles, frameworks side by side, with medians and 95% CIs."""
    from runner.errors import UsageError
    from runner.report.write import compare_bundles

    report = compare_bundles(bundles)
    tables = report.tables
    if only:
        unknown = sorted(set(only) - {t.name for t in tables})
        if unknown:
            raise UsageError(f"no table {', '.join(unknown)} in this report", field="--table",
                             fix=f"choose from: {', '.join(t.name for t in tables)}")
        tables = [t for t in tables if t.name in only]
    if fmt is Format.markdown:
        from runner.report.output import markdown_table

        typer.echo("\n".join(markdown_table(t) for t in tables))
        for note in report.notes:
            typer.echo(f"- {note}")
        return
    from rich.console import Console

    from runner.report.output import rich_table

    console = Console(highlight=False)
    for table in tables:
        console.print(rich_table(table))
    for note in report.notes:
        console.print(note, style="dim", markup=False)


def report(
    bundles: BundlesArg,
    out: Annotated[Path, typer.Option("--out", help="Folder to create for the report (never overwritten).")] = Path(
        "report"),
    no_plots: Annotated[bool, typer.Option("--no-plots", help="Tables only (no matplotlib).")] = False,
) -> None:
    """Write report/ : Markdown, CSV, Parquet, PNG plots and a self-contained HTML page."""
    from rich.console import Console

    from runner.report.write import write_report

    path, rep = write_report(bundles, out, plots=not no_plots)
    console = Console(highlight=False)
    console.print(f"[green]report[/] {path}: {len(rep.tables)} tables from {len(rep.bundles)} bundle(s); "
                  f"open {path / 'report.html'}")


def keygen(
    out: Annotated[Path, typer.Option("--out", help="Folder for the key pair (created if missing).")],
) -> None:
    """Create an Ed25519 key pair (PEM) for `runner bundle sign` and `verify --public-key`."""
    from runner.publish.sign import generate_keypair

    private, public, kid = generate_keypair(out)
    typer.echo(f"key {kid}: private {private} (keep it secret, mode 0600), public {public}")
