"""`runner reproduce` and `runner run`: thin commands over runner.reproduce."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from runner.cli.options import DEFAULT_DATA_ROOT, DEFAULT_RESULTS, DataRoot, MaxRuns, ResultsRoot
from runner.errors import UsageError
from runner.spec.limits import MAX_RUNS

DEFAULT_CACHE = Path(".cache/runner")


class EngineChoice(StrEnum):
    auto = "auto"
    docker = "docker"
    podman = "podman"
    local = "local"
    spec = "spec"


class BuildPolicy(StrEnum):
    missing = "missing"
    always = "always"
    never = "never"


EngineOpt = Annotated[EngineChoice, typer.Option(
    "--engine", help="Where runs execute (auto: Docker, else podman, else the local Python); `spec` uses "
                     "the spec's execution.engine.")]


class ExecutorChoice(StrEnum):
    inline = "inline"
    slurm = "slurm"
    spec = "spec"


ExecutorOpt = Annotated[ExecutorChoice, typer.Option(
    "--executor", help="Who places the runs: inline (this machine) or slurm (a job each); `spec`: execution.executor.")]
PartitionOpt = Annotated[str | None, typer.Option("--partition", help="Slurm: the jobs' partition.")]
TimeOpt = Annotated[str | None, typer.Option("--time", help="Slurm: each job's limit, sbatch --time (execution.time).")]
GresOpt = Annotated[str | None, typer.Option("--gres", help="Slurm: sbatch --gres, e.g. gpu:2 (execution.gres).")]
AccountOpt = Annotated[str | None, typer.Option("--account", help="Slurm: sbatch --account (execution.account).")]
QosOpt = Annotated[str | None, typer.Option("--qos", help="Slurm: sbatch --qos (execution.qos).")]
MaxParallelOpt = Annotated[int | None, typer.Option(
    "--max-parallel", help="Slurm: at most this many jobs at once (execution.max_parallel).")]
ShipImagesOpt = Annotated[bool | None, typer.Option(
    "--ship-images/--no-ship-images", show_default=False,
    help="Slurm: nodes that lack an image load it from an archive in --cache (execution.ship_images).")]
BuildOpt = Annotated[BuildPolicy, typer.Option("--build", help="Build images when missing, always, or never.")]
CacheOpt = Annotated[Path, typer.Option("--cache", help="Cache for prepared datasets and wheels.")]
NoRedact = Annotated[bool, typer.Option("--no-redact", help="Keep host names, user names and GPU serials.")]
ResumeOpt = Annotated[Path | None, typer.Option("--resume", help="A partial bundle to complete.")]
BaseOpt = Annotated[str | None, typer.Option(
    "--base", help="Base image for builds instead of the catalog's pinned digest (e.g. local/debian:bookworm).")]


def _options(data_root, results, cache, engine, build, resume, no_redact, base, execution=None):
    from runner.executor.choose import ExecutionFlags
    from runner.reproduce.session import SessionOptions

    return SessionOptions(data_root=data_root, results_root=results, cache=cache, engine=engine.value,
                          build=build.value, resume=resume, redact=not no_redact, base=base,
                          execution=execution or ExecutionFlags())


def _image_overrides(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        framework, sep, image_id = item.partition("=")
        if not sep or not framework or not image_id:
            raise UsageError(f"--image {item!r} is not FRAMEWORK=IMAGE_ID", field="--image",
                             fix="e.g. --image pytorch=sha256:1a2b...")
        out[framework] = image_id
    return out


def reproduce(
    target: Annotated[Path, typer.Argument(help="An experiment spec (YAML), or a bundle to rerun.")],
    data_root: DataRoot = DEFAULT_DATA_ROOT,
    results: ResultsRoot = DEFAULT_RESULTS,
    cache: CacheOpt = DEFAULT_CACHE,
    engine: EngineOpt = EngineChoice.spec,
    build: BuildOpt = BuildPolicy.missing,
    resume: ResumeOpt = None,
    no_redact: NoRedact = False,
    base: BaseOpt = None,
    max_runs: MaxRuns = MAX_RUNS,
    image_archive: Annotated[list[Path] | None, typer.Option(
        "--image-archive", help="Rerunning a bundle: image tarballs (runner images export) to import first.")] = None,
    image: Annotated[list[str] | None, typer.Option(
        "--image", help="Rerunning a bundle: FRAMEWORK=IMAGE_ID runs it in another image (what-if).")] = None,
    executor: ExecutorOpt = ExecutorChoice.spec,
    partition: PartitionOpt = None,
    time: TimeOpt = None,
    gres: GresOpt = None,
    account: AccountOpt = None,
    qos: QosOpt = None,
    max_parallel: MaxParallelOpt = None,
    ship_images: ShipImagesOpt = None,
) -> None:
    """Run every run of a spec in its pinned image and write a result bundle; or rerun a bundle
    exactly and report, per run and metric, whether it reproduced (exit 1 if not)."""
    from runner.executor.choose import ExecutionFlags
    from runner.reproduce.rerun import is_bundle

    flags = ExecutionFlags(executor=None if executor is ExecutorChoice.spec else executor.value,
                           partition=partition, time=time, gres=gres, account=account, qos=qos,
                           max_parallel=max_parallel, ship_images=ship_images)
    opts = _options(data_root, results, cache, engine, build, resume, no_redact, base, flags)
    if is_bundle(target):
        from runner.reproduce.rerun import reproduce_bundle

        reproduce_bundle(target, opts, image_archive or [], _image_overrides(image or []))
        return
    if image_archive or image:
        raise UsageError("--image-archive and --image apply to rerunning a bundle", field="--image",
                         fix="give a bundle folder as the target, or drop the option")
    from runner.bundle.reader import bundle_digest, read_manifest
    from runner.reproduce.session import reproduce_spec

    path = reproduce_spec(target, opts, max_runs=max_runs)
    typer.echo(f"bundle digest {bundle_digest(read_manifest(path))}")  # cite it; `bundle verify --digest` checks it


def run(
    framework: Annotated[str, typer.Option("--framework", "-f", help="pytorch or tensorflow.")],
    model: Annotated[str, typer.Option("--model", "-m", help="resnet50, alexnet, vgg16, simple_cnn.")],
    dataset: Annotated[str, typer.Option("--dataset", "-d", help="cifar10, cifar100, imagenet.")],
    data_path: Annotated[str | None, typer.Option(
        "--data-path", help="Dataset folder/archive under --data-root; omit for synthetic data.")] = None,
    variant: Annotated[str, typer.Option("--variant", "--device", help="cpu, cuda or ppc64le.")] = "cpu",
    epochs: Annotated[int, typer.Option(min=1)] = 1,
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", min=1)] = 64,
    optimizer: Annotated[str, typer.Option(help="sgd, adam, rmsprop.")] = "sgd",
    lr: Annotated[float, typer.Option(help="Learning rate.")] = 0.01,
    seed: Annotated[int, typer.Option(min=0)] = 0,
    stem: Annotated[str | None, typer.Option(help="resnet50 stem: imagenet or cifar.")] = None,
    layout: Annotated[str | None, typer.Option(help="alexnet layout: cifar or imagenet.")] = None,
    gpus: Annotated[int, typer.Option(min=0)] = 0,
    setting: Annotated[list[str] | None, typer.Option(
        "--set", help="Any other field, dotted: recipe.weight_decay=5e-4, model.dropout=0.3.")] = None,
    name: Annotated[str, typer.Option(help="Experiment name (the bundle folder).")] = "adhoc",
    data_root: DataRoot = DEFAULT_DATA_ROOT,
    results: ResultsRoot = DEFAULT_RESULTS,
    cache: CacheOpt = DEFAULT_CACHE,
    engine: EngineOpt = EngineChoice.auto,
    build: BuildOpt = BuildPolicy.missing,
    no_redact: NoRedact = False,
    base: BaseOpt = None,
) -> None:
    """One ad-hoc run from flags (as the studies' train.py offered), written as a one-run bundle."""
    from runner.reproduce.adhoc import adhoc_spec
    from runner.reproduce.session import reproduce_spec

    spec_path = adhoc_spec(
        cache=cache, name=name, framework=framework, model=model, dataset=dataset, data_path=data_path,
        variant=variant, epochs=epochs, batch_size=batch_size, optimizer=optimizer, lr=lr, seed=seed, stem=stem,
        layout=layout, gpus=gpus, settings=setting or [],
    )
    opts = _options(data_root, results, cache, engine, build, None, no_redact, base)
    reproduce_spec(spec_path, opts)
