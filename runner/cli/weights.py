"""`runner weights`: import a checkpoint into runner's canonical .npz, show a weights file.

Imports only typer at module level; torch (for a PyTorch checkpoint) is imported inside the
import command only, h5py for a Keras file likewise. Errors propagate to main.py's one table.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from runner.cli.options import DEFAULT_DATA_ROOT, DataRoot
from runner.errors import UsageError

app = typer.Typer(help="Pretrained weights: import checkpoints to canonical .npz (pinned by sha256 in specs).",
                  no_args_is_help=True, add_completion=False)


class ModelChoice(StrEnum):
    resnet50 = "resnet50"
    alexnet = "alexnet"
    vgg16 = "vgg16"
    simple_cnn = "simple_cnn"


class FrameworkChoice(StrEnum):
    pytorch = "pytorch"
    tensorflow = "tensorflow"


def _widths(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        widths = tuple(int(w) for w in text.split(","))
    except ValueError:
        raise UsageError(f"--classifier {text!r} is not comma-separated widths", field="--classifier",
                         fix="e.g. --classifier 4096,4096") from None
    return widths


def _target(model: ModelChoice | None, spec: Path | None, classes: int, layout: str | None, stem: str | None,
            input_size: int | None, classifier: str | None):
    """(arch, skip) the checkpoint must fit: a spec's model (with its pretrained.skip), or the flags'."""
    from runner.workload.models import ModelConfig, build_arch

    if spec is not None:
        if model is not None:
            raise UsageError("give --model or --spec, not both", field="--spec")
        from runner.spec.plan import plan_file
        from runner.spec.workload_config import workload_config

        plan = plan_file(spec)
        section = workload_config(plan.runs[0])["model"]
        cfg = ModelConfig.from_dict(section, source=str(spec))
        return build_arch(cfg), tuple(cfg.pretrained["skip"]) if cfg.pretrained else ()
    if model is None:
        raise UsageError("say which model the checkpoint is for", field="--model",
                         fix="--model alexnet (with --layout, --classes, --classifier as needed), or --spec SPEC")
    name = model.value
    if name == "alexnet":
        layout = layout or "imagenet"
    size = input_size or (224 if layout == "imagenet" else 32)
    cfg = ModelConfig(name=name, num_classes=classes, input_size=size,
                      stem=(stem or "imagenet") if name == "resnet50" else stem,
                      layout=layout, classifier=_widths(classifier))
    return build_arch(cfg), ()


@app.command("import")
def import_(
    file: Annotated[Path, typer.Argument(help="A PyTorch state dict (.pt/.pth), a Keras .weights.h5, or an .npz.")],
    framework: Annotated[FrameworkChoice, typer.Option("--framework", help="Which framework wrote FILE.")],
    model: Annotated[ModelChoice | None, typer.Option("--model", help="The model FILE holds.")] = None,
    classes: Annotated[int, typer.Option("--classes", min=2, help="Its classes (ImageNet: 1000).")] = 1000,
    layout: Annotated[str | None, typer.Option("--layout", help="alexnet: imagenet (default) or cifar.")] = None,
    stem: Annotated[str | None, typer.Option("--stem", help="resnet50: imagenet (default) or cifar.")] = None,
    input_size: Annotated[int | None, typer.Option("--input-size", help="Default: 224 for ImageNet layouts, "
                                                                       "else 32.")] = None,
    classifier: Annotated[str | None, typer.Option(
        "--classifier", help="alexnet/vgg16 hidden widths, e.g. 4096,4096 (torchvision's AlexNet).")] = None,
    spec: Annotated[Path | None, typer.Option(
        "--spec", help="Check against this spec's model and its pretrained.skip instead of --model.")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Folder to write <sha256>.npz into "
                                                           "(default: <data-root>/weights, the store).")] = None,
    data_root: DataRoot = DEFAULT_DATA_ROOT,
) -> None:
    """Convert FILE to canonical .npz, check every tensor against the model, store it, print its sha256."""
    from runner.weights import convert
    from runner.weights.store import put, store_dir
    from runner.workload.models.pretrained import plan_load

    arch, skip = _target(model, spec, classes, layout, stem, input_size, classifier)
    folder = out if out is not None else store_dir(data_root)
    if folder.exists() and not folder.is_dir():
        raise UsageError("is not a folder", file=folder, field="--out", fix="name a folder for the .npz")
    if file.suffix == ".npz":
        from runner.workload.models.npz import read_npz

        tensors = {k: v.astype("float32") if v.dtype.kind == "f" else v for k, v in read_npz(file).items()}
    elif framework is FrameworkChoice.pytorch:
        tensors = convert.from_torch(file)
    else:
        tensors = convert.from_keras(file, arch)
    plan = plan_load(arch, {k: (v.dtype, tuple(v.shape)) for k, v in tensors.items()}, skip, str(file))
    stored, written = put(tensors, folder)
    typer.echo(f"{'wrote' if written else 'already stored'} {stored.path} ({len(tensors)} tensors, "
               f"{len(plan.loaded)} fit {arch.name}{', ' + str(len(plan.kept_init)) + ' skipped' if skip else ''})")
    typer.echo(f"sha256 {stored.sha256}")
    typer.echo(f"pin it in a spec:  model: {{pretrained: {{sha256: {stored.sha256}}}}}")


@app.command("show")
def show(file: Annotated[Path, typer.Argument(help="A canonical weights .npz.")]) -> None:
    """The sha256 of a weights file and its tensors (headers only)."""
    from runner.fileio import sha256_file
    from runner.workload.models.npz import npz_index

    members = npz_index(file)
    typer.echo(f"sha256 {sha256_file(file)[1]}")
    for m in members:
        typer.echo(f"{m.key}  {m.dtype}  {tuple(m.shape)}")
