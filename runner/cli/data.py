"""`runner data`: fetch, verify, synth, prepare, manifest. Thin: flags -> runner.data -> rich.

Imports only typer at module level (main.py registers this sub-app at start-up); the dataset
layer (numpy) and rich load inside each command. Errors propagate to main.py's one table:
bad input is a DatasetError/UsageError (exit 2); `verify` turns a dataset that exists but fails
its checks into CheckFailed (exit 1: the thing checked is bad).
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from runner.cli.options import DEFAULT_DATA_ROOT
from runner.errors import CheckFailed, DatasetError, DatasetRefused, UsageError

if TYPE_CHECKING:
    from rich.console import Console

    from runner.data.prepared import PreparedDataset
    from runner.data.reader import SourceRecord

app = typer.Typer(
    help="Datasets: fetch official CIFAR archives, verify checksums, write synthetic stand-ins, "
         "prepare the .npy form runs read.",
    no_args_is_help=True,
    add_completion=False,
)


class DatasetName(StrEnum):
    cifar10 = "cifar10"
    cifar100 = "cifar100"
    imagenet = "imagenet"


class SynthName(StrEnum):
    cifar10 = "cifar10"
    cifar100 = "cifar100"
    imagenet = "imagenet"


class PrepareSize(StrEnum):
    s160 = "160"
    s224 = "224"


MANIFEST_CACHE = Path(".cache/runner/manifests")  # `runner reproduce --cache`'s default + /manifests


SourcePath = Annotated[Path, typer.Argument(help="A CIFAR archive (.tar.gz), its extracted folder, a "
                                                 "folder holding one, or an ImageNet folder (train/, val/).")]
NameOpt = Annotated[DatasetName | None, typer.Option("--name", help="Dataset, when it cannot be detected.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


def _console() -> Console:
    from rich.console import Console

    return Console(soft_wrap=True, highlight=False)  # hashes stay on one copyable line


def _source_lines(record: SourceRecord) -> list[str]:
    lines = [f"{record.kind} [bold]{record.name}[/]: verified by {record.verified_by}"
             f" ({'official' if record.official else 'not the official release'})",
             f"root sha256 {record.root_sha256}"]
    if record.sha256:
        lines.append(f"archive sha256 {record.sha256}  md5 {record.md5}")
    return lines


def _prepared_lines(p: PreparedDataset) -> list[str]:
    c = p.counts
    return [f"prepared [bold]{p.name}[/] at {p.path}: {c['train']} train / {c['test']} test, "
            f"{p.num_classes} classes, images {p.meta['image_shape']} uint8 NHWC",
            f"content id {p.content_id}  (sha256 of meta.json)",
            f"train mean {p.meta['train_channel_mean']} std {p.meta['train_channel_std']}"]


@app.command()
def fetch(
    name: Annotated[DatasetName, typer.Argument(help="Dataset to download.")],
    dest: Annotated[Path, typer.Option("--dest", help="Folder to download into.")] = DEFAULT_DATA_ROOT,
    url: Annotated[str | None, typer.Option("--url", help="Download from this URL (a mirror) instead.")] = None,
    sha256: Annotated[str | None, typer.Option("--sha256", help="Expected sha256 (with --url; default: the "
                                                               "official md5).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar.")] = False,
) -> None:
    """Download the official archive (resumable; checksum verified before it gets its name)."""
    from runner.data.fetch import fetch as do_fetch

    if sha256 is not None and url is None:
        raise UsageError("--sha256 only applies with --url (the official archive has a published checksum)",
                         field="--sha256", fix="drop --sha256, or pass the mirror with --url")
    path = do_fetch(name.value, dest, url=url, sha256=sha256, progress=not quiet)
    _console().print(f"[green]ok[/] {path} (checksum verified)")


@app.command()
def verify(path: SourcePath, name: NameOpt = None, as_json: JsonOpt = False,
           full: Annotated[bool, typer.Option("--full", help="ImageNet: hash every file again, ignoring the "
                                                            "manifest cache (size, mtime, inode).")] = False) -> None:
    """Check a dataset against its checksums and print its root hash (what specs pin).

    PATH may be an archive, a CIFAR folder, an ImageNet folder or a prepared folder (meta.json):
    every file's sha256 is checked (ImageNet: unchanged files from the manifest cache unless
    --full). Exit 1 if it exists but fails; 2 if it is refused as unsafe (a FIFO, device or
    link, a compression bomb) or is no dataset.
    """
    from runner.data.prepared import META, load_prepared
    from runner.data.sources import open_source

    if not path.exists():
        raise DatasetError("does not exist", file=path)
    try:
        if path.is_dir() and (path / META).exists():
            prepared = load_prepared(path, mmap=True, verify="hashes")
            from runner.data.manifest import dataset_manifest

            _, root = dataset_manifest(path)
            if as_json:
                typer.echo(json.dumps({"kind": "prepared", "dataset": prepared.name, "root_sha256": root,
                                       "content_id": prepared.content_id, "counts": prepared.counts}, indent=2))
                return
            out = _console()
            for line in _prepared_lines(prepared):
                out.print(line)
            out.print(f"root sha256 {root}")
            return
        reader = open_source(path, name.value if name else None)
        if reader.name == "imagenet":
            reader.cache_dir = None if full else MANIFEST_CACHE  # type: ignore[attr-defined]
        record = reader.verify()
        skipped = reader.index().skipped if reader.name == "imagenet" else ()  # type: ignore[attr-defined]
    except DatasetRefused:
        raise  # unsafe or implausible input (a FIFO, a link, a bomb): bad input, exit 2
    except DatasetError as exc:
        raise CheckFailed(exc.message, file=exc.file, field=exc.field, line=exc.line, fix=exc.fix) from None
    if as_json:
        extra = {"skipped": [k.to_json() for k in skipped]} if reader.name == "imagenet" else {}
        typer.echo(json.dumps({"dataset": reader.name, **record.to_json(), **extra}, indent=2))
        return
    out = _console()
    out.print(f"[green]ok[/] {reader.name}")
    for line in _source_lines(record):
        out.print(line)
    for k in skipped:
        out.print(f"skipped {k.path}: {k.reason}", markup=False)


@app.command()
def synth(
    out: Annotated[Path, typer.Option("--out", help="New folder to write (must not exist or be empty).")],
    dataset: Annotated[SynthName | None, typer.Argument(help="Dataset to imitate (same as --like).")] = None,
    like: Annotated[SynthName | None, typer.Option("--like", help="Official layout to imitate.")] = None,
    train: Annotated[int | None, typer.Option("--train", min=1, help="CIFAR: training images (default: official "
                                                                     "count, 50000).")] = None,
    test: Annotated[int | None, typer.Option("--test", min=1, help="CIFAR: test images (default 10000).")] = None,
    seed: Annotated[int, typer.Option("--seed", min=0, help="Generator seed.")] = 0,
    classes: Annotated[int | None, typer.Option("--classes", min=1,
                                                help="ImageNet: class folders (default 10).")] = None,
    per_class: Annotated[int | None, typer.Option("--per-class", min=1, help="ImageNet: training images per "
                                                                           "class (default 50).")] = None,
    val_per_class: Annotated[int | None, typer.Option("--val-per-class", min=0, help="ImageNet: val images per "
                                                                                   "class (default 10).")] = None,
    side: Annotated[int | None, typer.Option("--side", min=16, help="ImageNet: mean image side in pixels "
                                                                   "(default 96).")] = None,
    flat_val: Annotated[bool, typer.Option("--flat-val", help="ImageNet: val/ flat with LOC_val_solution.csv "
                                                              "instead of class folders.")] = False,
) -> None:
    """Write learnable synthetic data in the exact official layout (CIFAR: folder, archive, checksum;
    ImageNet: train/<wnid>/*.JPEG and val/)."""
    if (dataset is None) == (like is None):
        raise UsageError("name the dataset once: `runner data synth imagenet ...` or `--like cifar10`",
                         field="DATASET", fix="give DATASET or --like, not both")
    kind = dataset or like
    assert kind is not None
    imagenet_flags = {"--classes": classes, "--per-class": per_class, "--val-per-class": val_per_class,
                      "--side": side, "--flat-val": flat_val or None}
    if kind is SynthName.imagenet:
        if train is not None or test is not None:
            raise UsageError("--train/--test are CIFAR flags", field="--train",
                             fix="use --classes and --per-class (and --val-per-class) for ImageNet")
        _synth_imagenet(out, classes, per_class, val_per_class, side, seed, flat_val)
        return
    given = [k for k, v in imagenet_flags.items() if v is not None]
    if given:
        raise UsageError(f"{', '.join(given)} apply to imagenet only", field=given[0], fix="use --train/--test")
    from runner.data.synth import write_synthetic

    like = kind
    result = write_synthetic(like.value, out, train=train, test=test, seed=seed)
    out_ = _console()
    out_.print(f"[green]ok[/] synthetic {like.value}: {result.counts[0]} train / {result.counts[1]} test "
               f"(seed {seed}) in {result.out}")
    out_.print(f"folder  {result.folder.name}/  root sha256 {result.manifest_root}")
    out_.print(f"archive {result.archive.name}  sha256 {result.archive_sha256}")


def _synth_imagenet(out: Path, classes: int | None, per_class: int | None, val_per_class: int | None,
                    side: int | None, seed: int, flat_val: bool) -> None:
    from runner.data.synth_imagenet import write_synthetic_imagenet

    r = write_synthetic_imagenet(out, classes=10 if classes is None else classes,
                                 per_class=50 if per_class is None else per_class,
                                 val_per_class=10 if val_per_class is None else val_per_class,
                                 side=96 if side is None else side, seed=seed, flat_val=flat_val)
    out_ = _console()
    out_.print(f"[green]ok[/] synthetic imagenet: {r.classes} classes, {r.train} train / {r.val} val JPEGs "
               f"(seed {seed}) in {r.out}")
    out_.print(f"root sha256 {r.root_sha256}")


@app.command()
def prepare(
    path: SourcePath,
    out: Annotated[Path, typer.Option("--out", help="New folder for the prepared .npy form.")],
    name: NameOpt = None,
    size: Annotated[PrepareSize | None, typer.Option("--size", help="ImageNet: decode every image once to this "
                                                                    "side (pre-decoded shards; default 224).")] = None,
) -> None:
    """Verify, decode safely and write the prepared form (train_x.npy, ..., meta.json) atomically.

    The source is only read (a read-only dataset stays untouched); OUT is a new folder.
    """
    from runner.data.prepared import prepare as do_prepare

    prepared = do_prepare(path, out, name.value if name else None, size=int(size.value) if size else None)
    out_ = _console()
    out_.print("[green]ok[/] " + _prepared_lines(prepared)[0])
    for line in _prepared_lines(prepared)[1:]:
        out_.print(line)
    out_.print("source: " + "; ".join(_source_lines_plain(prepared.meta["source"])))
    for k in prepared.meta.get("skipped", []):
        out_.print(f"skipped {k['path']}: {k['reason']}", markup=False)


def _source_lines_plain(source: dict) -> list[str]:
    return [f"{source['kind']} {source['name']} verified by {source['verified_by']}",
            f"root sha256 {source['root_sha256']}"]


@app.command()
def manifest(
    path: Annotated[Path, typer.Argument(help="A dataset folder (or file).")],
    write: Annotated[bool, typer.Option("--write", help="Write the listing to PATH/SHA256SUMS (trust this copy "
                                                         "from now on).")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Print the per-file sha256 manifest and root hash; --write records it as SHA256SUMS."""
    from runner.data.manifest import MANIFEST_NAME, dataset_manifest, format_manifest_file
    from runner.fileio import write_atomic

    entries, root = dataset_manifest(path, exclude=frozenset({MANIFEST_NAME}))
    if write:
        if not path.is_dir():
            raise UsageError("--write needs a folder", file=path, field="--write")
        target = path / MANIFEST_NAME
        if target.exists():
            raise DatasetError(f"already has {MANIFEST_NAME}; it is never overwritten", file=target,
                               fix="check it with `runner data verify`, or remove it first")
        write_atomic(target, format_manifest_file(entries))
    if as_json:
        typer.echo(json.dumps({"root_sha256": root,
                               "files": {k: {"size": s, "sha256": h} for k, (s, h) in entries.items()}}, indent=2))
        return
    out = _console()
    for rel, (size, sha) in entries.items():
        out.print(f"{sha}  {size:>12}  {rel}", highlight=False)
    out.print(f"root sha256 {root}  ({len(entries)} files)" + (f"; wrote {MANIFEST_NAME}" if write else ""))
