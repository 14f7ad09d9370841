"""`runner images ...`: the pinned framework images. Thin: parse flags, call runner.images, print.

Errors are RunnerErrors and propagate to the one mapping in runner.cli.main.
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from runner.images.catalog import Catalog, CatalogEntry

app = typer.Typer(help="Build, lock, verify, export and import the pinned framework images.",
                  no_args_is_help=True)

CatalogOpt = Annotated[
    Path | None, typer.Option("--catalog", help="Image catalog (default: images/images.toml of this checkout).")
]
BaseOpt = Annotated[
    list[str] | None,
    typer.Option("--base", help="Base image instead of the catalog's pinned one: IMAGE for every entry, or "
                                "PLATFORM=IMAGE (e.g. linux/ppc64le=local/debian:bookworm-ppc64le); repeatable."),
]
NamesArg = Annotated[list[str] | None, typer.Argument(help="Catalog names (default: every buildable entry).")]
NameArg = Annotated[str, typer.Argument(help="Catalog name, e.g. pytorch-cpu.")]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of a table.")]


class StoreChoice(StrEnum):
    docker = "docker"
    podman = "podman"


StoreOpt = Annotated[StoreChoice, typer.Option(
    "--engine", help="Whose image storage: Docker's, or podman's own (where podman runs without Docker).")]


def _err_console():
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def _log(console):
    def log(line: str) -> None:
        console.print(line, markup=False, style="dim", soft_wrap=True)

    return log


def parse_bases(values: list[str] | None) -> dict[str | None, str]:
    """--base values -> {platform or None (every platform): image}."""
    from runner.errors import UsageError
    from runner.images.catalog import PLATFORMS

    bases: dict[str | None, str] = {}
    for value in values or []:
        platform, sep, image = value.partition("=")
        key = platform if sep else None
        image = image if sep else value
        if sep and platform not in PLATFORMS:
            raise UsageError(f"unknown platform {platform!r} in --base {value}", field="--base",
                             fix=f"use one of: {', '.join(PLATFORMS)}, or a bare IMAGE")
        if not image:
            raise UsageError(f"--base {value} names no image", field="--base", fix="write --base [PLATFORM=]IMAGE")
        if key in bases:
            raise UsageError(f"--base given twice for {key or 'every platform'}", field="--base",
                             fix="give one --base per platform")
        bases[key] = image
    return bases


def _base_for(entry: CatalogEntry, bases: dict[str | None, str]) -> str | None:
    return bases.get(entry.platform) or bases.get(None)


def _selected(catalog: Catalog, names: list[str] | None) -> list[CatalogEntry]:
    if names:
        return [catalog.get(n) for n in names]
    return [e for e in catalog if e.buildable]


def _connect():
    from runner.engine.docker_client import connect

    return connect()


def _podman():
    from runner.engine.podman_engine import PodmanEngine

    return PodmanEngine.connect()


def _store(engine: StoreChoice):
    """The image pipeline's store for --engine: Docker's storage, or podman's own."""
    if engine is StoreChoice.podman:
        from runner.images.podman_store import PodmanStore

        return PodmanStore(_podman())
    from runner.images.store import DockerStore

    return DockerStore(_connect())


@app.command("list")
def list_images(catalog: CatalogOpt = None, as_json: JsonFlag = False,
                engine: StoreOpt = StoreChoice.docker) -> None:
    """Catalog vs engine: present, missing, or stale (lockfile or catalog entry changed since the build)."""
    from runner.images.catalog import load_catalog
    from runner.images.inspect import state_of

    cat = load_catalog(catalog)
    store = _store(engine)
    states = [state_of(e, store.attrs(e.tag)) for e in cat]
    if as_json:
        typer.echo(json.dumps([{
            "name": s.entry.name, "tag": s.entry.tag, "framework": s.entry.framework,
            "framework_version": s.entry.framework_version, "variant": s.entry.variant,
            "platform": s.entry.platform, "recipe": s.entry.recipe, "status": s.status,
            "image_id": s.image_id, "size": s.size, "reasons": list(s.reasons), "note": s.entry.note,
        } for s in states], indent=2))
        return
    from rich import box
    from rich.console import Console
    from rich.table import Table

    style = {"present": "green", "missing": "yellow", "stale": "red"}
    table = Table(title=f"images in {cat.path} ({engine.value})", title_justify="left", box=box.SIMPLE_HEAD,
                  pad_edge=False)
    for col in ("name", "version", "status", "image id", "size"):
        table.add_column(col, justify="right" if col == "size" else "left", no_wrap=True)
    notes = []
    for s in states:
        status = f"[{style[s.status]}]{s.status}[/]"
        if s.status == "missing" and not s.entry.buildable:
            status = f"[dim]{s.entry.recipe} recipe[/]"
        if s.reasons:
            notes.append(f"{s.entry.name}: {'; '.join(s.reasons)}")
        size = f"{s.size / 1e9:.2f}G" if s.size else ""
        table.add_row(s.entry.name, s.entry.framework_version, status, (s.image_id or "")[7:19], size)
    console = Console()
    console.print(table)
    for note in notes:
        console.print(f"stale {note}", markup=False, highlight=False)


