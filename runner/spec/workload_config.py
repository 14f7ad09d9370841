"""The run configuration handed to the workload (`run.json`): plain JSON, no pydantic.

The workload runs inside a container with only the standard library, numpy and one framework,
so the host translates a planned run into this flat document, and the workload's own small
dataclasses (`ModelConfig.from_dict`, `OptimConfig.from_dict`, ...) read it back, rejecting
unknown keys. Every value here is explicit: nothing is left to a framework's default.
"""

from __future__ import annotations

from typing import Any

from runner.spec.plan import Run

WORKLOAD_CONFIG_SCHEMA = 1

# Official per-channel statistics (0..1 scale), used when a recipe gives no `normalize`.
DATASET_STATS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}


def model_section(model: dict[str, Any], num_classes: int) -> dict[str, Any]:
    return {
        "name": model["name"],
        "num_classes": num_classes,
        "input_size": model["input_size"],
        "stem": model["stem"],
        "layout": model["layout"],
        "bn_momentum": model["batch_norm"]["momentum"],
        "bn_epsilon": model["batch_norm"]["epsilon"],
        "dropout": model["dropout"],
        "init": model["init"],
        "zero_init_residual": model["zero_init_residual"],
        "classifier": model["classifier"],
        "freeze": model["freeze"],
        # The weights' identity and load rule; the file's path is a host matter (an engine mount).
        "pretrained": None if model.get("pretrained") is None else {
            "sha256": model["pretrained"]["sha256"], "skip": list(model["pretrained"]["skip"])},
    }


def optimizer_section(recipe: dict[str, Any]) -> dict[str, Any]:
    p = recipe["optimizer_params"]
    name = recipe["optimizer"]
    return {
        "name": name,
        "lr": recipe["lr"],
        "momentum": p["rmsprop_momentum"] if name == "rmsprop" else p["momentum"],
        "nesterov": p["nesterov"],
        "dampening": p["dampening"],
        "beta1": p["beta1"],
        "beta2": p["beta2"],
        "epsilon": p["rmsprop_epsilon"] if name == "rmsprop" else p["adam_epsilon"],
        "rho": p["rho"],
        "centered": p["centered"],
        "amsgrad": p["amsgrad"],
        "weight_decay": recipe["weight_decay"],
        "weight_decay_mode": recipe["weight_decay_mode"],
    }


def parallel_section(resources: dict[str, Any], recipe: dict[str, Any]) -> dict[str, Any]:
    """How many replicas train the run and the data-parallel rules (one process: mode none)."""
    data = resources["parallel"] == "data"
    replicas = (resources["replicas"] or resources["gpus"] or 1) if data else 1
    batch, dp = recipe["batch_size"], recipe["data_parallel"]
    return {
        "mode": resources["parallel"],
        "replicas": replicas,
        "global_batch": batch,
        "per_replica_batch": dp["per_replica_batch"] or batch // replicas,
        "lr_scaling": dp["lr_scaling"],
        "sync_batch_norm": dp["sync_batch_norm"],
    }


def workload_config(run: Run) -> dict[str, Any]:
    """The document the workload reads: everything it needs to do exactly this run."""
    res = run.resolved
    recipe = res["recipe"]
    dataset = res["dataset"]
    mean, std = DATASET_STATS[dataset["name"]]
    if recipe["normalize"] is not None:
        mean, std = recipe["normalize"]["mean"], recipe["normalize"]["std"]
    return {
        "schema": WORKLOAD_CONFIG_SCHEMA,
        "run_id": run.id,
        "experiment": run.experiment,
        "sweep": run.sweep,
        "framework": run.framework,
        "variant": res["variant"],
        "seed": run.seed,
        "repeat": run.repeat,
        "model": model_section(res["model"], dataset["num_classes"]),
        "optimizer": optimizer_section(recipe),
        "schedule": dict(recipe["schedule"]),
        "train": {
            "epochs": recipe["epochs"],
            "batch_size": recipe["batch_size"],
            "precision": recipe["precision"],
            "compile": recipe["compile"],
            "cuda_graphs": recipe["cuda_graphs"],
            "channels_last": recipe["channels_last"],
            "augment_on": recipe["augment_on"],
            "deterministic": recipe["deterministic"],
            "label_smoothing": recipe["label_smoothing"],
            "drop_last": recipe["drop_last"],
            "steps_per_epoch": recipe["steps_per_epoch"],
            "threads": res["resources"]["threads"],
        },
        "data": {
            "name": dataset["name"],
            "num_classes": dataset["num_classes"],
            "augmentation": list(recipe["augmentation"]),
            "mean": list(mean),
            "std": list(std),
            "decode": dataset["decode"],
        },
        "measurement": dict(res["measurement"]),
        "parallel": parallel_section(res["resources"], recipe),
    }
