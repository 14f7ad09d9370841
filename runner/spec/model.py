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
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class Strict(BaseModel):
    """Base: unknown keys are errors, values are not coerced across types silently."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


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


PositiveInt = Annotated[int, Field(gt=0)]
NonNegInt = Annotated[int, Field(ge=0)]
PositiveFloat = Annotated[float, Field(gt=0)]
NonNegFloat = Annotated[float, Field(ge=0)]
Probability = Annotated[float, Field(ge=0, le=1)]

NUM_CLASSES = {DatasetName.cifar10: 10, DatasetName.cifar100: 100, DatasetName.imagenet: 1000}


class SyntheticData(Strict):
    """Learnable synthetic data written in the official on-disk format of `like`."""

    train_size: PositiveInt = 2000
    test_size: PositiveInt = 500
    seed: NonNegInt = 0


class Dataset(Strict):
    name: DatasetName
    path: str | None = Field(
        default=None, description="Folder or archive, relative to --data-root unless absolute."
    )
    sha256: str | None = Field(
        default=None, description="Root hash of the dataset's per-file manifest (runner data verify)."
    )
    synthetic: SyntheticData | None = None
    num_classes: PositiveInt | None = None

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
        if self.synthetic is not None and self.name is DatasetName.imagenet:
            raise ValueError("synthetic data exists for cifar10 and cifar100 only")
        return self

    @property
    def classes(self) -> int:
        return self.num_classes or NUM_CLASSES[self.name]


class BatchNorm(Strict):
    momentum: Probability = Field(0.1, description="PyTorch convention: weight of the new batch statistic")
    epsilon: PositiveFloat = 1e-5


class Model(Strict):
    name: ModelName
    stem: Literal["imagenet", "cifar"] | None = Field(None, description="resnet50 only")
    layout: Literal["imagenet", "cifar"] | None = Field(None, description="alexnet only")
    input_size: PositiveInt = 32
    batch_norm: BatchNorm = BatchNorm()
    dropout: Probability = 0.5
    init: Literal["he_normal_fan_out", "he_uniform", "glorot_uniform"] = "he_normal_fan_out"
    zero_init_residual: bool = False
    classifier: list[PositiveInt] | None = Field(None, description="hidden widths of the classifier")
    pretrained: str | None = Field(None, description="canonical weights (.npz) to start from")
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
    """Every parameter of every optimizer, explicit. Only those of `recipe.optimizer` are used."""

    momentum: NonNegFloat = 0.9
    nesterov: bool = False
    dampening: NonNegFloat = 0.0
    beta1: Probability = 0.9
    beta2: Probability = 0.999
    adam_epsilon: PositiveFloat = 1e-8
    amsgrad: bool = False
    rho: Probability = 0.9
    rmsprop_epsilon: PositiveFloat = 1e-7
    rmsprop_momentum: NonNegFloat = 0.0
    centered: bool = False


class Schedule(Strict):
    name: Literal["constant", "step", "multistep", "cosine"] = "constant"
    step_size: PositiveInt | None = None
    gamma: PositiveFloat = 0.1
    milestones: list[PositiveInt] = Field(default_factory=list)
    warmup_epochs: NonNegInt = 0
    min_lr: NonNegFloat = 0.0

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
    size: PositiveInt


Augmentation = Annotated[RandomCrop | HorizontalFlip | Brightness | Resize, Field(discriminator="op")]


class Normalize(Strict):
    mean: tuple[float, float, float]
    std: tuple[PositiveFloat, PositiveFloat, PositiveFloat]


class Recipe(Strict):
    """The training recipe. Fields named in a sweep's `grid` may take a list there."""

    epochs: PositiveInt
    batch_size: PositiveInt
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
    deterministic: bool = False
    augmentation: list[Augmentation] = Field(default_factory=list)
    normalize: Normalize | None = Field(None, description="default: the dataset's official mean/std")
    drop_last: bool = True
    steps_per_epoch: PositiveInt | None = Field(None, description="cap steps per epoch (throughput sweeps)")


class Measurement(Strict):
    warmup_steps: NonNegInt = 5
    eval_every_epochs: PositiveInt = 1
    latency_batch_sizes: list[PositiveInt] = Field(default_factory=list)
    latency_iterations: PositiveInt = 50
    target_accuracy: Probability | None = None
    synthetic_compute: bool = Field(False, description="compute-only throughput on device-resident data")


class Resources(Strict):
    gpus: NonNegInt = 0
    cpus: PositiveFloat | None = None
    threads: PositiveInt | None = Field(None, description="intra-op threads set in every framework")
    memory: str | None = Field(None, pattern=r"^[0-9]+[kmgKMG]?$")
    shm: str = Field("1g", pattern=r"^[0-9]+[kmgKMG]?$")
    time_limit_s: PositiveInt | None = None


class Execution(Strict):
    engine: Literal["auto", "docker", "local"] = "auto"
    executor: Literal["inline"] = "inline"  # a Slurm executor is planned; not accepted until it exists


class Sweep(Strict):
    """One sweep: recipe overrides plus a grid whose axes are recipe fields (dotted for nested)."""

    name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")]
    description: str = ""
    overrides: dict[str, int | float | str | bool] = Field(default_factory=dict)
    grid: dict[str, list[int | float | str | bool]] = Field(default_factory=dict)


class Reference(Strict):
    """A number a published study reported, to set beside ours in `runner compare`."""

    source: str
    match: dict[str, int | float | str] = Field(default_factory=dict)
    metrics: dict[str, float]


class Experiment(Strict):
    name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$")]
    description: str = ""
    dataset: Dataset
    model: Model
    frameworks: Annotated[list[Framework], Field(min_length=1)]
    variant: Variant = Variant.cpu
    recipe: Recipe
    sweeps: list[Sweep] = Field(default_factory=list)
    repeats: PositiveInt = 1
    seed: NonNegInt = 0
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
        if self.variant is not Variant.cuda and self.resources.gpus > 0:
            problems.append((("resources", "gpus"),
                             f"resources.gpus > 0 needs variant cuda, not {self.variant.value}",
                             "set variant: cuda, or gpus: 0"))
        return problems
