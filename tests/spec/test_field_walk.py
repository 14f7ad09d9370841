"""Every spec field takes effect: set to a non-default value, it reaches run.json (the document
the workload reads), or it is in the documented host-only / single-value lists of spec.check."""

from __future__ import annotations

import json
import types
import typing
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from runner.spec.check import HOST_ONLY_FIELDS, SINGLE_VALUE_FIELDS
from runner.spec.model import Experiment
from runner.spec.plan import plan_file
from runner.spec.workload_config import workload_config

BASE: dict[str, Any] = {
    "name": "walk",
    "dataset": {"name": "cifar10", "synthetic": {"train_size": 64, "test_size": 32}},
    "model": {"name": "simple_cnn"},
    "frameworks": ["pytorch"],
    "recipe": {"epochs": 2, "batch_size": 8, "optimizer": "sgd", "lr": 0.01},
}
RMSPROP = {"recipe.optimizer": "rmsprop"}
RESNET = {"model.name": "resnet50", "model.stem": "cifar"}
SHA = "ab" * 32
DP = {"resources.parallel": "data", "resources.replicas": 2}
RRC = {"dataset.name": "imagenet", "dataset.synthetic": {"train_size": 64, "test_size": 32, "classes": 4},
       "recipe.augmentation": [{"op": "random_resized_crop", "size": 32}]}

