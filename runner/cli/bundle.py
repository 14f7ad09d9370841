"""`runner bundle ...`: verify, diff, publish and sign result bundles. Thin: parse, call, print.

Errors are RunnerErrors and propagate to the one mapping in runner.cli.main: a bundle that
fails verification raises CheckFailed (exit 1) after its problems are printed; one that
cannot be read raises BundleError (exit 2).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Verify, compare, publish and sign result bundles.", no_args_is_help=True)

BundleArg = Annotated[Path, typer.Argument(help="A bundle folder (or a .tar.gz of one).")]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of tables.")]


def _console():
    from rich.console import Console

    return Console(highlight=False, soft_wrap=False)


@app.command("verify")
def verify(
    bundle: BundleArg,
    public_key: Annotated[Path | None, typer.Option("--public-key", help="Ed25519 public key (PEM) the "
                                                    "signature must be made with.")] = None,
    digest: Annotated[str | None, typer.Option("--digest", help="The bundle digest (sha256:<hex>) it must "
                                               "have, as `runner reproduce` or `bundle publish` printed it.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Check every file's sha256 and size, every manifest fact, the tables' schemas, the digest, the signature."""
    from runner.audit.render import verify_table
    from runner.audit.verify import DIGEST, verify_bundle
    from runner.errors import CheckFailed, UsageError
    from runner.publish.archive import bundle_folder

    if digest is not None and not DIGEST.match(digest):
        raise UsageError(f"{digest!r} is not a bundle digest", field="--digest",
                         fix="write it as sha256:<64 lowercase hex digits>, as `runner bundle verify` prints it")
    with bundle_folder(bundle) as folder:
        result = verify_bundle(folder, public_key, expect_digest=digest)
    if as_json:
        typer.echo(json.dumps({"bundle": str(bundle), "ok": result.ok, "digest": result.digest,
                               "files": result.files, "bytes": result.bytes,
                               "seconds": round(result.seconds, 3), "signature": result.signature,
                               "problems": [p.__dict__ for p in result.problems], "notes": result.notes}, indent=1))
    else:
        console = _console()
        if result.problems:
            console.print(verify_table(result))
        for note in result.notes:
            console.print(note, markup=False, style="dim")
        if result.ok:
            console.print(f"[green]intact[/]: {result.files} files, {result.bytes / 1e6:,.1f} MB checked in "
                          f"{result.seconds:.2f} s; signature: {result.signature}")
        console.print(f"digest {result.digest}", markup=False)
    if not result.ok:
        files = len({p.path for p in result.problems})
        first = result.problems[0]
        raise CheckFailed(f"fails verification: {len(result.problems)} problem(s) in {files} file(s), first "
                          f"{first.path}: {first.kind}: {first.detail}", file=bundle,
                          fix="restore the bundle from a good copy")


@app.command("diff")
def diff(
    a: Annotated[Path, typer.Argument(help="The first bundle (A).")],
    b: Annotated[Path, typer.Argument(help="The second bundle (B).")],
    limit: Annotated[int, typer.Option("--limit", min=1, help="Show at most this many provenance rows.")] = 60,
    as_json: JsonFlag = False,
) -> None:
    """Provenance differences, most result-moving first, then the metrics of matching runs."""
    from runner.audit.diff import metric_deltas, provenance_diff, timing_notes
    from runner.audit.facts import load_facts
    from runner.audit.render import deltas_table, diff_table, group_legend
    from runner.publish.archive import bundle_folder

    with bundle_folder(a) as fa_path, bundle_folder(b) as fb_path:
        fa, fb = load_facts(fa_path, ["runs"]), load_facts(fb_path, ["runs"])
        items = provenance_diff(fa, fb)
        deltas = metric_deltas(fa, fb)
        timing = timing_notes(fa, fb, deltas)
    if as_json:
        typer.echo(json.dumps({
            "a": str(a), "b": str(b),
            "provenance": [{"group": i.group, "field": i.field, "a": i.a, "b": i.b, "rank": i.rank,
                            "runs": list(i.runs)} for i in items],
            "metrics": [d.__dict__ for d in deltas], "timing": [t.__dict__ for t in timing]}, indent=1, default=str))
        return
    console = _console()
    if items:
        console.print(diff_table(items, f"provenance: {len(items)} difference(s), most result-moving first", limit))
        if len(items) > limit:
            console.print(f"... {len(items) - limit} more (--limit, or --json for all)", style="dim")
        console.print(f"ranks: {group_legend()}", style="dim", markup=False)
    else:
        console.print("provenance: no differences recorded")
    changed = [d for d in deltas if d.a != d.b]
    runs = len({d.run_a for d in deltas})
    if not runs:
        console.print("metrics: no run of A matches a run of B (by id, or by framework, sweep, params and repeat)")
    elif changed:
        console.print(deltas_table(changed, f"metrics: {len(changed)} value(s) differ between {runs} matching runs"))
    else:
        console.print(f"metrics: identical for all {runs} matching run(s)")
    for note in timing:
        console.print(f"timing: {note.line()}", markup=False)


@app.command("publish")
def publish(
    bundle: BundleArg,
    out: Annotated[Path, typer.Option("--out", help="Folder to write the publishable copy into "
                                      "(as <out>/<bundle name>; never overwritten).")],
    with_images: Annotated[bool, typer.Option("--with-images", help="Include each image as a docker-archive "
                                              "tarball (needs the engine and the images).")] = False,
    sign: Annotated[Path | None, typer.Option("--sign", help="Ed25519 private key (PEM) to sign the copy's "
                                              "manifest with.")] = None,
    license_id: Annotated[str | None, typer.Option("--license", help="SPDX license id of the data, e.g. "
                                                   "CC-BY-4.0.")] = None,
    archive: Annotated[bool, typer.Option("--archive", help="Also write <bundle name>.tar.gz beside "
                                          "the copy.")] = False,
) -> None:
    """A verified, redaction-checked copy with RO-Crate metadata and REPRODUCING.md (from a folder or a .tar.gz)."""
    from runner.publish.archive import bundle_folder
    from runner.publish.publish import publish_bundle

    with bundle_folder(bundle) as folder:  # an archive: extracted with caps into a temp folder first
        result = publish_bundle(folder, out, with_images=with_images, sign_key=sign, license_id=license_id,
                                archive=archive)
    console = _console()
    console.print(f"[green]published[/] {result.path} ({result.files} files)")
    console.print(f"  digest {result.digest}", markup=False)
    for image in result.images:
        where = image.path or "not included (--with-images to include)"
        console.print(f"  image {image.name} {image.image_id[:19]}: {where}", markup=False)
    if result.signed_by:
        console.print(f"  signed with key {result.signed_by}")
    if result.archive:
        console.print(f"  archive {result.archive}")


@app.command("sign")
def sign(
    bundle: Annotated[Path, typer.Argument(help="A bundle folder (it must verify).")],
    key: Annotated[Path, typer.Option("--key", help="Ed25519 private key (PEM), from `runner keygen`.")],
) -> None:
    """Write manifest.json.sig: a detached Ed25519 signature over manifest.json (of a bundle that verifies)."""
    from runner.publish.sign import sign_bundle

    path, kid = sign_bundle(bundle, key)
    _console().print(f"[green]signed[/] {path} with key {kid}")
