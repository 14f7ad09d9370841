"""The experiment spec: pydantic models for the YAML a user writes.

Every hyperparameter that frameworks default differently has a field here with the value
`runner` uses unless the spec says otherwise; the resolved value is recorded with every run,
and the workload sets it explicitly in each framework. Unknown keys are rejected everywhere.

Conventions worth knowing (they differ between frameworks):
- `batch_norm.momentum` is PyTorch's convention: the weight of the NEW batch statistic
  (Keras' momentum = 1 - this).
- `weight_decay_mode: l2` adds `weight_decay * w` to the gradient (coupled, PyTorch's
  `weight_decay=`); `decoupled` shrinks weights by `lr * weight_decay * w` (AdamW style).
- Optimizer formulas are the canonical ones in docs/models.md, implemented identically in
  every framework.

One schema: the workload's run-config dataclasses (ModelConfig, OptimConfig, ScheduleConfig,
the harness's readers, augmentation ops) decide what a run may be; the planner runs them on
every distinct run (runner.spec.check). Where a field here maps onto a dataclass field, its
default is read from that dataclass. Numbers are bounded (runner.spec.limits) so every value
fits the bundle columns it lands in; floats must be finite.
"""

from __future__ import annotations

from dataclasses import MISSING, fields
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from runner.spec.limits import (
    INT32_MAX,
    MAX_BATCH,
    MAX_CLASSES,
    MAX_EPOCHS,
    MAX_NAME_CHARS,
    MAX_SEED,
    MAX_STEPS,
    MAX_SYNTHETIC_IMAGES,
    MAX_TEXT_CHARS,
    MAX_WIDTH,
)
from runner.workload.models.config import ModelConfig
from runner.workload.optim import OptimConfig
from runner.workload.schedule import ScheduleConfig


class Strict(BaseModel):
    """Base: unknown keys are errors, values are not coerced across types silently."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


def _defaults(cls: type) -> dict[str, Any]:
    """A workload dataclass's field defaults: the one source of the defaults mapped here."""
    return {f.name: f.default for f in fields(cls) if f.default is not MISSING}


_MODEL, _OPT, _SCHEDULE = _defaults(ModelConfig), _defaults(OptimConfig), _defaults(ScheduleConfig)


class Framework(StrEnum):
    pytorch = "pytorch"
    tensorflow = "tensorflow"
    mxnet = "mxnet"


class Variant(StrEnum):
    cpu = "cpu"
    cuda = "cuda"
    ppc64le = "ppc64le"


class DatasetName(StrEnum):
    cifar10 = "cifar10"
    cifar100 = "cifar100"
    imagenet = "imagenet"


class ModelName(StrEnum):
    resnet50 = "resnet50"
    alexnet = "alexnet"
    vgg16 = "vgg16"
    simple_cnn = "simple_cnn"


class OptimizerName(StrEnum):
    sgd = "sgd"
    adam = "adam"
    rmsprop = "rmsprop"


PositiveInt = Annotated[int, Field(gt=0, le=INT32_MAX)]
NonNegInt = Annotated[int, Field(ge=0, le=INT32_MAX)]
Epochs = Annotated[int, Field(gt=0, le=MAX_EPOCHS)]
EpochCount = Annotated[int, Field(ge=0, le=MAX_EPOCHS)]
BatchSize = Annotated[int, Field(gt=0, le=MAX_BATCH)]
Steps = Annotated[int, Field(gt=0, le=MAX_STEPS)]
Seed = Annotated[int, Field(ge=0, le=MAX_SEED)]
Width = Annotated[int, Field(gt=0, le=MAX_WIDTH)]
Images = Annotated[int, Field(gt=0, le=MAX_SYNTHETIC_IMAGES)]
Text = Annotated[str, Field(max_length=MAX_TEXT_CHARS)]
PositiveFloat = Annotated[float, Field(gt=0)]
NonNegFloat = Annotated[float, Field(ge=0)]
Probability = Annotated[float, Field(ge=0, le=1)]

