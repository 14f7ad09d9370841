"""One schema: the planner runs the workload's own readers on every distinct run it plans.

The workload's run-config dataclasses are the single source of truth for what a run may be
(harness `parse_config`, `ModelConfig` + `build_arch`, `OptimConfig`, `ScheduleConfig`,
augmentation `normalize_ops`). So anything the workload would refuse inside a container is
refused by `runner plan`, and the error names the SPEC field (mapped back from the run.json
field) and its line: the sweep's grid or override when the value came from there.

Runs are checked once per distinct resolved recipe (the model, dataset and measurement sections
are shared by every run of a plan). What a framework cannot do (MXNet: fp16 on CPU, bf16 on cuda,
compile) is refused per framework from the workload's own table (runner.workload.capabilities),
naming the spec field. Every module imported here is stdlib + numpy + runner.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.data.augment import normalize_ops, output_side
from runner.data.registry import get_dataset
from runner.errors import RunnerError, SpecError
from runner.spec.load import Loc, field_name, nearest_line, shorten
from runner.workload import capabilities
from runner.workload.harness.config import (
    FRAMEWORKS,
    parse_config,
    read_data,
    read_measurement,
    read_parallel,
    read_train,
)
from runner.workload.inference.support import check_support
from runner.workload.models import ModelConfig, build_arch
from runner.workload.optim import OptimConfig
from runner.workload.schedule import ScheduleConfig

# run.json field -> spec location, where the name differs (everything else: see spec_location).
_MODEL = {"bn_momentum": ("model", "batch_norm", "momentum"), "bn_epsilon": ("model", "batch_norm", "epsilon"),
          "num_classes": ("dataset", "num_classes")}
_OPTIMIZER = {"name": ("recipe", "optimizer"), "lr": ("recipe", "lr"), "weight_decay": ("recipe", "weight_decay"),
              "weight_decay_mode": ("recipe", "weight_decay_mode")}
_PARALLEL = {"mode": ("resources", "parallel"), "replicas": ("resources", "replicas"),
             "global_batch": ("recipe", "batch_size")}
_TOP = {"seed": ("seed",), "repeat": ("repeats",), "framework": ("frameworks",), "variant": ("variant",),
        "experiment": ("name",)}


@dataclass(frozen=True)
class Origin:
    """Where a resolved recipe came from: the sweep (index in `sweeps`), its overrides and grid point."""

    sweep: str
    index: int | None
    overrides: dict[str, Any]
    point: dict[str, Any]


def spec_location(field: str, doc: dict[str, Any]) -> Loc:
    """The spec location that sets run.json's `field` (dotted, `[i]` for list items)."""
    parts: list[str | int] = []
    for piece in field.replace("]", "").replace("[", ".").split("."):
        parts.append(int(piece) if piece.isdigit() else piece)
    section, rest = parts[0], tuple(parts[1:])
    key = rest[0] if rest else None
    if section == "ops":  # normalize_ops names the list it was given
        return ("recipe", "augmentation", *rest)
    if section == "model":
        return _MODEL.get(str(key), ("model", *rest)) if len(rest) == 1 else ("model", *rest)
    if section == "optimizer":
        rmsprop = doc["optimizer"].get("name") == "rmsprop"
        if key == "momentum":
            return ("recipe", "optimizer_params", "rmsprop_momentum" if rmsprop else "momentum")
        if key == "epsilon":
            return ("recipe", "optimizer_params", "rmsprop_epsilon" if rmsprop else "adam_epsilon")
        return _OPTIMIZER.get(str(key), ("recipe", "optimizer_params", *rest))
    if section == "schedule":
        return ("recipe", "epochs") if key == "total_epochs" else ("recipe", "schedule", *rest)
    if section == "train":
        return ("resources", "threads") if key == "threads" else ("recipe", *rest)
    if section == "data":
        if key in ("mean", "std"):
            return ("recipe", "normalize", key)
        return ("recipe", *rest) if key == "augmentation" else ("dataset", *rest)
    if section == "measurement":
        return ("measurement", *rest)
    if section == "parallel":
        return _PARALLEL.get(str(key), ("recipe", "data_parallel", *rest))
    return _TOP.get(str(section), (section, *rest))


