"""`runner run`: flags become a one-run spec, validated like any other and kept in the bundle."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import yaml

from runner.errors import UsageError
from runner.fileio import write_atomic


def _parse_value(text: str) -> Any:
    """A `--set` value in YAML syntax: 5e-4, true, [1, 2], cifar."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def apply_setting(spec: dict, setting: str) -> None:
    key, sep, value = setting.partition("=")
    if not sep or not key:
        raise UsageError(f"--set {setting!r} is not FIELD=VALUE", field="--set",
                         fix="write e.g. --set recipe.weight_decay=5e-4")
    node = spec
    parts = key.split(".")
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise UsageError(f"--set {key}: '{part}' is not a section", field="--set",
                             fix="name a nested field, e.g. recipe.optimizer_params.momentum")
        node = child
    node[parts[-1]] = _parse_value(value)


def _validate(spec: dict) -> None:
    """Refuse bad flags before anything is written, naming the field they set."""
    import json

    from pydantic import ValidationError

    from runner.spec.load import validation_to_spec_error
    from runner.spec.model import Experiment

    try:
        exp = Experiment.model_validate_json(json.dumps(spec))
    except ValidationError as e:
        err = validation_to_spec_error(e, Path("runner run"), {})
        raise UsageError(err.message, field=err.field, fix="see `runner run --help`") from None
    for _loc, message, fix in exp.consistency_problems()[:1]:
        raise UsageError(message, field="flags", fix=fix)


def adhoc_spec(*, cache: Path, name: str, framework: str, model: str, dataset: str, data_path: str | None,
               variant: str, epochs: int, batch_size: int, optimizer: str, lr: float, seed: int,
               stem: str | None, layout: str | None, gpus: int, settings: list[str]) -> Path:
    """Write the spec these flags describe (content-addressed under the cache) and return its path."""
    model_section: dict[str, Any] = {"name": model}
    if stem is not None:
        model_section["stem"] = stem
    if layout is not None:
        model_section["layout"] = layout
    spec: dict[str, Any] = {
        "name": name,
        "description": "ad-hoc run from `runner run` flags",
        "dataset": {"name": dataset, **({"path": data_path} if data_path else {"synthetic": {}})},
        "model": model_section,
        "frameworks": [framework],
        "variant": variant,
        "recipe": {"epochs": epochs, "batch_size": batch_size, "optimizer": optimizer, "lr": lr},
        "seed": seed,
    }
    if gpus:
        spec["resources"] = {"gpus": gpus}
    for setting in settings:
        apply_setting(spec, setting)
    _validate(spec)
    text = "# Written by `runner run`; rerun with `runner reproduce` on this file.\n" + yaml.safe_dump(
        spec, sort_keys=False)
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    folder = cache / "adhoc"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}-{digest}.yaml"
    if not path.exists():
        write_atomic(path, text.encode())  # a unique temp name: two `runner run` at once do not collide
    return path
