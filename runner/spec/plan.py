"""The planner: an experiment expands into runs (sweeps x grid x frameworks x repeats).

Each run's id is a hash of its fully resolved content, so the same spec gives the same ids on
any machine, and two runs share an id only when they would do exactly the same thing. Every
distinct run is checked by the workload's own readers before the plan is returned
(runner.spec.check), so a plan only holds runs the workload accepts.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from runner.errors import SpecError
from runner.fileio import canonical_json, canonical_sha256
from runner.spec.limits import MAX_RUNS  # noqa: F401 - re-exported
from runner.spec.load import Loc, load_experiment, nearest_line, shorten, validation_to_spec_error
from runner.spec.model import Experiment, Recipe
from runner.spec.run_id import make_run_id

PLAN_SCHEMA = 1


@dataclass(frozen=True)
class Run:
    """One run: a framework training one model with one fully resolved recipe and seed."""

    id: str
    experiment: str
    sweep: str
    framework: str
    repeat: int
    seed: int
    params: dict[str, Any]
    resolved: dict[str, Any] = field(repr=False)
    # A rerun's run.json as the bundle recorded it (runner.reproduce.recorded); None: planned today.
    recorded_config: dict[str, Any] | None = field(default=None, repr=False, compare=False)

    @property
    def recipe(self) -> dict[str, Any]:
        return self.resolved["recipe"]

    def row(self) -> dict[str, Any]:
        """The run as a flat record for tables and `--json`."""
        r = self.recipe
        return {
            "id": self.id, "sweep": self.sweep, "framework": self.framework, "repeat": self.repeat,
            "seed": self.seed, "model": self.resolved["model"]["name"],
            "dataset": self.resolved["dataset"]["name"], "variant": self.resolved["variant"],
            "epochs": r["epochs"], "batch_size": r["batch_size"], "optimizer": r["optimizer"],
            "lr": r["lr"], "params": self.params,
        }


@dataclass(frozen=True)
class Plan:
    experiment: Experiment
    spec_path: Path
    runs: list[Run]

    @property
    def spec_hash(self) -> str:
        return canonical_sha256(self.experiment.model_dump(mode="json"))


def run_hash(common_json: str, recipe_json: str, framework: str, seed: int) -> str:
    """12 hex digits of sha256 over the run's resolved content (all parts canonical JSON)."""
    text = canonical_json({"common": common_json, "framework": framework, "recipe": recipe_json, "seed": seed})
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _set_dotted(target: dict, dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = target
    for key in keys[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            raise KeyError(dotted)
        node = child
    if keys[-1] not in node:
        raise KeyError(dotted)
    node[keys[-1]] = value


def _grid_points(grid: dict[str, list]) -> list[dict[str, Any]]:
    if not grid:
        return [{}]
    keys = list(grid)
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*(grid[k] for k in keys))]


