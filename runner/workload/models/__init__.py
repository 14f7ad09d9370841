"""Models described once, framework-neutrally; built identically in PyTorch and TensorFlow.

Pure Python + numpy: no framework is imported here. `build_arch(cfg)` gives an `Arch` (a tree of
layer dataclasses); `torch_impl.build(arch)` and `tf_impl.build(arch)` turn that ONE description
into a framework model; `init_weights(arch, seed)` gives canonical weights both load.
See docs/models.md for the layer tables, layouts and every cross-framework default we set.
"""

from __future__ import annotations

from collections.abc import Callable

from runner.errors import ModelError
from runner.workload.models import alexnet, resnet50, simple_cnn, vgg16
from runner.workload.models.arch import (
    Arch,
    ParamSpec,
    count_params,
    flops_per_image,
    layer_table,
    param_specs,
    trace,
    walk,
)
from runner.workload.models.config import INIT_SCHEMES, MODEL_NAMES, ModelConfig
from runner.workload.models.init import check_weights, init_weights, weights_fingerprint

# The registry: name -> arch builder. Explicit, no discovery by import.
BUILDERS: dict[str, Callable[[ModelConfig], Arch]] = {
    "resnet50": resnet50.build,
    "alexnet": alexnet.build,
    "vgg16": vgg16.build,
    "simple_cnn": simple_cnn.build,
}
assert tuple(BUILDERS) == MODEL_NAMES


def build_arch(cfg: ModelConfig) -> Arch:
    """The framework-neutral description of `cfg`'s network (shapes checked)."""
    arch = BUILDERS[cfg.name](cfg)
    trace(arch)  # every layer fits the previous one
    paths = [s.path for s in param_specs(arch)]
    for prefix in arch.frozen:
        if not any(p == prefix or p.startswith(prefix + ".") for p in paths):
            raise ModelError(f"freeze prefix {prefix!r} names no layer with parameters in {cfg.name}",
                             field="model.freeze",
                             fix=f"use a layer-name prefix such as {paths[0].split('.')[0]!r}")
    return arch


__all__ = [
    "BUILDERS",
    "INIT_SCHEMES",
    "MODEL_NAMES",
    "Arch",
    "ModelConfig",
    "ParamSpec",
    "build_arch",
    "check_weights",
    "count_params",
    "flops_per_image",
    "init_weights",
    "layer_table",
    "param_specs",
    "walk",
    "weights_fingerprint",
]
