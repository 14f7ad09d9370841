"""`ModelConfig`: every choice that shapes a model, explicit, validated, recorded with the run."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from runner.errors import ModelError
from runner.workload.sections import from_section

MODEL_NAMES: tuple[str, ...] = ("resnet50", "alexnet", "vgg16", "simple_cnn")
INIT_SCHEMES: tuple[str, ...] = ("he_normal_fan_out", "he_uniform", "glorot_uniform", "torch_default")
INPUT_SIZES: tuple[int, ...] = (32, 224)

# Which input sizes each model (and layout) is defined for.
_SIZES: dict[str, tuple[int, ...]] = {"resnet50": (32, 224), "vgg16": (32,), "simple_cnn": (32,)}
_ALEXNET_LAYOUT_SIZE = {"cifar": 32, "imagenet": 224}
# Hidden widths of the classifier when the config gives none.
DEFAULT_CLASSIFIER: dict[str, tuple[int, ...]] = {
    "alexnet/imagenet": (4096, 1024),  # the published fine-tuning head: 9216-4096-1024-classes
    "alexnet/cifar": (4096, 4096),
    "vgg16": (512, 512),
}


@dataclass(frozen=True)
class ModelConfig:
    """A model and every recipe choice that changes its parameters or numerics.

    Model-specific fields are None where they do not apply (`stem`: resnet50 only, `layout`:
    alexnet only, `classifier`: alexnet and vgg16; None there means the documented default).
    `bn_momentum` follows PyTorch's convention (weight of the new batch statistic).
    """

    name: str
    num_classes: int
    input_size: int = 32
    stem: str | None = None
    layout: str | None = None
    bn_momentum: float = 0.1
    bn_epsilon: float = 1e-5
    dropout: float = 0.5
    init: str = "he_normal_fan_out"
    zero_init_residual: bool = False
    classifier: tuple[int, ...] | None = None
    freeze: tuple[str, ...] = ()
    # Weights to start from: {"sha256": 64 hex, "skip": [prefixes keeping the seeded init]} or None.
    pretrained: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.classifier, list):
            object.__setattr__(self, "classifier", tuple(self.classifier))
        if isinstance(self.freeze, list):
            object.__setattr__(self, "freeze", tuple(self.freeze))
        _validate(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], *, source: str | None = None) -> ModelConfig:
        """Read a config (e.g. the `model` section of run.json); unknown keys are errors."""
        return from_section(cls, d, "model", ModelError, required=("name", "num_classes"), source=source)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able values, for the run record."""
        d = asdict(self)
        d["classifier"] = None if self.classifier is None else list(self.classifier)
        d["freeze"] = list(self.freeze)
        if self.pretrained is not None:
            d["pretrained"] = {"sha256": self.pretrained["sha256"], "skip": list(self.pretrained["skip"])}
        return d

    def classifier_widths(self) -> tuple[int, ...]:
        """The hidden widths in effect (alexnet, vgg16)."""
        if self.classifier is not None:
            return self.classifier
        key = f"alexnet/{self.layout}" if self.name == "alexnet" else self.name
        return DEFAULT_CLASSIFIER[key]


def _bad(field: str, message: str, fix: str | None = None) -> ModelError:
    return ModelError(message, field=f"model.{field}", fix=fix)


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_real(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _validate(c: ModelConfig) -> None:
    if c.name not in MODEL_NAMES:
        raise _bad("name", f"unknown model {c.name!r}", f"one of {', '.join(MODEL_NAMES)}")
    if not _is_int(c.num_classes) or c.num_classes < 2:
        raise _bad("num_classes", f"must be an integer >= 2, got {c.num_classes!r}")
    if c.input_size not in INPUT_SIZES or not _is_int(c.input_size):
        raise _bad("input_size", f"must be 32 or 224, got {c.input_size!r}")

    if c.name == "resnet50":
        if c.stem not in ("imagenet", "cifar"):
            raise _bad("stem", f"resnet50 needs stem imagenet or cifar, got {c.stem!r}",
                       "imagenet: 7x7/2 conv + 3x3/2 max-pool (unchanged); cifar: 3x3/1 conv, no max-pool")
    elif c.stem is not None:
        raise _bad("stem", f"applies to resnet50 only, not {c.name}", "remove it")

    if c.name == "alexnet":
        if c.layout not in _ALEXNET_LAYOUT_SIZE:
            raise _bad("layout", f"alexnet needs layout cifar or imagenet, got {c.layout!r}")
        if c.input_size != _ALEXNET_LAYOUT_SIZE[c.layout]:
            raise _bad("input_size", f"alexnet layout {c.layout} takes {_ALEXNET_LAYOUT_SIZE[c.layout]}x"
                       f"{_ALEXNET_LAYOUT_SIZE[c.layout]} inputs, not {c.input_size}")
    else:
        if c.layout is not None:
            raise _bad("layout", f"applies to alexnet only, not {c.name}", "remove it")
        if c.input_size not in _SIZES[c.name]:
            raise _bad("input_size", f"{c.name} is defined for input sizes {_SIZES[c.name]}, not {c.input_size}")

    if c.classifier is not None:
        if c.name not in ("alexnet", "vgg16"):
            raise _bad("classifier", f"applies to alexnet and vgg16 only, not {c.name}", "remove it")
        if not isinstance(c.classifier, tuple) or not all(_is_int(w) and w > 0 for w in c.classifier):
            raise _bad("classifier", f"must be a list of positive widths, got {c.classifier!r}")
    if not isinstance(c.zero_init_residual, bool):
        raise _bad("zero_init_residual", "must be true or false")
    if c.zero_init_residual and c.name != "resnet50":
        raise _bad("zero_init_residual", f"applies to resnet50 only, not {c.name}", "set it false")
    if not _is_real(c.bn_momentum) or not 0.0 < c.bn_momentum <= 1.0:
        raise _bad("bn_momentum", f"must be in (0, 1] (PyTorch convention), got {c.bn_momentum!r}")
    if not _is_real(c.bn_epsilon) or c.bn_epsilon <= 0:
        raise _bad("bn_epsilon", f"must be > 0, got {c.bn_epsilon!r}")
    if not _is_real(c.dropout) or not 0.0 <= c.dropout < 1.0:
        raise _bad("dropout", f"must be in [0, 1), got {c.dropout!r}")
    if c.init not in INIT_SCHEMES:
        raise _bad("init", f"unknown init {c.init!r}", f"one of {', '.join(INIT_SCHEMES)}")
    if not isinstance(c.freeze, tuple) or not all(isinstance(p, str) and p for p in c.freeze):
        raise _bad("freeze", f"must be a list of layer-name prefixes, got {c.freeze!r}")
    _validate_pretrained(c.pretrained)


def _validate_pretrained(p: object) -> None:
    if p is None:
        return
    if not isinstance(p, dict) or set(p) != {"sha256", "skip"}:
        raise _bad("pretrained", f"must be null or {{sha256, skip}}, got {p!r}")
    sha = p["sha256"]
    if not isinstance(sha, str) or len(sha) != 64 or any(ch not in "0123456789abcdef" for ch in sha):
        raise _bad("pretrained.sha256", f"must be 64 lowercase hex characters, got {sha!r}")
    skip = p["skip"]
    if not isinstance(skip, list | tuple) or not all(isinstance(x, str) and x for x in skip):
        raise _bad("pretrained.skip", f"must be a list of layer-name prefixes, got {skip!r}")
