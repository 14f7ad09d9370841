"""Reading `run.json` inside the workload: the harness's own sections, strictly.

The host writes this document (runner.spec.workload_config); the workload cannot use pydantic,
so each section the harness owns (top level, train, data, measurement) is read by a small
table of expected keys and types. Unknown keys, missing keys and wrong types are a SpecError
naming the file and the dotted field. The model, optimizer and schedule sections are handed
to the models package's own `from_dict` readers.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from runner.errors import SpecError
from runner.fileio import canonical_sha256
from runner.workload import capabilities
from runner.workload.inference.support import BASELINE, check_support
from runner.workload.inference.support import PRECISIONS as INFERENCE_PRECISIONS

SUPPORTED_SCHEMA = 1
FRAMEWORKS = ("pytorch", "tensorflow", "mxnet")
VARIANTS = ("cpu", "cuda", "ppc64le")
PRECISIONS = ("fp32", "amp_fp16", "amp_bf16")
PARALLEL_MODES = ("none", "data")
LR_SCALING = ("none", "linear")
DECODE_MODES = ("shards", "jpeg")  # data.decode (runner.data.jpeg_index)
MAX_SEED = 2**32 - 1  # numpy's legacy seeding (np.random.seed, which Keras calls) takes < 2**32

_INT = (int,)
_NUM = (int, float)
_OPT_INT = (int, type(None))
_OPT_NUM = (int, float, type(None))


class _Reader:
    """Checks one JSON object against a key -> types table; errors name `file` and `prefix.key`."""

    def __init__(self, obj: Any, file: Path, prefix: str, spec: dict[str, tuple[type, ...]],
                 optional: tuple[str, ...] = ()) -> None:
        self.file, self.prefix = file, prefix
        if not isinstance(obj, dict):
            raise SpecError("must be a JSON object", file=file, field=prefix or None)
        unknown = sorted(set(obj) - set(spec))
        if unknown:
            raise SpecError(f"unknown key(s) {', '.join(unknown)}", file=file, field=prefix or None,
                            fix=f"expected only: {', '.join(spec)}")
        missing = [k for k in spec if k not in obj and k not in optional]
        if missing:
            raise SpecError(f"missing key(s) {', '.join(missing)}", file=file, field=prefix or None,
                            fix="regenerate run.json with the host's `runner` of the same version")
        for key, types in spec.items():
            if key not in obj:
                continue
            value = obj[key]
            # JSON true/false are ints to isinstance(); a bool is only accepted where bool is listed.
            ok = isinstance(value, types) and not (isinstance(value, bool) and bool not in types)
            if not ok:
                names = " or ".join("null" if t is type(None) else t.__name__ for t in types)
                raise SpecError(f"must be {names}, got {json.dumps(value)}", file=file, field=self.name(key))
        self.obj = obj

    def name(self, key: str) -> str:
        return f"{self.prefix}.{key}" if self.prefix else key

    def get(self, key: str) -> Any:
        return self.obj[key]

    def positive(self, key: str, allow_none: bool = False) -> Any:
        value = self.obj[key]
        if value is None and allow_none:
            return None
        if not (isinstance(value, int | float) and value > 0):
            raise SpecError(f"must be > 0, got {value}", file=self.file, field=self.name(key))
        return value

    def choice(self, key: str, choices: tuple[str, ...]) -> str:
        value = self.obj[key]
        if value not in choices:
            raise SpecError(f"must be one of {', '.join(choices)}, got {value!r}", file=self.file,
                            field=self.name(key))
        return value


@dataclass(frozen=True)
class TrainConfig:
    epochs: int
    batch_size: int
    precision: str
    compile: bool
    deterministic: bool
    label_smoothing: float
    drop_last: bool
    steps_per_epoch: int | None
    threads: int | None
    cuda_graphs: bool = False  # PyTorch on cuda: torch.compile(mode="reduce-overhead")
    channels_last: bool = False  # channels-last memory layout
    augment_on: str = "host"  # where training augmentation runs: auto | host | device (capabilities.augment_on)


@dataclass(frozen=True)
class DataConfig:
    name: str
    num_classes: int
    augmentation: list[dict[str, Any]]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    decode: str = "shards"  # ImageNet: "shards" (pre-decoded .npy) | "jpeg" (decoded from the JPEGs in the run)


@dataclass(frozen=True)
class InferenceConfig:
    """`measurement.inference`: the inference comparison after training (runner.workload.inference)."""

    precisions: tuple[str, ...]
    batch_sizes: tuple[int, ...]
    calibration_images: int


@dataclass(frozen=True)
class MeasureConfig:
    warmup_steps: int
    eval_every_epochs: int
    latency_batch_sizes: tuple[int, ...]
    latency_iterations: int
    target_accuracy: float | None
    synthetic_compute: bool
    inference: InferenceConfig | None = None
    read_every_steps: int = 1  # training statistics read back from the device every N steps


@dataclass(frozen=True)
class ParallelConfig:
    """How many replicas train one run, and the data-parallel rules, explicit (docs/workload.md).

    `global_batch` (= train.batch_size) is split evenly: replica r takes slice r of every global
    batch (`per_replica_batch` images). `lr_scaling: linear` multiplies the recipe's lr by the
    replica count; `none` uses it as given. `sync_batch_norm`: BatchNorm statistics over the
    global batch (else each replica normalises over its own slice).
    """

    mode: str
    replicas: int
    global_batch: int
    per_replica_batch: int
    lr_scaling: str
    sync_batch_norm: bool

    @property
    def data(self) -> bool:
        return self.mode == "data"

    @property
    def lr_factor(self) -> float:
        return float(self.replicas) if self.lr_scaling == "linear" else 1.0

    @classmethod
    def single(cls, batch_size: int) -> ParallelConfig:
        return cls("none", 1, batch_size, batch_size, "none", False)


@dataclass(frozen=True)
class RunConfig:
    """The whole run: the harness's sections parsed, the model/optim/schedule ones kept raw."""

    run_id: str
    experiment: str
    sweep: str
    framework: str
    variant: str
    seed: int
    repeat: int
    train: TrainConfig
    data: DataConfig
    measurement: MeasureConfig
    parallel: ParallelConfig
    model: dict[str, Any]
    optimizer: dict[str, Any]
    schedule: dict[str, Any]
    path: Path
    doc: dict[str, Any] = field(repr=False, compare=False)

    @property
    def on_gpu(self) -> bool:
        return self.variant == "cuda"

    @property
    def augment_on(self) -> str:
        """Where training augmentation runs, "host" or "device" (capabilities.augment_on)."""
        return capabilities.augment_on(self.framework, self.variant, self.train.augment_on,
                                       self.data.augmentation, self.data.name, self.path)

    @cached_property
    def sha256(self) -> str:
        """Of the canonical JSON of the whole document (computed when asked: the planner checks
        thousands of documents and needs no hash)."""
        return canonical_sha256(self.doc)