@app.command("lock")
def lock(names: NamesArg = None, base: BaseOpt = None, catalog: CatalogOpt = None,
         engine: StoreOpt = StoreChoice.docker) -> None:
    """Resolve entries with the host's pip and apt-in-the-base, and (re)write their lockfiles."""
    from runner.images.catalog import load_catalog
    from runner.images.lock import lock_image

    cat = load_catalog(catalog)
    bases = parse_bases(base)
    entries = _selected(cat, names)
    store = _store(engine)
    console = _err_console()
    for entry in entries:
        locked = lock_image(store, entry, _base_for(entry, bases), log=_log(console))
        typer.echo(f"locked {entry.name}: {len(locked.pip)} wheels, {len(locked.debian)} Debian packages, "
                   f"sha256 {locked.sha256} -> {locked.path}")
    skipped = [e.name for e in cat if not e.buildable and not names]
    if skipped:
        console.print(f"not locked here (conda recipes, see docs/images.md): {', '.join(skipped)}")


@app.command("build")
def build(names: NamesArg = None, base: BaseOpt = None, catalog: CatalogOpt = None,
          no_cache: Annotated[bool, typer.Option("--no-cache", help="Ignore the engine's layer cache.")] = False,
          engine: StoreOpt = StoreChoice.docker) -> None:
    """Build images hermetically from their lockfiles (wheels fetched on the host, pip step offline)."""
    from runner.images.build import build_image
    from runner.images.catalog import load_catalog

    cat = load_catalog(catalog)
    bases = parse_bases(base)
    entries = _selected(cat, names)
    store = _store(engine)
    console = _err_console()
    for entry in entries:
        console.rule(f"{entry.name} ({entry.platform}, {store.name})")
        image_id = build_image(store, entry, base=_base_for(entry, bases), nocache=no_cache, log=_log(console))
        typer.echo(f"built {entry.name}: {image_id} ({entry.tag})")


@app.command("verify")
def verify(name: NameArg, catalog: CatalogOpt = None, as_json: JsonFlag = False,
           engine: StoreOpt = StoreChoice.docker) -> None:
    """Check the image against the catalog and lockfile: labels, platform, pip freeze, Debian packages."""
    from runner.errors import CheckFailed
    from runner.images.catalog import load_catalog
    from runner.images.verify import verify_image

    entry = load_catalog(catalog).get(name)
    store = _store(engine)
    report = verify_image(store, entry)
    if as_json:
        typer.echo(json.dumps({"name": name, "image_id": report.image_id, "ok": report.ok,
                               "checks": [c.__dict__ for c in report.checks]}, indent=2))
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"verify {entry.tag} ({report.image_id[7:19]})", title_justify="left")
        for col in ("check", "result", "detail"):
            table.add_column(col)
        for c in report.checks:
            table.add_row(c.name, "[green]ok[/]" if c.ok else "[red bold]FAIL[/]", c.detail)
        Console().print(table)
    if not report.ok:
        first = report.failures[0]
        raise CheckFailed(f"{len(report.failures)} check(s) failed, first: {first.name}: {first.detail}",
                          field=name, fix=f"rebuild it: runner images build {name}{store.engine_flag}")


@app.command("export")
def export(name: NameArg,
           out: Annotated[Path, typer.Option("--out", help="Tarball to write (docker-archive); never overwritten.")],
           catalog: CatalogOpt = None, engine: StoreOpt = StoreChoice.docker) -> None:
    """Save an image as a docker-archive tarball, atomically, with its sha256 beside it."""
    from runner.images.catalog import load_catalog

    entry = load_catalog(catalog).get(name)
    if engine is StoreChoice.podman:
        from runner.images.podman_store import export_from_podman

        result = export_from_podman(_podman(), entry.tag, out)
    else:
        from runner.images.archive import export_image

        result = export_image(_connect(), entry.tag, out)
    typer.echo(f"exported {entry.tag} ({result.image_id}) to {result.path}: {result.size / 1e9:.2f} GB")
    typer.echo(f"sha256 {result.sha256}  (written to {result.path.name}.sha256)")


@app.command("import")
def import_(file: Annotated[Path, typer.Argument(help="Tarball written by `runner images export`.")],
            expect_id: Annotated[str | None, typer.Option("--expect-id", help="Refuse unless the image id is this "
                                                          "(sha256:...).")] = None,
            engine: StoreOpt = StoreChoice.docker) -> None:
    """Load an image tarball; refuses (and loads nothing) if its id is not --expect-id or it fails a check."""
    if engine is StoreChoice.podman:
        from runner.images.podman_store import import_into_podman

        result = import_into_podman(_podman(), file, expect_id)
    else:
        from runner.images.archive import import_image

        result = import_image(_connect(), file, expect_id)
    tags = ", ".join(result.tags) or "no tags"
    typer.echo(f"imported {result.image_id} ({tags})")