# spec field -> (spec settings, run.json field, the value expected there in some run)
REACHES: dict[str, tuple[dict[str, Any], str, Any]] = {
    "name": ({"name": "walk2"}, "experiment", "walk2"),
    "dataset.name": ({"dataset.name": "cifar100"}, "data.name", "cifar100"),
    "dataset.num_classes": ({"dataset.name": "cifar100", "dataset.num_classes": 100}, "model.num_classes", 100),
    "model.name": ({"model.name": "vgg16"}, "model.name", "vgg16"),
    "model.stem": (RESNET, "model.stem", "cifar"),
    "model.layout": ({"model.name": "alexnet", "model.layout": "cifar"}, "model.layout", "cifar"),
    "model.input_size": ({**RESNET, "recipe.augmentation": [{"op": "resize", "size": 224}],
                          "model.input_size": 224}, "model.input_size", 224),
    "model.batch_norm.momentum": ({"model.batch_norm": {"momentum": 0.2}}, "model.bn_momentum", 0.2),
    "model.batch_norm.epsilon": ({"model.batch_norm": {"epsilon": 1e-3}}, "model.bn_epsilon", 1e-3),
    "model.dropout": ({"model.dropout": 0.3}, "model.dropout", 0.3),
    "model.init": ({"model.init": "he_uniform"}, "model.init", "he_uniform"),
    "model.zero_init_residual": ({**RESNET, "model.zero_init_residual": True}, "model.zero_init_residual", True),
    "model.classifier": ({"model.name": "vgg16", "model.classifier": [256, 128]}, "model.classifier", [256, 128]),
    "model.pretrained.sha256": ({"model.pretrained": {"sha256": SHA}}, "model.pretrained.sha256", SHA),
    "model.pretrained.skip": ({"model.pretrained": {"sha256": SHA, "skip": ["fc3"]}}, "model.pretrained.skip",
                              ["fc3"]),
    "model.freeze": ({"model.freeze": ["conv1"]}, "model.freeze", ["conv1"]),
    "frameworks": ({"frameworks": ["tensorflow"]}, "framework", "tensorflow"),
    "variant": ({"variant": "cuda", "resources.gpus": 1}, "variant", "cuda"),
    "recipe.epochs": ({"recipe.epochs": 3}, "train.epochs", 3),
    "recipe.channels_last": ({"recipe.channels_last": True}, "train.channels_last", True),
    "recipe.augment_on": ({"recipe.augment_on": "device"}, "train.augment_on", "device"),
    "recipe.cuda_graphs": ({"variant": "cuda", "resources.gpus": 1, "recipe.cuda_graphs": True},
                           "train.cuda_graphs", True),
    "recipe.batch_size": ({"recipe.batch_size": 16}, "train.batch_size", 16),
    "recipe.optimizer": ({"recipe.optimizer": "adam"}, "optimizer.name", "adam"),
    "recipe.lr": ({"recipe.lr": 0.05}, "optimizer.lr", 0.05),
    "recipe.optimizer_params.momentum": ({"recipe.optimizer_params.momentum": 0.5}, "optimizer.momentum", 0.5),
    "recipe.optimizer_params.nesterov": ({"recipe.optimizer_params": {"momentum": 0.9, "nesterov": True}},
                                         "optimizer.nesterov", True),
    "recipe.optimizer_params.dampening": ({"recipe.optimizer_params.dampening": 0.5}, "optimizer.dampening", 0.5),
    "recipe.optimizer_params.beta1": ({"recipe.optimizer_params.beta1": 0.8}, "optimizer.beta1", 0.8),
    "recipe.optimizer_params.beta2": ({"recipe.optimizer_params.beta2": 0.99}, "optimizer.beta2", 0.99),
    "recipe.optimizer_params.adam_epsilon": ({"recipe.optimizer_params.adam_epsilon": 1e-6}, "optimizer.epsilon",
                                             1e-6),
    "recipe.optimizer_params.amsgrad": ({"recipe.optimizer_params.amsgrad": True}, "optimizer.amsgrad", True),
    "recipe.optimizer_params.rho": ({"recipe.optimizer_params.rho": 0.95}, "optimizer.rho", 0.95),
    "recipe.optimizer_params.rmsprop_epsilon": ({**RMSPROP, "recipe.optimizer_params.rmsprop_epsilon": 1e-6},
                                                "optimizer.epsilon", 1e-6),
    "recipe.optimizer_params.rmsprop_momentum": ({**RMSPROP, "recipe.optimizer_params.rmsprop_momentum": 0.5},
                                                 "optimizer.momentum", 0.5),
    "recipe.optimizer_params.centered": ({"recipe.optimizer_params.centered": True}, "optimizer.centered", True),
    "recipe.schedule.name": ({"recipe.schedule.name": "cosine"}, "schedule.name", "cosine"),
    "recipe.schedule.step_size": ({"recipe.schedule": {"name": "step", "step_size": 2}}, "schedule.step_size", 2),
    "recipe.schedule.gamma": ({"recipe.schedule.gamma": 0.5}, "schedule.gamma", 0.5),
    "recipe.schedule.milestones": ({"recipe.schedule": {"name": "multistep", "milestones": [1]}},
                                   "schedule.milestones", [1]),
    "recipe.schedule.warmup_epochs": ({"recipe.schedule.warmup_epochs": 1}, "schedule.warmup_epochs", 1),
    "recipe.schedule.min_lr": ({"recipe.schedule.min_lr": 0.001}, "schedule.min_lr", 0.001),
    "recipe.schedule.granularity": ({"recipe.schedule.granularity": "step"}, "schedule.granularity", "step"),
    "recipe.weight_decay": ({"recipe.weight_decay": 1e-4}, "optimizer.weight_decay", 1e-4),
    "recipe.weight_decay_mode": ({"recipe.weight_decay_mode": "decoupled"}, "optimizer.weight_decay_mode",
                                 "decoupled"),
    "recipe.label_smoothing": ({"recipe.label_smoothing": 0.1}, "train.label_smoothing", 0.1),
    "recipe.precision": ({"recipe.precision": "amp_bf16"}, "train.precision", "amp_bf16"),
    "recipe.compile": ({"recipe.compile": True}, "train.compile", True),
    "recipe.deterministic": ({"recipe.deterministic": True}, "train.deterministic", True),
    "recipe.augmentation[random_crop].op": ({"recipe.augmentation": [{"op": "random_crop"}]},
                                            "data.augmentation.0.op", "random_crop"),
    "recipe.augmentation[random_crop].padding": ({"recipe.augmentation": [{"op": "random_crop", "padding": 2}]},
                                                 "data.augmentation.0.padding", 2),
    "recipe.augmentation[horizontal_flip].op": ({"recipe.augmentation": [{"op": "horizontal_flip"}]},
                                                "data.augmentation.0.op", "horizontal_flip"),
    "recipe.augmentation[horizontal_flip].p": ({"recipe.augmentation": [{"op": "horizontal_flip", "p": 0.3}]},
                                               "data.augmentation.0.p", 0.3),
    "recipe.augmentation[brightness].op": ({"recipe.augmentation": [{"op": "brightness"}]},
                                           "data.augmentation.0.op", "brightness"),
    "recipe.augmentation[brightness].max_delta": ({"recipe.augmentation": [{"op": "brightness", "max_delta": 0.1}]},
                                                  "data.augmentation.0.max_delta", 0.1),
    "recipe.augmentation[resize].op": ({"recipe.augmentation": [{"op": "resize", "size": 32}]},
                                       "data.augmentation.0.op", "resize"),
    "recipe.augmentation[resize].size": ({**RESNET, "model.input_size": 224,
                                          "recipe.augmentation": [{"op": "resize", "size": 224}]},
                                         "data.augmentation.0.size", 224),
    "recipe.augmentation[resize].method": ({"recipe.augmentation": [{"op": "resize", "size": 32,
                                                                     "method": "nearest"}]},
                                           "data.augmentation.0.method", "nearest"),
    "recipe.augmentation[random_resized_crop].op": (RRC, "data.augmentation.0.op", "random_resized_crop"),
    "recipe.augmentation[random_resized_crop].size": (RRC, "data.augmentation.0.size", 32),
    "recipe.augmentation[random_resized_crop].scale": (
        {**RRC, "recipe.augmentation": [{"op": "random_resized_crop", "size": 32, "scale": [0.5, 1.0]}]},
        "data.augmentation.0.scale", [0.5, 1.0]),
    "recipe.augmentation[random_resized_crop].ratio": (
        {**RRC, "recipe.augmentation": [{"op": "random_resized_crop", "size": 32, "ratio": [0.5, 2.0]}]},
        "data.augmentation.0.ratio", [0.5, 2.0]),
    "dataset.decode": ({**RRC, "dataset.decode": "jpeg"}, "data.decode", "jpeg"),
    "dataset.synthetic.classes": ({**RRC, "dataset.synthetic": {"train_size": 60, "test_size": 30, "classes": 3}},
                                  "model.num_classes", 3),
    "recipe.normalize.mean": ({"recipe.normalize": {"mean": [0.5, 0.5, 0.5], "std": [0.2, 0.2, 0.2]}},
                              "data.mean", [0.5, 0.5, 0.5]),
    "recipe.normalize.std": ({"recipe.normalize": {"mean": [0.5, 0.5, 0.5], "std": [0.2, 0.2, 0.2]}},
                             "data.std", [0.2, 0.2, 0.2]),
    "recipe.drop_last": ({"recipe.drop_last": False}, "train.drop_last", False),
    "recipe.steps_per_epoch": ({"recipe.steps_per_epoch": 3}, "train.steps_per_epoch", 3),
    "sweeps[].name": ({"sweeps": [{"name": "s1"}]}, "sweep", "s1"),
    "sweeps[].overrides": ({"sweeps": [{"name": "s", "overrides": {"optimizer_params.beta1": 0.7}}]},
                           "optimizer.beta1", 0.7),
    "sweeps[].grid": ({"sweeps": [{"name": "s", "grid": {"optimizer_params.beta2": [0.9, 0.95]}}]},
                      "optimizer.beta2", 0.95),
    "repeats": ({"repeats": 2}, "repeat", 1),
    "seed": ({"seed": 5}, "seed", 5),
    "measurement.warmup_steps": ({"measurement.warmup_steps": 3}, "measurement.warmup_steps", 3),
    "measurement.eval_every_epochs": ({"measurement.eval_every_epochs": 2}, "measurement.eval_every_epochs", 2),
    "measurement.latency_batch_sizes": ({"measurement.latency_batch_sizes": [4]},
                                        "measurement.latency_batch_sizes", [4]),
    "measurement.latency_iterations": ({"measurement.latency_iterations": 7}, "measurement.latency_iterations", 7),
    "measurement.read_every_steps": ({"measurement.read_every_steps": 3}, "measurement.read_every_steps", 3),
    "measurement.target_accuracy": ({"measurement.target_accuracy": 0.6}, "measurement.target_accuracy", 0.6),
    "measurement.synthetic_compute": ({"measurement.synthetic_compute": True}, "measurement.synthetic_compute",
                                      True),
    "measurement.inference.precisions": ({"measurement.inference": {"precisions": ["fp32", "bf16"],
                                                                    "calibration_images": 8}},
                                         "measurement.inference.precisions", ["fp32", "bf16"]),
    "measurement.inference.batch_sizes": ({"measurement.inference": {"batch_sizes": [2, 4], "calibration_images": 8}},
                                          "measurement.inference.batch_sizes", [2, 4]),
    "measurement.inference.calibration_images": ({"measurement.inference": {"calibration_images": 16}},
                                                 "measurement.inference.calibration_images", 16),
    "resources.threads": ({"resources.threads": 2}, "train.threads", 2),
    "resources.parallel": (DP, "parallel.mode", "data"),
    "resources.replicas": (DP, "parallel.replicas", 2),
    "recipe.data_parallel.per_replica_batch": ({**DP, "recipe.data_parallel.per_replica_batch": 4},
                                               "parallel.per_replica_batch", 4),
    "recipe.data_parallel.lr_scaling": ({**DP, "recipe.data_parallel.lr_scaling": "linear"},
                                        "parallel.lr_scaling", "linear"),
    "recipe.data_parallel.sync_batch_norm": ({"variant": "cuda", "resources.gpus": 2, "resources.parallel": "data",
                                              "recipe.data_parallel.sync_batch_norm": True},
                                             "parallel.sync_batch_norm", True),
}


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]