NUM_CLASSES = {DatasetName.cifar10: 10, DatasetName.cifar100: 100, DatasetName.imagenet: 1000}
SYNTHETIC_IMAGENET_CLASSES = 10


class SyntheticData(Strict):
    """Learnable synthetic data written in the official on-disk format of `like`."""

    train_size: Images = 2000
    test_size: Images = 500
    seed: Seed = 0
    classes: Annotated[int, Field(gt=0, le=1000)] | None = Field(
        None, description="imagenet only: class folders written (default 10); sizes must be multiples of it")


class Dataset(Strict):
    name: DatasetName
    path: str | None = Field(
        default=None, max_length=4096, description="Folder or archive, relative to --data-root unless absolute."
    )
    sha256: str | None = Field(
        default=None, description="Root hash of the dataset's per-file manifest (runner data verify)."
    )
    synthetic: SyntheticData | None = None
    num_classes: Annotated[int, Field(gt=0, le=MAX_CLASSES)] | None = Field(
        None, description="must equal the dataset's own class count (the workload checks the data)")
    decode: Literal["shards", "jpeg"] = Field(
        "shards", description="imagenet: `shards` (pre-decoded once into .npy on the host) or `jpeg` (the run "
                              "decodes the mounted JPEGs each epoch: random-resized-crop on the original image)")

    @field_validator("sha256")
    @classmethod
    def _hex64(cls, v: str | None) -> str | None:
        if v is not None and (len(v) != 64 or any(c not in "0123456789abcdef" for c in v)):
            raise ValueError("must be 64 lowercase hex characters (a sha256)")
        return v

    @model_validator(mode="after")
    def _source(self) -> Dataset:
        if self.path is None and self.synthetic is None:
            raise ValueError("give `path` (a dataset on disk) or `synthetic` (generated stand-in)")
        if self.path is not None and self.synthetic is not None:
            raise ValueError("give either `path` or `synthetic`, not both")
        syn = self.synthetic
        if syn is not None and syn.classes is not None and self.name is not DatasetName.imagenet:
            raise ValueError("synthetic.classes is for imagenet (CIFAR has its official class count)")
        if syn is not None and self.name is DatasetName.imagenet:
            k = self.own_classes
            if syn.train_size % k or syn.test_size % k:
                raise ValueError(f"synthetic imagenet: train_size and test_size must be multiples of classes ({k})")
        return self

    @property
    def own_classes(self) -> int:
        """The dataset's class count: official, or synthetic ImageNet's `classes` (default 10)."""
        if self.synthetic is not None and self.name is DatasetName.imagenet:
            return self.synthetic.classes or SYNTHETIC_IMAGENET_CLASSES
        return NUM_CLASSES[self.name]

    @property
    def classes(self) -> int:
        return self.num_classes or self.own_classes


class BatchNorm(Strict):
    momentum: Probability = Field(_MODEL["bn_momentum"],
                                  description="PyTorch convention: weight of the new batch statistic")
    epsilon: PositiveFloat = _MODEL["bn_epsilon"]


class Pretrained(Strict):
    """Weights to start from, pinned by the sha256 of the canonical .npz (`runner weights import`).

    The hash is the identity; `path` is only where to look first (relative to --data-root unless
    absolute; default `<data-root>/weights/<sha256>.npz`). Every model tensor comes from the file
    except those under a `skip` prefix (e.g. a new classifier), which keep the seeded init.
    """

    sha256: str
    path: str | None = None
    skip: list[Annotated[str, Field(min_length=1)]] = Field(default_factory=list)

    @field_validator("sha256")
    @classmethod
    def _hex64(cls, v: str) -> str:
        if len(v) != 64 or any(c not in "0123456789abcdef" for c in v):
            raise ValueError("must be 64 lowercase hex characters (the sha256 `runner weights import` printed)")
        return v


