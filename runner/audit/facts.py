"""What a bundle says about itself, gathered once: its runs as rows and its environment records.

Everything the diff and the reproduction report need comes from here, read through the bundle
reader (which refuses a bundle it cannot trust), so those modules never touch files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from runner.bundle.reader import Bundle, read_bundle, read_json_document

# The columns that say what a run was (not how it ended): used to match runs across bundles.
RUN_KEY = ("framework", "sweep", "params_json", "repeat")


@dataclass
class BundleFacts:
    bundle: Bundle
    runs: list[dict[str, Any]]
    environment: dict[str, Any] = field(default_factory=dict)  # "host", "gpu", "images/x", ... -> JSON

    @property
    def name(self) -> str:
        return self.bundle.path.name

    @property
    def manifest(self) -> dict[str, Any]:
        return self.bundle.manifest

    def run(self, run_id: str) -> dict[str, Any] | None:
        return next((r for r in self.runs if r["run_id"] == run_id), None)

    def images(self) -> dict[str, dict[str, Any]]:
        """framework -> the `images/<name>` record of the image (or local Python) it ran in."""
        out = {}
        for name, data in self.environment.items():
            if name.startswith("images/") and isinstance(data, dict) and isinstance(data.get("framework"), str):
                out[data["framework"]] = data | {"_record": name}
        return out

    @cached_property
    def listed(self) -> frozenset[str]:
        return frozenset(f.get("path") for f in self.manifest["files"])

    def run_config(self, run_id: str) -> dict[str, Any] | None:
        """The run.json the workload read, or None when the run has none (it never started)."""
        rel = f"runs/{run_id}/run.json"
        if rel not in self.listed:
            return None
        return _load_json(self.bundle.file(rel))

    def cpu(self, run_id: str) -> tuple[str | None, tuple[str, ...] | None]:
        """The CPU a run computed on: model and instruction-set flags, from the run's node record
        (runs/<id>/environment.json), else the bundle host's (bundles whose node records predate
        `cpu_flags` get the host's flags only when the node's model is the host's)."""
        host = _dig(self.environment, "host", "cpu")
        rel = f"runs/{run_id}/environment.json"
        node = _dig(_load_json(self.bundle.file(rel)) if rel in self.listed else {}, "environment", "node")
        node_model, host_model = _text(node.get("cpu_model")), _text(host.get("model"))
        flags = _flags(node.get("cpu_flags"))
        if flags is None and (not node_model or node_model == host_model):
            flags = _flags(host.get("flags"))
        return node_model or host_model, flags

    def packages(self, framework: str) -> dict[str, str]:
        """The pip freeze of a framework's image as {name: version-or-line}."""
        record = self.images().get(framework, {})
        out = {}
        for line in record.get("packages") or []:
            if not isinstance(line, str) or not line.strip():
                continue
            name, sep, version = line.partition("==")
            if not sep:
                name, _, version = line.partition(" @ ")
            out[name.strip().lower()] = version.strip() or line.strip()
        return out


def as_bundle(bundle: Bundle | str | Path, tables: list[str] | None = None) -> Bundle:
    return bundle if isinstance(bundle, Bundle) else read_bundle(bundle, tables=tables)


def load_facts(bundle: Bundle | str | Path, tables: list[str] | None = None) -> BundleFacts:
    """Facts of a bundle; a path is read with the `tables` named (default: every table)."""
    b = as_bundle(bundle, tables)
    runs = b.runs.to_pylist()
    environment = {}
    listed = {f.get("path") for f in b.manifest["files"]}
    for name in (b.manifest.get("fingerprint") or {}).get("environment") or []:
        if not isinstance(name, str):
            continue
        rel = f"environment/{name}.json"
        if rel in listed:
            environment[name] = _load_json(b.file(rel))
    return BundleFacts(b, runs, environment)


def _dig(doc: Any, *keys: str) -> dict[str, Any]:
    """doc[k1][k2]... when each level is a mapping, else {} (a bundle's JSON is input: any shape)."""
    for key in keys:
        doc = doc.get(key) if isinstance(doc, dict) else None
    return doc if isinstance(doc, dict) else {}


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _flags(value: Any) -> tuple[str, ...] | None:
    return (tuple(sorted(str(f) for f in value)) or None) if isinstance(value, list) else None


def _load_json(path: Path) -> Any:
    return read_json_document(path)  # bounded: size, links, nesting and item count


def run_key(row: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(row.get(k) for k in RUN_KEY)


@dataclass(frozen=True)
class RunPair:
    a: dict[str, Any]
    b: dict[str, Any]
    by: str  # "id" or "key"


@dataclass
class Matching:
    pairs: list[RunPair]
    only_a: list[dict[str, Any]]
    only_b: list[dict[str, Any]]


def match_runs(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> Matching:
    """Pair runs by id; those left over by (framework, sweep, params, repeat) when that is unique."""
    b_by_id = {r["run_id"]: r for r in b}
    pairs, rest_a = [], []
    used: set[str] = set()
    for row in a:
        other = b_by_id.get(row["run_id"])
        if other is not None:
            pairs.append(RunPair(row, other, "id"))
            used.add(other["run_id"])
        else:
            rest_a.append(row)
    rest_b = [r for r in b if r["run_id"] not in used]
    keyed_b: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for row in rest_b:
        keyed_b.setdefault(run_key(row), []).append(row)
    keyed_a: dict[tuple[Any, ...], int] = {}
    for row in rest_a:
        keyed_a[run_key(row)] = keyed_a.get(run_key(row), 0) + 1
    only_a = []
    for row in rest_a:
        candidates = keyed_b.get(run_key(row), [])
        if len(candidates) == 1 and keyed_a[run_key(row)] == 1:
            pairs.append(RunPair(row, candidates[0], "key"))
            used.add(candidates[0]["run_id"])
        else:
            only_a.append(row)
    only_b = [r for r in b if r["run_id"] not in used]
    return Matching(pairs, only_a, only_b)
