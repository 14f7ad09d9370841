"""Reading many bundles for a comparison: their runs, epochs, latency and the studies' references.

Only the three small tables a report needs are read, each checked the way the bundle reader
checks it (a finished bundle of a schema this runner reads, a path that stays inside the
bundle, the size the manifest records, the declared columns and types); the other files are
not touched, so a hundred bundles compare in a second or two. `runner bundle verify` checks
everything. Each (bundle, run) is one sample: the same spec reproduced twice gives twice the
repeats.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from runner.bundle.fsutil import safe_member
from runner.bundle.reader import MANIFEST, check_keyed, read_manifest
from runner.bundle.schemas import TABLES as DECLARED
from runner.errors import BundleError, UsageError

# The columns a report uses, per table (reading only these halves the work on large comparisons).
COLUMNS: dict[str, tuple[str, ...]] = {
    "runs": ("run_id", "experiment", "sweep", "framework", "repeat", "model", "dataset", "variant", "epochs",
             "batch_size", "optimizer", "lr", "params_json", "status", "epochs_completed", "final_train_loss",
             "final_train_accuracy", "final_test_loss", "final_test_accuracy", "best_test_accuracy",
             "training_time_s", "mean_images_per_s", "target_accuracy", "time_to_target_s", "params_trainable",
             "gpu_energy_j", "host_cpu_model", "gpu_name", "gpu_count"),
    "epochs": ("run_id", "epoch", "test_accuracy", "train_accuracy"),
    "latency": ("run_id", "batch_size", "per_image_ms", "p50_ms"),
    "inference": ("run_id", "precision", "batch_size", "per_image_p50_ms", "per_image_p90_ms", "per_image_p99_ms",
                  "p50_ms", "p90_ms", "p99_ms", "images_per_s", "model_bytes", "test_accuracy", "accuracy_drop",
                  "speedup", "inputs_sha256", "calibration_sha256", "error"),
}
TABLES = list(COLUMNS)
_TYPES = {name: {f.name: f.type for f in schema} for name, schema in DECLARED.items()}


@dataclass
class Loaded:
    bundles: list[dict[str, Any]] = field(default_factory=list)  # name, path, experiment, spec_sha256, runs
    runs: list[dict[str, Any]] = field(default_factory=list)  # runs-table rows + "bundle", "accelerator", "uid"
    epochs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # uid -> epoch rows in order
    latency: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # uid -> latency rows
    inference: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # uid -> inference rows (schema 3+)
    references: list[dict[str, Any]] = field(default_factory=list)  # the specs' references, once each


def accelerator(row: dict[str, Any]) -> str:
    if row.get("gpu_count"):
        return f"{row['gpu_count']} x {row.get('gpu_name') or 'GPU'}"
    return row.get("host_cpu_model") or row.get("variant") or "?"


def read_tables(root: Path, names: list[str],
                columns: dict[str, tuple[str, ...]] | None = None) -> tuple[dict[str, Any], dict[str, pa.Table]]:
    """The manifest and the named tables of a bundle (only `columns[name]` when given), each checked."""
    manifest = read_manifest(root, check_entries=False)
    mpath = root / MANIFEST
    paths = {info.get("path") for n, info in manifest["tables"].items() if n in names and isinstance(info, dict)}
    sizes = {e["path"]: e.get("size") for e in manifest["files"] if isinstance(e, dict) and e.get("path") in paths}
    out = {}
    for name in names:
        info = manifest["tables"].get(name)
        if not isinstance(info, dict):
            if name == "runs":
                raise BundleError("lists no runs table", file=mpath, fix="the bundle is corrupt")
            continue
        full = safe_member(root, info.get("path"), mpath)
        if not full.is_file():
            raise BundleError(f"lists {info.get('path')}, which is missing", file=mpath, fix="the bundle is incomplete")
        size = full.stat().st_size
        if size != sizes.get(info.get("path")):
            raise BundleError(f"is {size} bytes, the manifest says {sizes.get(info.get('path'))} (truncated or "
                              "modified)", file=full, fix="restore the bundle from a good copy")
        try:
            # one small file: no read-ahead, no thread pool (five times faster than read_table here)
            pf = pq.ParquetFile(full, pre_buffer=False)
            schema = pf.schema_arrow
            wanted = list((columns or {}).get(name) or schema.names)
            for column in wanted:
                declared = _TYPES[name].get(column)
                index = schema.get_field_index(column)
                if index < 0 or (declared is not None and not schema.field(index).type.equals(declared)):
                    raise BundleError(f"column {column} is missing or not {declared or '?'}",
                                      file=full, field=name, fix="the bundle is corrupt: verify it")
            table = pf.read(columns=wanted, use_threads=False)
        except (pa.ArrowException, OSError) as e:
            first = (str(e).splitlines() or [type(e).__name__])[0]
            raise BundleError(f"cannot be read as Parquet (truncated or corrupt: {first})", file=full,
                              fix="restore the bundle from a good copy") from None
        out[name] = check_keyed(table, full, name)
    return manifest, out


def load_bundles(paths: list[Path]) -> Loaded:
    if not paths:
        raise UsageError("no bundles given", fix="pass one or more bundle folders")
    out = Loaded()
    seen_refs: set[str] = set()
    workers = min(4, os.cpu_count() or 1, len(paths))
    with ThreadPoolExecutor(max_workers=workers) as pool:  # Parquet decoding releases the GIL
        read = list(pool.map(lambda p: read_tables(Path(p), TABLES, COLUMNS), paths))
    for i, (path, (manifest, tables)) in enumerate(zip(paths, read, strict=True)):
        name = Path(path).name
        rows = tables["runs"].to_pylist()
        out.bundles.append({"name": name, "path": str(path), "experiment": manifest.get("experiment"),
                            "spec_sha256": manifest.get("spec_sha256"), "runs": len(rows),
                            "created": manifest.get("created")})
        for row in rows:
            row["bundle"] = name
            row["uid"] = f"{i}:{row['run_id']}"
            row["accelerator"] = accelerator(row)
            out.runs.append(row)
        prefix = f"{i}:"
        for table, target in (("epochs", out.epochs), ("latency", out.latency), ("inference", out.inference)):
            t = tables.get(table)
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
