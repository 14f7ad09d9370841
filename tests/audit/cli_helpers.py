"""Register this issue's commands on the real app for tests, until runner.cli.main does it itself."""

from __future__ import annotations


def ensure_registered() -> None:
    from runner.cli import bundle, report
    from runner.cli.main import app

    if "bundle" not in {g.name for g in app.registered_groups}:
        app.add_typer(bundle.app, name="bundle")
    names = {c.name for c in app.registered_commands}
    for name, func in (("compare", report.compare), ("report", report.report), ("keygen", report.keygen)):
        if name not in names:
            app.command(name)(func)