def _error(exc: RunnerError, doc: dict[str, Any], origin: Origin, spec_path: Path,
           lines: dict[Loc, int]) -> SpecError:
    loc = spec_location(exc.field or "", doc) if exc.field else ()
    field, line = field_name(loc), nearest_line(lines, loc)
    if loc[:1] == ("recipe",) and origin.index is not None:
        dotted = ".".join(str(x) for x in loc[1:])
        for section, values in (("grid", origin.point), ("overrides", origin.overrides)):
            if dotted in values:
                sweep_loc = ("sweeps", origin.index, section, dotted)
                field = f"sweeps[{origin.index}].{section}.{shorten(dotted, 100)}"
                line = nearest_line(lines, sweep_loc)
                break
    message = shorten(exc.message, 500)
    if origin.index is not None:
        message += f" (in sweep '{origin.sweep}')"
    return SpecError(message, file=spec_path, line=line, field=field,
                     fix=exc.fix or "see docs/spec.md (the workload refuses this value)")


def check_model(doc: dict[str, Any], origin: Origin, spec_path: Path, lines: dict[Loc, int]) -> None:
    """The model section (shared by every run of a plan), and the input side the data gives it."""
    try:
        cfg = ModelConfig.from_dict(doc["model"])
        build_arch(cfg)
        side = output_side(get_dataset(doc["data"]["name"]).input_size, doc["data"]["augmentation"])
    except RunnerError as exc:
        raise _error(exc, doc, origin, spec_path, lines) from None
    if side != cfg.input_size:
        loc = ("model", "input_size")
        raise SpecError(f"the model takes {cfg.input_size}x{cfg.input_size} inputs but the data pipeline gives "
                        f"{side}x{side}", file=spec_path, line=nearest_line(lines, loc), field=field_name(loc),
                        fix=f"add a resize op to {cfg.input_size} or set model.input_size: {side}")


def train_images(dataset: dict[str, Any]) -> int | None:
    """Training images a run will see: the synthetic size or the official count (None: unknown)."""
    if dataset.get("synthetic"):
        return dataset["synthetic"]["train_size"]
    layout = get_dataset(dataset["name"]).layout
    return None if layout is None else layout.official_counts[0]