def _is_list(annotation: Any) -> bool:
    if typing.get_origin(annotation) is list:
        return True
    nested = (typing.Union, types.UnionType, typing.Annotated)
    return any(_is_list(a) for a in typing.get_args(annotation) if typing.get_origin(a) in nested)


def spec_fields(cls: type[BaseModel] = Experiment, prefix: str = "") -> list[str]:
    """Every leaf field of the spec models, dotted; `[]` marks list items, `[op]` an augmentation kind."""
    out = []
    for name, info in cls.model_fields.items():
        models = _models_in(info.annotation)
        if not models:
            out.append(prefix + name)
        for model in models:
            tag = ""
            if _is_list(info.annotation):
                tag = "[]" if len(models) == 1 else f"[{typing.get_args(model.model_fields['op'].annotation)[0]}]"
            out += spec_fields(model, f"{prefix}{name}{tag}.")
    return out


def _set(doc: dict, dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    for key in parents:
        doc = doc.setdefault(key, {})
    doc[last] = value


def _get(doc: Any, dotted: str) -> Any:
    for key in dotted.split("."):
        if isinstance(doc, list):
            doc = doc[int(key)] if int(key) < len(doc) else None
        else:
            doc = doc.get(key) if isinstance(doc, dict) else None
    return doc


def _docs(spec: dict, tmp_path: Path) -> list[dict]:
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return [workload_config(run) for run in plan_file(path).runs]


def test_every_field_is_accounted_for():
    fields = spec_fields()
    assert len(fields) > 80
    listed = set(REACHES) | set(HOST_ONLY_FIELDS) | set(SINGLE_VALUE_FIELDS)
    assert sorted(set(fields) - listed) == [], "a spec field nobody proved reaches run.json"
    assert sorted(listed - set(fields)) == [], "a listed field the spec does not have"
    assert not set(REACHES) & (set(HOST_ONLY_FIELDS) | set(SINGLE_VALUE_FIELDS))


@pytest.mark.parametrize("field", sorted(REACHES))
def test_field_reaches_run_json(field: str, tmp_path: Path):
    settings, target, value = REACHES[field]
    spec = json.loads(json.dumps(BASE))
    for dotted, v in settings.items():
        _set(spec, dotted, v)
    base = _docs(BASE, tmp_path)
    assert all(_get(doc, target) != value for doc in base), f"{value!r} is the default at {target}"
    docs = _docs(spec, tmp_path)
    assert any(_get(doc, target) == value for doc in docs), [_get(doc, target) for doc in docs]


@pytest.mark.parametrize("field", sorted(SINGLE_VALUE_FIELDS))
def test_single_value_fields_refuse_any_other(field: str, tmp_path: Path):
    from runner.errors import SpecError

    spec = json.loads(json.dumps(BASE))
    _set(spec, field, "other")
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    with pytest.raises(SpecError, match=field.replace(".", r"\.")):
        plan_file(path)
