"""`python -m runner.workload models`: parameters and FLOPs read off the real framework model.

Parameter counts come from the built PyTorch module / Keras model (not from the description),
beside the counts the shared architecture predicts, so a builder that drifted shows up here.
"""

from __future__ import annotations

from typing import Any

from runner.workload.models import MODEL_NAMES, ModelConfig, build_arch, count_params, flops_per_image


def _config(name: str, classes: int, input_size: int | None, stem: str | None,
            layout: str | None) -> ModelConfig:
    size = input_size if input_size is not None else 32
    return ModelConfig(
        name=name, num_classes=classes, input_size=size,
        stem=(stem or "imagenet") if name == "resnet50" else None,
        layout=(layout or ("imagenet" if size == 224 else "cifar")) if name == "alexnet" else None,
    )


def _framework_counts(framework: str, arch: Any) -> tuple[int, int]:
    if framework == "pytorch":
        from runner.workload.models import torch_impl

        return torch_impl.count_params(torch_impl.build(arch))
    from runner.workload.models import tf_impl

    return tf_impl.count_params(tf_impl.build(arch))


def describe_models(framework: str, names: list[str] | None = None, classes: int = 10,
                    input_size: int | None = None, stem: str | None = None,
                    layout: str | None = None) -> list[dict[str, Any]]:
    """One row per model: trainable/total parameters of the framework model, FLOPs per image."""
    rows = []
    for name in names or MODEL_NAMES:
        cfg = _config(name, classes, input_size, stem, layout)
        arch = build_arch(cfg)
        trainable, total = _framework_counts(framework, arch)
        arch_trainable, arch_total = count_params(arch)
        rows.append({
            "model": name, "framework": framework, "num_classes": classes, "input_size": cfg.input_size,
            "stem": cfg.stem, "layout": cfg.layout,
            "trainable_params": trainable, "total_params": total, "flops_per_image": flops_per_image(arch),
            "matches_architecture": (trainable, total) == (arch_trainable, arch_total),
        })
    return rows
