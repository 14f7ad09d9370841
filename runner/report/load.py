"""Reading many bundles for a comparison: their runs, epochs, latency and the studies' references.

Only the three small tables are read (not steps or telemetry), through the bundle reader, so a
comparison of a hundred bundles reads a few hundred small Parquet files. Each (bundle, run) is
one sample: the same spec reproduced twice gives twice the repeats.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.bundle.reader import read_bundle
from runner.errors import UsageError

TABLES = ["runs", "epochs", "latency"]


@dataclass
class Loaded:
    bundles: list[dict[str, Any]] = field(default_factory=list)  # name, path, experiment, spec_sha256, runs
    runs: list[dict[str, Any]] = field(default_factory=list)  # runs-table rows + "bundle", "accelerator", "uid"
    epochs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # uid -> epoch rows in order
    latency: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # uid -> latency rows
    references: list[dict[str, Any]] = field(default_factory=list)  # the specs' references, once each


def accelerator(row: dict[str, Any]) -> str:
    if row.get("gpu_count"):
        return f"{row['gpu_count']} x {row.get('gpu_name') or 'GPU'}"
    return row.get("host_cpu_model") or row.get("variant") or "?"


def load_bundles(paths: list[Path]) -> Loaded:
    if not paths:
        raise UsageError("no bundles given", fix="pass one or more bundle folders")
    out = Loaded()
    seen_refs: set[str] = set()
    for i, path in enumerate(paths):
        bundle = read_bundle(path, tables=TABLES)
        name = bundle.path.name
        manifest = bundle.manifest
        rows = bundle.runs.to_pylist()
        out.bundles.append({"name": name, "path": str(bundle.path), "experiment": manifest.get("experiment"),
                            "spec_sha256": manifest.get("spec_sha256"), "runs": len(rows),
                            "created": manifest.get("created")})
        for row in rows:
            row["bundle"] = name
            row["uid"] = f"{i}:{row['run_id']}"
            row["accelerator"] = accelerator(row)
            out.runs.append(row)
        prefix = f"{i}:"
        for table, target in (("epochs", out.epochs), ("latency", out.latency)):
            t = bundle.tables.get(table)
            if t is None:
                continue
            for rec in t.to_pylist():
                target.setdefault(prefix + rec["run_id"], []).append(rec)
        for ref in (manifest.get("spec") or {}).get("references") or []:
            if not isinstance(ref, dict):
                continue
            key = json.dumps(ref, sort_keys=True, default=str)
            if key not in seen_refs:
                seen_refs.add(key)
                out.references.append(ref | {"experiment": manifest.get("experiment")})
    for rows in out.epochs.values():
        rows.sort(key=lambda r: (r.get("epoch") is None, r.get("epoch")))
    return out