class Model(Strict):
    name: ModelName
    stem: Literal["imagenet", "cifar"] | None = Field(None, description="resnet50 only")
    layout: Literal["imagenet", "cifar"] | None = Field(None, description="alexnet only")
    input_size: Width = _MODEL["input_size"]
    batch_norm: BatchNorm = BatchNorm()
    dropout: Probability = _MODEL["dropout"]
    init: Literal["he_normal_fan_out", "he_uniform", "glorot_uniform"] = _MODEL["init"]
    zero_init_residual: bool = _MODEL["zero_init_residual"]
    classifier: list[Width] | None = Field(None, description="hidden widths of the classifier")
    pretrained: Pretrained | None = Field(None, description="canonical weights (.npz) to start from, by sha256")
    freeze: list[str] = Field(default_factory=list, description="layer-name prefixes not trained")

    @model_validator(mode="after")
    def _per_model(self) -> Model:
        if self.name is ModelName.resnet50 and self.stem is None:
            raise ValueError("resnet50 needs `stem: imagenet` (unchanged) or `stem: cifar`")
        if self.name is not ModelName.resnet50 and self.stem is not None:
            raise ValueError(f"`stem` applies to resnet50 only, not {self.name.value}")
        if self.name is ModelName.alexnet and self.layout is None:
            raise ValueError("alexnet needs `layout: cifar` or `layout: imagenet` (224x224)")
        if self.name is not ModelName.alexnet and self.layout is not None:
            raise ValueError(f"`layout` applies to alexnet only, not {self.name.value}")
        return self


class Optimizer(Strict):
    """Every parameter of every optimizer, explicit. Only those of `recipe.optimizer` are used.

    Defaults are OptimConfig's (PyTorch's): `momentum` and `rmsprop_momentum` both become
    OptimConfig.momentum, `adam_epsilon` and `rmsprop_epsilon` both OptimConfig.epsilon.
    """

    momentum: NonNegFloat = _OPT["momentum"]
    nesterov: bool = _OPT["nesterov"]
    dampening: NonNegFloat = _OPT["dampening"]
    beta1: Probability = _OPT["beta1"]
    beta2: Probability = _OPT["beta2"]
    adam_epsilon: PositiveFloat = _OPT["epsilon"]
    amsgrad: bool = _OPT["amsgrad"]
    rho: Probability = _OPT["rho"]
    rmsprop_epsilon: PositiveFloat = _OPT["epsilon"]
    rmsprop_momentum: NonNegFloat = _OPT["momentum"]
    centered: bool = _OPT["centered"]


class Schedule(Strict):
    name: Literal["constant", "step", "multistep", "cosine"] = _SCHEDULE["name"]
    step_size: Epochs | None = _SCHEDULE["step_size"]
    gamma: PositiveFloat = _SCHEDULE["gamma"]
    milestones: list[Epochs] = Field(default_factory=list)
    warmup_epochs: EpochCount = _SCHEDULE["warmup_epochs"]
    min_lr: NonNegFloat = _SCHEDULE["min_lr"]
    granularity: Literal["epoch", "step"] = Field(_SCHEDULE["granularity"],
                                                  description="cosine: recompute the lr per epoch or per step")

    @model_validator(mode="after")
    def _complete(self) -> Schedule:
        if self.name == "step" and self.step_size is None:
            raise ValueError("a `step` schedule needs `step_size` (epochs between decays)")
        if self.name == "multistep" and not self.milestones:
            raise ValueError("a `multistep` schedule needs `milestones` (epochs)")
        return self


class RandomCrop(Strict):
    op: Literal["random_crop"]
    padding: NonNegInt = 4


class HorizontalFlip(Strict):
    op: Literal["horizontal_flip"]
    p: Probability = 0.5


class Brightness(Strict):
    op: Literal["brightness"]
    max_delta: Probability = 0.2


class Resize(Strict):
    op: Literal["resize"]
    size: Width
    method: Literal["bilinear", "nearest"] = "bilinear"


class RandomResizedCrop(Strict):
    """torchvision's RandomResizedCrop on ImageNet-format data (decisions: runner.data.augment)."""

    op: Literal["random_resized_crop"]
    size: Width = 224
    scale: Annotated[list[PositiveFloat], Field(min_length=2, max_length=2)] = [0.08, 1.0]
    ratio: Annotated[list[PositiveFloat], Field(min_length=2, max_length=2)] = [3 / 4, 4 / 3]


