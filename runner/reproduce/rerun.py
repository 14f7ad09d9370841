"""`runner reproduce BUNDLE`: rerun a bundle exactly, then judge the new bundle against it.

Its spec, its bundled workload code, its images by recorded id (imported from archives when
given, else rebuilt from the lockfiles, with the difference said), the same seeds. Exit 0 only
when every run and metric reproduced within its declared tolerance.

The code that runs is a CLEAN COPY: exactly the manifest's `code/` entries, each checked
against its sha256 while it is copied into a fresh temporary folder. A file under `code/`
that the manifest does not list (or that a published copy's RO-Crate lists) is never copied,
so never imported.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path
from typing import Any

from rich.console import Console

from runner.bundle.fsutil import safe_member
from runner.bundle.reader import MANIFEST, bundle_digest, read_manifest
from runner.errors import BundleError, CheckFailed
from runner.fileio import read_bounded, write_atomic

CODE_DIR = "code/"
MAX_CODE_FILE_BYTES = 64 * 2**20


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


def copy_listed_code(bundle: Path, manifest: dict[str, Any], target: Path) -> Path:
    """Copy exactly the manifest's code/ files into the new folder `target`, checking each sha256."""
    target.mkdir()
    copied = 0
    for entry in manifest["files"]:
        rel = entry["path"]
        if not rel.startswith(CODE_DIR):
            continue
        src = safe_member(bundle, rel, bundle / MANIFEST)
        data = read_bounded(src, min(entry["size"], MAX_CODE_FILE_BYTES), BundleError, what="code file",
                            follow_links=False, fix="restore the bundle from a good copy")
        if hashlib.sha256(data).hexdigest() != entry.get("sha256"):
            raise BundleError("changed since it was verified (sha256 differs); nothing was run", file=src,
                              fix="restore the bundle from a good copy")
        write_atomic(target / rel[len(CODE_DIR):], data, fsync=False)
        copied += 1
    if not copied:
        raise BundleError("lists no code/ files; it cannot be rerun with its own code", file=bundle / MANIFEST,
                          fix="rerun its spec.yaml instead (`runner reproduce SPEC`)")
    return target


def load_rerun(bundle: Path, code_dir: Path):
    """The bundle verified, and its listed code copied (hash-checked) into the new folder `code_dir`."""
    from runner.audit.verify import verify_bundle
    from runner.reproduce.session import Rerun

    result = verify_bundle(bundle)
    if not result.ok:
        raise BundleError(f"does not verify ({len(result.problems)} problems; first: {result.problems[0].line()}); "
                          "it cannot be rerun as recorded", file=bundle, fix=f"runner bundle verify {bundle}")
    code = copy_listed_code(bundle, read_manifest(bundle), code_dir)
    return Rerun(bundle=bundle, code=code, images=_recorded_images(bundle), engine=_recorded_engine(bundle))


def reproduce_bundle(bundle: Path, opts, archives: list[Path], overrides: dict[str, str] | None = None,
                     console: Console | None = None) -> Path:

    console = console or Console()
    with tempfile.TemporaryDirectory(prefix="runner-rerun-code-") as tmp:
        return _reproduce(bundle, load_rerun(bundle, Path(tmp) / "code"), opts, archives, overrides, console)


def _reproduce(bundle: Path, rerun, opts, archives: list[Path], overrides: dict[str, str] | None,
               console: Console) -> Path:
    from runner.audit.render import reproduction_table
    from runner.audit.reproduction import compare_runs
    from runner.reproduce.session import reproduce_spec

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
    console.print(f"new bundle {new}: digest {bundle_digest(read_manifest(new))}", markup=False)
    report = compare_runs(bundle, new)
    full = new.parent / f"{new.name}.reproduction.md"  # every column, whatever the terminal's width
    write_atomic(full, report.to_markdown().encode())
    console.print(reproduction_table(report))
    console.print(f"full table: {full}", markup=False, highlight=False)
    if not report.ok:
        raise CheckFailed(report.summary(), file=new, fix="read the provenance diff above")
    console.print(f"[green]{report.summary()}[/]")
    return new
