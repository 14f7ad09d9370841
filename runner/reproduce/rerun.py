"""`runner reproduce BUNDLE`: rerun a bundle exactly, then judge the new bundle against it.

Its spec, its bundled workload code, its images by recorded id (imported from archives when
given, else rebuilt from the lockfiles, with the difference said), the same seeds. Exit 0 only
when every run and metric reproduced within its declared tolerance.
"""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console

from runner.errors import BundleError, CheckFailed


def is_bundle(path: Path) -> bool:
    return path.is_dir() and (path / "manifest.json").is_file()


def _recorded_images(bundle: Path) -> dict[str, str]:
    import pyarrow.parquet as pq

    rows = pq.read_table(bundle / "tables" / "runs.parquet", columns=["framework", "image_id"]).to_pylist()
    return {r["framework"]: r["image_id"] for r in rows if r["image_id"]}


def _recorded_engine(bundle: Path) -> str:
    try:
        return json.loads((bundle / "environment" / "engine.json").read_text())["kind"]
    except (OSError, ValueError, KeyError):
        return "auto"


def load_rerun(bundle: Path):
    from runner.audit.verify import verify_bundle
    from runner.reproduce.session import Rerun

    result = verify_bundle(bundle)
    if not result.ok:
        raise BundleError(f"does not verify ({len(result.problems)} problems); it cannot be rerun as recorded",
                          file=bundle, fix=f"runner bundle verify {bundle}")
    return Rerun(bundle=bundle, code=bundle / "code", images=_recorded_images(bundle),
                 engine=_recorded_engine(bundle))


def reproduce_bundle(bundle: Path, opts, archives: list[Path], overrides: dict[str, str] | None = None,
                     console: Console | None = None) -> Path:
    from runner.audit.render import reproduction_table
    from runner.audit.reproduction import compare_runs
    from runner.reproduce.session import reproduce_spec

    console = console or Console()
    rerun = load_rerun(bundle)
    if overrides:
        import dataclasses

        console.print(f"[yellow]images overridden: {overrides}; differences will be reported[/]")
        rerun = dataclasses.replace(rerun, images=rerun.images | overrides)
    if archives:
        from runner.engine.docker_client import connect
        from runner.images.archive import import_image

        client = connect()
        for archive in archives:
            imported = import_image(client, archive)
            console.print(f"imported {archive}: {imported.image_id[:19]}")
    if opts.engine == "spec":
        opts.engine = rerun.engine
    console.print(f"rerunning {bundle} (engine {opts.engine}, its own code and recorded images)")
    new = reproduce_spec(bundle / "spec.yaml", opts, console=console, rerun=rerun)
    report = compare_runs(bundle, new)
    console.print(reproduction_table(report))
    (new.parent / f"{new.name}.reproduction.md").write_text(report.to_markdown())
    if not report.ok:
        raise CheckFailed(report.summary(), file=new, fix="read the provenance diff above")
    console.print(f"[green]reproduced[/]: {report.summary()}")
    return new