def read_train(obj: Any, file: Path) -> TrainConfig:
    r = _Reader(obj, file, "train", {
        "epochs": _INT, "batch_size": _INT, "precision": (str,), "compile": (bool,),
        "deterministic": (bool,), "label_smoothing": _NUM, "drop_last": (bool,),
        "steps_per_epoch": _OPT_INT, "threads": _OPT_INT, "cuda_graphs": (bool,), "channels_last": (bool,),
        "augment_on": (str,),
    }, optional=("cuda_graphs", "channels_last", "augment_on"))  # absent in a hand-written run.json: off, host
    smoothing = float(r.get("label_smoothing"))
    if not 0.0 <= smoothing < 1.0:
        raise SpecError(f"must be in [0, 1), got {smoothing}", file=file, field="train.label_smoothing")
    return TrainConfig(
        epochs=r.positive("epochs"), batch_size=r.positive("batch_size"),
        precision=r.choice("precision", PRECISIONS), compile=r.get("compile"),
        deterministic=r.get("deterministic"), label_smoothing=smoothing, drop_last=r.get("drop_last"),
        steps_per_epoch=r.positive("steps_per_epoch", allow_none=True),
        threads=r.positive("threads", allow_none=True),
        cuda_graphs=bool(obj.get("cuda_graphs", False)), channels_last=bool(obj.get("channels_last", False)),
        augment_on=r.choice("augment_on", capabilities.AUGMENT_ON) if "augment_on" in obj else "host",
    )


def _triple(r: _Reader, key: str, positive: bool) -> tuple[float, float, float]:
    value = r.get(key)
    ok = len(value) == 3 and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
    if not ok or not all(math.isfinite(v) and (v > 0 or not positive) for v in value):
        raise SpecError(f"must be three {'positive ' if positive else ''}numbers, got {value}",
                        file=r.file, field=r.name(key))
    return (float(value[0]), float(value[1]), float(value[2]))


