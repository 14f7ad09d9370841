"""`describe(cfg, framework)`: parameters measured on the real framework model, and FLOPs.

For `runner models`: builds the model in the named framework (imported here, lazily) and counts
what that framework reports, next to the counts of the framework-neutral description, so a
table can show they agree. `describe_arch(cfg)` needs no framework.
"""

from __future__ import annotations

from typing import Any

from runner.errors import ModelError
from runner.workload.models import ModelConfig, build_arch, count_params, flops_per_image

FRAMEWORKS: tuple[str, ...] = ("pytorch", "tensorflow", "mxnet")


def describe_arch(cfg: ModelConfig) -> dict[str, Any]:
    """Counts and FLOPs of the description alone (pure Python)."""
    arch = build_arch(cfg)
    trainable, total = count_params(arch)
    return {"model": cfg.name, "input_shape": list(arch.input_shape), "trainable": trainable, "total": total,
            "flops_per_image": flops_per_image(arch), "config": cfg.to_dict()}


def describe(cfg: ModelConfig, framework: str) -> dict[str, Any]:
    """Trainable/total parameters measured on the `framework` model, FLOPs per image, config."""
    if framework not in FRAMEWORKS:
        raise ModelError(f"unknown framework {framework!r}", field="framework", fix=f"one of {', '.join(FRAMEWORKS)}")
    arch = build_arch(cfg)
    if framework == "pytorch":
        from runner.workload.models import torch_impl

        trainable, total = torch_impl.count_params(torch_impl.build(arch))
    elif framework == "mxnet":
        from runner.workload.models import mx_impl

        trainable, total = mx_impl.count_params(mx_impl.build(arch))
    else:
        from runner.workload.models import tf_impl

        trainable, total = tf_impl.count_params(tf_impl.build(arch))
    arch_trainable, arch_total = count_params(arch)
    return {
        "model": cfg.name,
        "framework": framework,
        "input_shape": list(arch.input_shape),
        "trainable": trainable,
        "total": total,
        "flops_per_image": flops_per_image(arch),
        "arch_trainable": arch_trainable,
        "arch_total": arch_total,
        "matches_arch": (trainable, total) == (arch_trainable, arch_total),
        "config": cfg.to_dict(),
    }