def plan_experiment(exp: Experiment, spec_path: Path, lines: dict[Loc, int] | None = None,
                    max_runs: int = MAX_RUNS) -> Plan:
    """Expand an experiment into its runs; errors point at the sweep field that caused them."""
    from runner.spec.check import Origin, RunChecker, check_model, train_images
    from runner.spec.workload_config import workload_config

    lines = lines or {}
    sweeps = exp.sweeps or []
    sweep_items = [(s.name, i, s.overrides, s.grid) for i, s in enumerate(sweeps)] or [("main", None, {}, {})]

    for _name, idx, _, grid in sweep_items:
        for key, values in grid.items():
            if not values:
                raise SpecError("an empty grid axis gives no runs", file=spec_path,
                                line=nearest_line(lines, ("sweeps", idx, "grid", key)),
                                field=f"sweeps[{idx}].grid.{shorten(key, 100)}", fix="give at least one value")
    total = sum(_count(grid) for *_, grid in sweep_items) * len(exp.frameworks) * exp.repeats
    if total > max_runs:
        raise SpecError(f"the spec expands to {total} runs, above the limit of {max_runs}", file=spec_path,
                        field="sweeps", fix="shrink the grid, or pass --max-runs if you mean it")

    base_recipe = canonical_json(exp.recipe.model_dump(mode="json"))
    common = {
        "plan_schema": PLAN_SCHEMA,
        "experiment": exp.name,
        "dataset": exp.dataset.model_dump(mode="json") | {"num_classes": exp.dataset.classes},
        "model": exp.model.model_dump(mode="json"),
        "variant": exp.variant.value,
        "measurement": exp.measurement.model_dump(mode="json"),
        "resources": exp.resources.model_dump(mode="json"),
    }
    common_json = canonical_json(common)
    runs: list[Run] = []
    seen: dict[str, str] = {}
    checked: set[str] = set()
    checker = RunChecker(spec_path, lines, train_images(common["dataset"]))
    last_seed = exp.seed + exp.repeats - 1
    for name, idx, overrides, grid in sweep_items:
        for point in _grid_points(grid):
            recipe = _resolve_recipe(base_recipe, overrides, point, spec_path, lines, idx)
            recipe_json = canonical_json(recipe)
            if recipe_json not in checked:  # the workload's readers, once per distinct recipe
                checked.add(recipe_json)
                origin = Origin(name, idx, overrides, point)
                probe = Run("check", exp.name, name, exp.frameworks[0].value, exp.repeats - 1, last_seed, point,
                            common | {"framework": exp.frameworks[0].value, "seed": last_seed, "recipe": recipe})
                doc = workload_config(probe)
                if not runs:
                    check_model(doc, origin, spec_path, lines)
                checker.check(doc, origin)
                checker.check_frameworks(doc, [f.value for f in exp.frameworks], origin)
            for framework in exp.frameworks:
                for repeat in range(exp.repeats):
                    seed = exp.seed + repeat
                    resolved = common | {"framework": framework.value, "seed": seed, "recipe": recipe}
                    run_id = make_run_id(framework.value, run_hash(common_json, recipe_json, framework.value, seed))
                    if run_id in seen:
                        raise SpecError(f"sweeps '{seen[run_id]}' and '{name}' produce the same run",
                                        file=spec_path, field="sweeps", fix="remove the duplicate grid point")
                    seen[run_id] = name
                    runs.append(Run(run_id, exp.name, name, framework.value, repeat, seed, point, resolved))
    return Plan(exp, spec_path, runs)


def _count(grid: dict[str, list]) -> int:
    n = 1
    for values in grid.values():
        n *= len(values)
    return n


def _resolve_recipe(base_json: str, overrides: dict, point: dict, spec_path: Path, lines: dict[Loc, int],
                    idx: int | None) -> dict:
    recipe = json.loads(base_json)  # a fresh copy, faster than deepcopy
    for section, values in (("overrides", overrides), ("grid", point)):
        for key, value in values.items():
            try:
                _set_dotted(recipe, key, value)
            except KeyError:
                raise SpecError(f"'{shorten(key, 100)}' is not a recipe field", file=spec_path,
                                line=nearest_line(lines, ("sweeps", idx, section, key)),
                                field=f"sweeps[{idx}].{section}.{shorten(key, 100)}",
                                fix="name a field of `recipe` (dotted for nested: optimizer_params.momentum)",
                                ) from None
    try:
        return Recipe.model_validate_json(json.dumps(recipe)).model_dump(mode="json")
    except ValidationError as e:
        err = validation_to_spec_error(e, spec_path, lines, prefix=("recipe",))
        dotted = ".".join(str(x) for x in e.errors()[0]["loc"])
        section = "grid" if dotted in point else "overrides" if dotted in overrides else None
        if section is not None:
            err.field = f"sweeps[{idx}].{section}.{dotted}"
            err.line = nearest_line(lines, ("sweeps", idx, section, dotted))
        raise err from None


def plan_file(path: str | Path, max_runs: int = MAX_RUNS) -> Plan:
    path = Path(path)
    exp, lines = load_experiment(path)
    return plan_experiment(exp, path, lines, max_runs=max_runs)