def read_data(obj: Any, file: Path) -> DataConfig:
    r = _Reader(obj, file, "data", {
        "name": (str,), "num_classes": _INT, "augmentation": (list,), "mean": (list,), "std": (list,),
        "decode": (str,),
    }, optional=("decode",))
    decode = r.choice("decode", DECODE_MODES) if "decode" in obj else "shards"
    if decode == "jpeg" and r.get("name") != "imagenet":
        raise SpecError(f"decode: jpeg reads ImageNet JPEG folders, not {r.get('name')}", file=file,
                        field="data.decode", fix=f"drop decode (or use decode: shards): {r.get('name')} is read "
                                                 "from its prepared arrays")
    for i, op in enumerate(r.get("augmentation")):
        if not isinstance(op, dict) or not isinstance(op.get("op"), str):
            raise SpecError("each augmentation must be an object with an `op`", file=file,
                            field=f"data.augmentation[{i}]")
        if op["op"] == "random_resized_crop" and r.get("name") != "imagenet":
            raise SpecError(f"random_resized_crop needs ImageNet-format data, not {r.get('name')}", file=file,
                            field=f"data.augmentation[{i}].op", fix="use random_crop on fixed-size CIFAR images")
    return DataConfig(
        name=r.get("name"), num_classes=r.positive("num_classes"),
        augmentation=[dict(op) for op in r.get("augmentation")],
        mean=_triple(r, "mean", positive=False), std=_triple(r, "std", positive=True), decode=decode,
    )


def _positive_ints(value: list[Any]) -> bool:
    return all(isinstance(b, int) and not isinstance(b, bool) and b > 0 for b in value)


def read_inference(obj: Any, file: Path) -> InferenceConfig | None:
    """`measurement.inference` (null: no inference comparison)."""
    if obj is None:
        return None
    r = _Reader(obj, file, "measurement.inference", {
        "precisions": (list,), "batch_sizes": (list,), "calibration_images": _INT})
    precisions = r.get("precisions")
    for i, p in enumerate(precisions):
        if p not in INFERENCE_PRECISIONS:
            raise SpecError(f"must be one of {', '.join(INFERENCE_PRECISIONS)}, got {p!r}", file=file,
                            field=f"measurement.inference.precisions[{i}]")
    if len(set(precisions)) != len(precisions) or BASELINE not in precisions:
        raise SpecError(f"must list each precision once, {BASELINE} among them (the baseline of the accuracy "
                        f"drop and the speedup), got {precisions}", file=file,
                        field="measurement.inference.precisions", fix=f"e.g. [{BASELINE}, int8]")
    sizes = r.get("batch_sizes")
    if not sizes or not _positive_ints(sizes):
        raise SpecError(f"must be one or more positive integers, got {sizes}", file=file,
                        field="measurement.inference.batch_sizes")
    return InferenceConfig(precisions=tuple(precisions), batch_sizes=tuple(sizes),
                           calibration_images=r.positive("calibration_images"))


def read_measurement(obj: Any, file: Path) -> MeasureConfig:
    # `inference` may be absent (= null): a hand-written run.json need not say it (the host always does).
    r = _Reader(obj, file, "measurement", {
        "warmup_steps": _INT, "eval_every_epochs": _INT, "latency_batch_sizes": (list,),
        "latency_iterations": _INT, "target_accuracy": _OPT_NUM, "synthetic_compute": (bool,),
        "inference": (dict, type(None)), "read_every_steps": _INT,
    }, optional=("inference", "read_every_steps"))
    inference = read_inference(obj.get("inference"), file)
    if r.get("warmup_steps") < 0:
        raise SpecError("must be >= 0", file=file, field="measurement.warmup_steps")
    sizes = r.get("latency_batch_sizes")
    if not all(isinstance(b, int) and not isinstance(b, bool) and b > 0 for b in sizes):
        raise SpecError(f"must be positive integers, got {sizes}", file=file,
                        field="measurement.latency_batch_sizes")
    target = r.get("target_accuracy")
    if target is not None and not 0.0 <= target <= 1.0:
        raise SpecError(f"must be in [0, 1], got {target}", file=file, field="measurement.target_accuracy")
    return MeasureConfig(
        warmup_steps=r.get("warmup_steps"), eval_every_epochs=r.positive("eval_every_epochs"),
        latency_batch_sizes=tuple(sizes), latency_iterations=r.positive("latency_iterations"),
        target_accuracy=None if target is None else float(target),
        synthetic_compute=r.get("synthetic_compute"), inference=inference,
        read_every_steps=r.positive("read_every_steps") if "read_every_steps" in obj else 1,
    )


