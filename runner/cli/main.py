"""`runner`: the Typer application and the ONE place errors become exit codes.

Commands live in small modules and are registered explicitly below. Each command imports
what it needs inside its body, so `runner --help` stays fast and the host never imports a
deep-learning framework.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from runner import __version__
from runner.errors import RunnerError

app = typer.Typer(
    name="runner",
    help="Reproducible, containerized comparisons of deep-learning frameworks.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode="rich",
)

_state = {"debug": False}


def _version(value: bool) -> None:
    if value:
        typer.echo(f"runner {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
) -> None:
    _state["debug"] = debug


def _register() -> None:
    """The explicit command registry: every command and sub-app, by name."""
    from runner.cli import commands, report, reproduce

    app.command("reproduce")(reproduce.reproduce)
    app.command("run")(reproduce.run)
    app.command("plan")(commands.plan)
    app.command("doctor")(commands.doctor)
    app.command("models")(commands.models)
    app.command("compare")(report.compare)
    app.command("report")(report.report)
    app.command("keygen")(report.keygen)
    for name, module in (("data", "runner.cli.data"), ("images", "runner.cli.images"), ("bundle", "runner.cli.bundle"),
                         ("weights", "runner.cli.weights")):
        try:
            sub = __import__(module, fromlist=["app"]).app
        except ModuleNotFoundError as e:  # pragma: no cover - only while a sub-app is being built
            if e.name != module:
                raise
            continue
        app.add_typer(sub, name=name)


_register()


def _error_line(exc: BaseException) -> tuple[int, str]:
    """Map an exception to (exit code, one line). The single error-to-exit table."""
    if isinstance(exc, RunnerError):
        return exc.exit_code, f"error: {exc.describe()}"
    if isinstance(exc, typer.TyperException):  # typer's usage errors (bad flags): exit_code 2
        if not exc.format_message():  # no arguments at all: the help was shown, nothing failed
            return 0, ""
        ctx = getattr(exc, "ctx", None)
        hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
        return exc.exit_code, " ".join(f"error: {exc.format_message()}{hint}".split())
    if isinstance(exc, KeyboardInterrupt):
        return 130, "interrupted"
    if isinstance(exc, PermissionError):
        return 2, f"error: permission denied: {exc.filename or exc} (fix: check the path's permissions)"
    if isinstance(exc, OSError) and exc.errno == 28:
        return 2, f"error: no space left on device: {exc.filename or ''} (fix: free disk space)"
    return 1, f"internal error: {type(exc).__name__}: {exc} (rerun with --debug and report it)"


def main(argv: list[str] | None = None) -> None:
    """Console entry point."""
    args = sys.argv[1:] if argv is None else argv
    try:
        result = app(args=args, standalone_mode=False, prog_name="runner")
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except typer.Abort:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except BaseException as e:  # noqa: BLE001 - this IS the one place errors are mapped
        if isinstance(e, SystemExit):
            raise
        if _state["debug"] or "--debug" in args:
            import traceback

            traceback.print_exc()
        code, line = _error_line(e)
        if line:
            typer.echo(line, err=True)
        sys.exit(code)
    sys.exit(result if isinstance(result, int) else 0)