Augmentation = Annotated[RandomCrop | HorizontalFlip | Brightness | Resize | RandomResizedCrop,
                         Field(discriminator="op")]


class Normalize(Strict):
    mean: tuple[float, float, float]
    std: tuple[PositiveFloat, PositiveFloat, PositiveFloat]


class DataParallel(Strict):
    """The data-parallel rules of a run with `resources.parallel: data` (recorded in run.json's
    `parallel` section). `recipe.batch_size` is the GLOBAL batch, split evenly over the replicas."""

    per_replica_batch: BatchSize | None = Field(
        None, description="images per replica per step; must equal batch_size / replicas (default: that)")
    lr_scaling: Literal["none", "linear"] = Field(
        "none", description="linear: the lr used is recipe.lr x replicas; none: recipe.lr as given")
    sync_batch_norm: bool = Field(False, description="BatchNorm statistics over the global batch (else per replica)")


class Recipe(Strict):
    """The training recipe. Fields named in a sweep's `grid` may take a list there."""

    epochs: Epochs
    batch_size: BatchSize
    optimizer: OptimizerName
    lr: PositiveFloat
    optimizer_params: Optimizer = Optimizer()
    schedule: Schedule = Schedule()
    weight_decay: NonNegFloat = 0.0
    weight_decay_mode: Literal["l2", "decoupled"] = "l2"
    loss: Literal["cross_entropy"] = "cross_entropy"
    label_smoothing: Probability = 0.0
    precision: Literal["fp32", "amp_fp16", "amp_bf16"] = "fp32"
    compile: bool = Field(False, description="torch.compile / XLA jit_compile")
    cuda_graphs: bool = Field(False, description="PyTorch on cuda: torch.compile(mode='reduce-overhead'), the "
                                                 "step replayed as CUDA graphs (TensorFlow: use compile, XLA)")
    channels_last: bool = Field(False, description="channels-last memory layout (PyTorch channels_last; "
                                                   "TensorFlow is NHWC already)")
    deterministic: bool = False
    augmentation: list[Augmentation] = Field(default_factory=list)
    # after `augmentation`: its validator reads the ops (a grid point is re-validated whole)
    augment_on: Literal["auto", "host", "device"] = Field(
        "auto", description="where training augmentation runs: auto (the device for PyTorch on cuda when "
                            "every op can run there, else the host), host, or device (PyTorch only)")
    normalize: Normalize | None = Field(None, description="default: the dataset's official mean/std")
    drop_last: bool = True
    steps_per_epoch: Steps | None = Field(None, description="cap steps per epoch (throughput sweeps)")
    data_parallel: DataParallel = DataParallel()

    @field_validator("augment_on")
    @classmethod
    def _device_ops(cls, value: str, info: Any) -> str:
        """device with an op the device path cannot apply: the rule of runner.workload.capabilities
        (which frameworks may ask for device is checked per framework by the planner)."""
        if value != "device":
            return value
        from runner.errors import SpecError
        from runner.workload.capabilities import augment_on

        ops = [op.model_dump() for op in info.data.get("augmentation", [])]
        try:
            augment_on("pytorch", "cpu", value, ops, "imagenet")
        except SpecError as exc:
            raise ValueError(f"{exc.message}; use augment_on: auto or host") from None
        return value


class Inference(Strict):
    """The inference comparison after training: each precision's latency, size and test accuracy
    (docs/workload.md "Inference"). int8 is post-training static quantization calibrated on the
    first `calibration_images` training images, the same ones in every framework."""

    precisions: Annotated[list[Literal["fp32", "fp16", "bf16", "int8"]], Field(min_length=1)] = Field(
        default_factory=lambda: ["fp32", "int8"], description="fp32 is the baseline and must be listed")
    batch_sizes: Annotated[list[BatchSize], Field(min_length=1)] = Field(default_factory=lambda: [1, 32])
    calibration_images: Images = Field(256, description="int8 calibration: the first N training images")