def read_parallel(obj: Any, file: Path, train: TrainConfig) -> ParallelConfig:
    """The `parallel` section, checked against the train section it splits."""
    r = _Reader(obj, file, "parallel", {
        "mode": (str,), "replicas": _INT, "global_batch": _INT, "per_replica_batch": _INT,
        "lr_scaling": (str,), "sync_batch_norm": (bool,),
    })
    mode, scaling, replicas = r.choice("mode", PARALLEL_MODES), r.choice("lr_scaling", LR_SCALING), r.positive(
        "replicas")
    glob, per = r.positive("global_batch"), r.positive("per_replica_batch")
    if mode == "none":
        for key, single in (("replicas", 1), ("lr_scaling", "none"), ("sync_batch_norm", False)):
            if r.get(key) != single:
                raise SpecError(f"is {json.dumps(r.get(key))}, but the run is not data-parallel", file=file,
                                field=r.name(key),
                                fix="make the run data-parallel (spec: resources.parallel: data), or leave it out")
    if glob != train.batch_size:
        raise SpecError(f"is {glob}, train.batch_size is {train.batch_size}: the batch size is the global batch",
                        file=file, field="parallel.global_batch", fix="make them equal")
    if glob % replicas:
        raise SpecError(f"the global batch {glob} does not divide evenly among {replicas} replicas", file=file,
                        field="parallel.global_batch", fix=f"use a multiple of {replicas}")
    if per != glob // replicas:
        raise SpecError(f"is {per}, but the global batch {glob} over {replicas} replicas is {glob // replicas} "
                        "per replica", file=file, field="parallel.per_replica_batch",
                        fix=f"set it to {glob // replicas}, or leave it out")
    if mode == "data" and not train.drop_last:
        raise SpecError("a data-parallel run needs drop_last: every replica takes an equal slice of each "
                        "global batch", file=file, field="train.drop_last", fix="set drop_last: true")
    return ParallelConfig(mode, replicas, glob, per, scaling, r.get("sync_batch_norm"))


def parse_config(doc: Any, file: Path) -> RunConfig:
    """Validate a run.json document (already decoded); raise SpecError naming the field."""
    r = _Reader(doc, file, "", {
        "schema": _INT, "run_id": (str,), "experiment": (str,), "sweep": (str,), "framework": (str,),
        "variant": (str,), "seed": _INT, "repeat": _INT, "model": (dict,), "optimizer": (dict,),
        "schedule": (dict,), "train": (dict,), "data": (dict,), "measurement": (dict,),
        "parallel": (dict,),
    }, optional=("parallel",))
    if r.get("schema") != SUPPORTED_SCHEMA:
        raise SpecError(f"run.json schema {r.get('schema')} is not supported (this workload reads "
                        f"{SUPPORTED_SCHEMA})", file=file, field="schema",
                        fix="use a workload image built by the same `runner` version as the host")
    run_id = r.get("run_id")
    if not run_id or any(c in run_id for c in "/\\\n") or run_id.startswith("."):
        raise SpecError(f"not a usable run id: {run_id!r}", file=file, field="run_id")
    if not 0 <= r.get("seed") <= MAX_SEED:
        raise SpecError(f"must be in [0, {MAX_SEED}] (numpy's legacy seeding takes < 2**32), got {r.get('seed')}",
                        file=file, field="seed")
    framework, variant, train = r.choice("framework", FRAMEWORKS), r.choice("variant", VARIANTS), read_train(
        r.get("train"), file)
    # A hand-written run.json may leave `parallel` out: one process (the host always writes it).
    parallel = read_parallel(doc["parallel"], file, train) if "parallel" in doc else ParallelConfig.single(
        train.batch_size)
    capabilities.check(framework, variant, r.get("train"), file, parallel=doc.get("parallel"))
    measurement = read_measurement(r.get("measurement"), file)
    check_support(framework, variant, r.get("measurement").get("inference"), file,  # inference it cannot measure
                  parallel=doc.get("parallel"))
    data = read_data(r.get("data"), file)
    # where augmentation runs: refused here (and so at plan time) when the ops cannot run on the device
    capabilities.augment_on(framework, variant, train.augment_on, data.augmentation, data.name, file)
    return RunConfig(
        run_id=run_id, experiment=r.get("experiment"), sweep=r.get("sweep"),
        framework=framework, variant=variant,
        seed=r.get("seed"), repeat=r.get("repeat"),
        train=train, data=data,
        measurement=measurement, parallel=parallel,
        model=dict(r.get("model")), optimizer=dict(r.get("optimizer")), schedule=dict(r.get("schedule")),
        path=file, doc=doc,
    )


def load_config(path: Path) -> RunConfig:
    """Read and validate run.json from disk."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError("run configuration not found", file=path, fix="pass --config run.json") from None
    except OSError as exc:
        raise SpecError(f"cannot read: {exc.strerror}", file=path) from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SpecError(f"not valid JSON: {exc.msg}", file=path, line=exc.lineno) from None
    return parse_config(doc, path)