class RunChecker:
    """Runs the workload's readers on run.json documents, each distinct section once.

    The first document of each sweep goes through `parse_config` whole; after that only the
    sections whose content is new are read again (a 10,000-run grid varies one or two), so
    planning stays well under a second. Keys are the sections' reprs: exact for JSON values.
    """

    def __init__(self, spec_path: Path, lines: dict[Loc, int], train_images: int | None = None) -> None:
        self.spec_path, self.lines, self.train_images = spec_path, lines, train_images
        self.seen: set[tuple[str, str]] = set()

    def _new(self, key: str, value: Any) -> bool:
        item = (key, repr(value))
        if item in self.seen:
            return False
        self.seen.add(item)
        return True

    def check(self, doc: dict[str, Any], origin: Origin) -> None:
        """Raise a SpecError naming the spec field if the workload would refuse `doc`."""
        if doc["framework"] not in FRAMEWORKS:
            doc = {**doc, "framework": FRAMEWORKS[0]}
        file = self.spec_path
        try:
            whole = self._new("sweep", origin.sweep)
            if whole:
                parse_config(doc, file)
            for section, read in (("train", read_train), ("data", read_data), ("measurement", read_measurement)):
                if self._new(section, doc[section]) and not whole:
                    read(doc[section], file)
            if self._new("parallel", (doc["parallel"], doc["train"])) and not whole:
                read_parallel(doc["parallel"], file, read_train(doc["train"], file))
            if self._new("optimizer", doc["optimizer"]):
                OptimConfig.from_dict(doc["optimizer"])
            epochs = doc["train"]["epochs"]
            if self._new("schedule", (doc["schedule"], epochs)):
                ScheduleConfig.from_dict(doc["schedule"], total_epochs=epochs)
            if self._new("augmentation", doc["data"]["augmentation"]):
                normalize_ops(doc["data"]["augmentation"])
            batch, n = doc["train"]["batch_size"], self.train_images
            if doc["train"]["drop_last"] and n is not None and batch > n:  # the workload's prepare_run rule
                raise SpecError(f"batch size {batch} is larger than the {n} training images with drop_last",
                                field="train.batch_size", fix="use a smaller batch or drop_last: false")
            calibration = (doc["measurement"].get("inference") or {}).get("calibration_images")
            if calibration is not None and n is not None and calibration > n:  # the workload's rule too
                raise SpecError(f"{calibration} calibration images asked for, the training set has {n}",
                                field="measurement.inference.calibration_images", fix=f"use at most {n}")
        except RunnerError as exc:
            raise _error(exc, doc, origin, self.spec_path, self.lines) from None

    def check_frameworks(self, doc: dict[str, Any], frameworks: list[str], origin: Origin) -> None:
        """Refuse a recipe one of the spec's frameworks cannot run (runner.workload.capabilities)."""
        for framework in frameworks:
            try:
                capabilities.check(framework, doc["variant"], doc["train"], self.spec_path, parallel=doc["parallel"])
                check_support(framework, doc["variant"], doc["measurement"].get("inference"), self.spec_path,
                              parallel=doc["parallel"])
            except RunnerError as exc:
                raise _error(exc, doc, origin, self.spec_path, self.lines) from None

# Spec fields that never reach run.json, and why (tests/spec/test_field_walk.py proves every other
# field does; docs/spec.md lists these). Paths: dotted, `[]` for list items.
HOST_ONLY_FIELDS: dict[str, str] = {
    "description": "text for people",
    "dataset.path": "where the host finds the data; the workload reads the verified, prepared copy",
    "dataset.sha256": "the host verifies the dataset against it before mounting it",
    "dataset.synthetic.train_size": "the host generates the synthetic dataset",
    "dataset.synthetic.test_size": "the host generates the synthetic dataset",
    "dataset.synthetic.seed": "the host generates the synthetic dataset",
    "model.pretrained.path": "where the host finds the weights file; run.json pins its sha256",
    "sweeps[].description": "text for people",
    "resources.gpus": "the engine's device request (parallel: data -> one replica per GPU: run.json's "
                      "parallel.replicas)",
    "resources.cpus": "the engine's CPU quota",
    "resources.memory": "the engine's memory limit",
    "resources.shm": "the engine's /dev/shm size",
    "resources.time_limit_s": "the host stops a run after it",
    "execution.engine": "where the host runs the workload",
    "execution.executor": "who places the runs (inline, or Slurm jobs); recorded in environment/executor.json",
    "execution.partition": "sbatch --partition of every job (environment/executor.json)",
    "execution.time": "sbatch --time: Slurm's limit for the job (environment/executor.json)",
    "execution.gres": "sbatch --gres of every job (environment/executor.json)",
    "execution.account": "sbatch --account of every job (environment/executor.json)",
    "execution.qos": "sbatch --qos of every job (environment/executor.json)",
    "execution.max_parallel": "the job array's %N throttle (environment/executor.json)",
    "execution.ship_images": "the session writes image archives for the nodes (environment/executor.json; each "
                             "run's environment.json node.image says whether its node loaded one)",
    "references[].source": "runner compare sets published numbers beside ours",
    "references[].match": "runner compare sets published numbers beside ours",
    "references[].metrics": "runner compare sets published numbers beside ours",
}

# Fields with one allowed value (any other is refused), so no other value can reach run.json.
SINGLE_VALUE_FIELDS: dict[str, str] = {
    "recipe.loss": "cross_entropy is the one loss the workload implements",
}