class Measurement(Strict):
    warmup_steps: Annotated[int, Field(ge=0, le=MAX_STEPS)] = 5
    eval_every_epochs: Epochs = 1
    latency_batch_sizes: list[BatchSize] = Field(default_factory=list)
    latency_iterations: Steps = 50
    target_accuracy: Probability | None = None
    synthetic_compute: bool = Field(False, description="compute-only throughput on device-resident data")
    read_every_steps: Steps = Field(
        20, description="training loss/accuracy/step times read back from the device every N steps (1: every step)")
    inference: Inference | None = Field(None, description="fp32 / fp16 / bf16 / int8 inference comparison")


class Resources(Strict):
    gpus: NonNegInt = Field(0, description="CUDA devices; more than one needs parallel: data (one replica each)")
    parallel: Literal["none", "data"] = Field("none", description="data: one run trained by several replicas")
    replicas: Annotated[int, Field(gt=0, le=1024)] | None = Field(
        None, description="data-parallel replicas: processes/devices on CPU (required there); on cuda = gpus")
    cpus: Annotated[float, Field(gt=0, le=4096)] | None = None
    threads: Annotated[int, Field(gt=0, le=4096)] | None = Field(
        None, description="intra-op threads set in every framework")
    memory: str | None = Field(None, pattern=r"^[0-9]+[kmgKMG]?$")
    shm: str = Field("1g", pattern=r"^[0-9]+[kmgKMG]?$")
    time_limit_s: PositiveInt | None = None


SlurmName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
# minutes | minutes:seconds | hours:minutes:seconds | days-hours[:minutes[:seconds]] (sbatch --time)
SlurmTime = Annotated[str, Field(pattern=r"^(\d{1,3}-\d{1,2}(:\d{1,2}){0,2}|\d{1,6}(:\d{1,2}){0,2})$")]
# name[:type][:count], comma-separated (sbatch --gres): gpu:2, gpu:a100:1
SlurmGres = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,31}(:[A-Za-z0-9_.-]{1,32}){0,2}"
                                        r"(,[a-z][a-z0-9_]{0,31}(:[A-Za-z0-9_.-]{1,32}){0,2}){0,7}$")]
SLURM_FIELDS = ("partition", "time", "gres", "account", "qos", "max_parallel")


class Execution(Strict):
    """Where runs execute (engine) and who places them (executor: inline here, or Slurm jobs).

    The Slurm fields become the jobs' sbatch options (docs/slurm.md); they are refused with
    `executor: inline`, where nothing would read them.
    """

    engine: Literal["auto", "docker", "podman", "local"] = "auto"
    executor: Literal["inline", "slurm"] = "inline"
    partition: SlurmName | None = Field(None, description="sbatch --partition (default: the cluster's)")
    time: SlurmTime | None = Field(None, description="sbatch --time: the job's limit, Slurm's format")
    gres: SlurmGres | None = Field(None, description="sbatch --gres (default: gpu:N for resources.gpus: N)")
    account: SlurmName | None = Field(None, description="sbatch --account")
    qos: SlurmName | None = Field(None, description="sbatch --qos")
    max_parallel: Annotated[int, Field(ge=1, le=100_000)] | None = Field(
        None, description="at most this many of the sweep's jobs run at once (sbatch --array %N)")
    ship_images: bool = Field(
        False, description="carry each image to the nodes as an archive on the shared filesystem (--cache); "
                           "a node that lacks the image loads it before its run")

    @model_validator(mode="after")
    def _slurm_only(self) -> Execution:
        given = [f for f in SLURM_FIELDS if getattr(self, f) is not None]
        given += ["ship_images"] if self.ship_images else []
        if given and self.executor != "slurm":
            raise ValueError(f"`{given[0]}` applies to the Slurm executor only: add `executor: slurm` or drop it")
        if self.ship_images and self.engine == "local":
            raise ValueError("`ship_images` carries container images, and `engine: local` runs none: "
                             "use engine: docker or podman, or drop ship_images")
        if self.executor == "slurm" and self.engine == "auto":
            raise ValueError("with `executor: slurm` name the engine the nodes run (`engine: docker`, "
                             "`engine: podman` or `engine: local`): `auto` would be decided on the "
                             "submitting machine")
        return self


