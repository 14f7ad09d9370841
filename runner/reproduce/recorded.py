"""A rerun runs what the bundle recorded: each run's own id and the run.json its workload read.

The planner of today is still needed for what the host does (resources, image, mounts, time limit),
but the CONFIG a rerun hands the workload is the one the bundle holds, byte for byte in content:
a bundle made by an older runner carries an older workload (in `code/`), which knows nothing of
the keys today's planner adds (and would refuse them). A planned run takes its recorded twin's id
and config when both describe the same point of the spec: (framework, sweep, grid point, repeat,
seed), the key `runs.parquet` records for every run.

Planned runs the bundle never ran (no run.json: `not_run` rows) are left out when today's planner
gives them another id, as are runs the bundle never planned; both are said. A recorded run with no
planned twin is said too, and the reproduction report lists it as unmatched.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.spec.plan import Plan, Run

Key = tuple[str, str, str, int, int]
MAX_SHOWN = 4  # differing config paths named per note


@dataclass(frozen=True)
class RecordedRun:
    run_id: str
    key: Key
    config: dict[str, Any] | None  # the run.json the workload read; None when the run never started


@dataclass
class Binding:
    """Today's plan with every run that has a recorded twin rebound to it, and what was said."""

    plan: Plan
    notes: list[str]


def run_key(framework: str, sweep: str, params: dict[str, Any] | str, repeat: int, seed: int) -> Key:
    params_json = params if isinstance(params, str) else json.dumps(params, sort_keys=True)
    return (framework, sweep, params_json, int(repeat), int(seed))


def recorded_runs(bundle: Path) -> list[RecordedRun]:
    """The bundle's runs (from runs.parquet) with their run.json, read bounded (the bundle is verified)."""
    import pyarrow.parquet as pq

    from runner.bundle.reader import SHAPE_FIX, read_json_document, read_manifest
    from runner.errors import BundleError

    listed = {f["path"] for f in read_manifest(bundle)["files"]}
    columns = ["run_id", "framework", "sweep", "params_json", "repeat", "seed"]
    out = []
    table = bundle / "tables" / "runs.parquet"
    for row in pq.read_table(table, columns=columns).to_pylist():
        if (missing := next((c for c in columns if c != "params_json" and row[c] is None), None)) is not None:
            raise BundleError(f"run {row['run_id']} has no {missing} (null)", file=table, field=missing,
                              fix=SHAPE_FIX)
        rel = f"runs/{row['run_id']}/run.json"
        config = read_json_document(bundle / rel) if rel in listed else None
        key = run_key(row["framework"], row["sweep"], row["params_json"] or "{}", row["repeat"], row["seed"])
        out.append(RecordedRun(row["run_id"], key, config if isinstance(config, dict) else None))
    return out


def config_differences(recorded: Any, current: Any, prefix: str = "") -> tuple[list[str], list[str]]:
    """(paths whose values differ, paths only today's config has); keys only the recorded one has differ."""
    if not (isinstance(recorded, dict) and isinstance(current, dict)):
        return ([prefix or "."] if recorded != current else []), []
    differ, added = [], []
    for key in sorted(set(recorded) | set(current)):
        path = f"{prefix}.{key}" if prefix else str(key)
        if key not in recorded:
            added.append(path)
        elif key not in current:
            differ.append(path)
        else:
            d, a = config_differences(recorded[key], current[key], path)
            differ += d
            added += a
    return differ, added


def _shown(paths: list[str]) -> str:
    more = f" and {len(paths) - MAX_SHOWN} more" if len(paths) > MAX_SHOWN else ""
    return ", ".join(paths[:MAX_SHOWN]) + more


def bind_recorded(plan: Plan, recorded: list[RecordedRun]) -> Binding:
    """Rebind each planned run to its recorded twin: the twin's id, and its run.json as the config."""
    from runner.spec.workload_config import workload_config

    by_key: dict[Key, list[RecordedRun]] = {}
    for rec in recorded:
        by_key.setdefault(rec.key, []).append(rec)
    runs: list[Run] = []
    notes: list[str] = []
    used: set[str] = set()
    added_paths: set[str] = set()
    for run in plan.runs:
        twins = by_key.get(run_key(run.framework, run.sweep, run.params, run.repeat, run.seed), [])
        if len(twins) != 1:
            if not twins:
                notes.append(f"{run.id} ({run.framework}): the bundle never planned this run; not rerun")
            else:
                notes.append(f"{run.id} ({run.framework}): {len(twins)} recorded runs share its spec point; not rerun")
            continue
        (twin,) = twins
        used.add(twin.run_id)
        if twin.config is None:
            if twin.run_id == run.id:  # same planner, same id: the config it would have read is today's
                runs.append(run)
            else:
                notes.append(f"{twin.run_id} ({run.framework}): never ran in the bundle and has no recorded "
                             "run.json; not rerun")
            continue
        differ, added = config_differences({k: v for k, v in twin.config.items() if k != "run_id"},
                                           {k: v for k, v in workload_config(run).items() if k != "run_id"})
        added_paths.update(added)
        if differ:
            notes.append(f"{twin.run_id} ({run.framework}): rerun as recorded; today's planner would set "
                         f"{_shown(differ)} otherwise")
        runs.append(dataclasses.replace(run, id=twin.run_id, recorded_config=twin.config))
    for rec in recorded:
        if rec.run_id not in used:
            notes.append(f"{rec.run_id} ({rec.key[0]}): recorded, but today's plan of the spec has no such run; "
                         "not rerun")
    if added_paths:
        notes.append(f"today's planner adds {_shown(sorted(added_paths))}; the bundle's own code reads its "
                     "recorded run.json without them")
    return Binding(dataclasses.replace(plan, runs=runs), notes)