class Sweep(Strict):
    """One sweep: recipe overrides plus a grid whose axes are recipe fields (dotted for nested)."""

    name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]*$", max_length=MAX_NAME_CHARS)]
    description: Text = ""
    overrides: dict[str, int | float | str | bool] = Field(default_factory=dict)
    grid: dict[str, list[int | float | str | bool]] = Field(default_factory=dict)


class Reference(Strict):
    """A number a published study reported, to set beside ours in `runner compare`."""

    source: str
    match: dict[str, int | float | str] = Field(default_factory=dict)
    metrics: dict[str, float]


class Experiment(Strict):
    name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$", max_length=MAX_NAME_CHARS)]
    description: Text = ""
    dataset: Dataset
    model: Model
    frameworks: Annotated[list[Framework], Field(min_length=1)]
    variant: Variant = Variant.cpu
    recipe: Recipe
    sweeps: list[Sweep] = Field(default_factory=list)
    repeats: PositiveInt = 1
    seed: Seed = 0
    measurement: Measurement = Measurement()
    resources: Resources = Resources()
    execution: Execution = Execution()
    references: list[Reference] = Field(default_factory=list)

    @field_validator("frameworks")
    @classmethod
    def _unique(cls, v: list[Framework]) -> list[Framework]:
        if len(set(v)) != len(v):
            raise ValueError("each framework once")
        return v

    def consistency_problems(self) -> list[tuple[tuple[str | int, ...], str, str]]:
        """Cross-field problems as (location, message, fix); the loader reports them with lines."""
        problems = []
        names = [s.name for s in self.sweeps]
        for i, name in enumerate(names):
            if name in names[:i]:
                problems.append((("sweeps", i, "name"), f"sweep name '{name}' is used twice",
                                 "give every sweep its own name"))
        if self.variant is Variant.cuda and self.resources.gpus == 0:
            problems.append((("variant",), "variant cuda needs resources.gpus >= 1",
                             "set resources.gpus, or use variant cpu"))
        ds = self.dataset
        if ds.num_classes is not None and ds.num_classes != ds.own_classes:
            problems.append((("dataset", "num_classes"), f"num_classes {ds.num_classes} differs from the "
                             f"{ds.own_classes} classes of {ds.name.value}; the workload refuses data with "
                             "another class count", "remove dataset.num_classes"))
        problems += self._parallel_problems()
        if self.seed + self.repeats - 1 > MAX_SEED:
            problems.append((("seed",), f"seed + repeats - 1 is above {MAX_SEED} (numpy's legacy seeding, "
                             "which Keras uses, takes < 2**32)", "use a smaller seed"))
        if self.variant is not Variant.cuda and self.resources.gpus > 0:
            problems.append((("resources", "gpus"),
                             f"resources.gpus > 0 needs variant cuda, not {self.variant.value}",
                             "set variant: cuda, or gpus: 0"))
        return problems

    def _parallel_problems(self) -> list[tuple[tuple[str | int, ...], str, str]]:
        res, problems = self.resources, []
        if res.parallel != "data":
            if res.gpus > 1:
                problems.append((("resources", "gpus"),
                                 f"resources.gpus is {res.gpus}, but a run without `parallel` uses one GPU",
                                 "set resources.parallel: data (one replica per GPU), or resources.gpus: 1"))
            if res.replicas is not None:
                problems.append((("resources", "replicas"), "resources.replicas applies to data-parallel runs",
                                 "set resources.parallel: data, or remove resources.replicas"))
        elif self.variant is Variant.cuda:
            if res.replicas is not None and res.replicas != res.gpus:
                problems.append((("resources", "replicas"),
                                 f"resources.replicas is {res.replicas}, but a cuda run has one replica per GPU "
                                 f"(resources.gpus: {res.gpus})", "remove resources.replicas, or make it equal gpus"))
        elif res.replicas is None:
            problems.append((("resources", "parallel"),
                             f"a data-parallel run on {self.variant.value} needs resources.replicas (processes)",
                             "set resources.replicas: 2 (or more)"))
        return problems
