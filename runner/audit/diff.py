"""The provenance difference between two bundles, ranked by how much each can move results.

`provenance_diff(a, b)` compares what each bundle recorded about where and how it ran, field
by field, in groups ranked from most to least likely to change the numbers (GROUPS below);
`metric_deltas(a, b)` sets the metrics of matching runs side by side (matched by run id, or by
(framework, sweep, params, repeat) when ids differ); `timing_notes` says, for each timing
metric that moved beyond the throughput tolerance, whether either run's host was busy.
`runner reproduce BUNDLE` uses these to explain a miss, `runner bundle diff` prints them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.audit.facts import BundleFacts, load_facts, match_runs
from runner.audit.hostload import likely_cause
from runner.audit.tolerances import TOLERANCES, is_timing
from runner.bundle.reader import Bundle

# (group, what it covers), most result-moving first; rank = position + 1.
GROUPS: tuple[tuple[str, str], ...] = (
    ("image", "container image digest"),
    ("framework", "framework, CUDA and cuDNN versions, and the framework's build"),
    ("gpu", "GPU model and driver"),
    ("cpu", "CPU model, threads and instruction sets"),
    ("clocks", "clocks and power limits"),
    ("dataset", "dataset hash"),
    ("code", "code tree hash"),
    ("spec", "spec fields, resolved per run"),
    ("engine", "engine kind and isolation"),
    ("packages", "other packages in the image"),
    ("variables", "recorded environment variables"),
    ("host", "operating system, kernel, memory"),
    ("other", "everything else recorded"),
)
RANK = {name: i + 1 for i, (name, _) in enumerate(GROUPS)}
RUNS_ONLY = ["runs"]  # the diff needs no steps or telemetry: a path is read with the runs table only

ABSENT = "(absent)"
_GPU_CLOCK_KEYS = ("max_clocks_mhz", "application_clocks_mhz", "power_limit_w", "default_power_limit_w",
                   "enforced_power_limit_w", "power_limit_range_w", "pcie")
_GPU_MODEL_KEYS = ("name", "compute_capability", "memory_total_bytes", "vbios_version", "ecc", "mig",
                   "persistence_mode", "compute_mode")
# What an image was built from and by: equal lockfile, recipe, catalog entry and base with unequal
# IDs means another builder (Docker's classic builder vs podman's buildah) or another checkout.
_RECIPE_LABELS = {"lock_sha256": "io.runner.lock_sha256", "recipe_sha256": "io.runner.recipe_sha256",
                  "catalog_entry": "io.runner.catalog_entry", "base_id": "io.runner.base_id",
                  "builder": "io.runner.builder", "revision": "org.opencontainers.image.revision"}
_LONG_TEXT = ("config", "parallel")  # build descriptions: compared through their parsed fields instead


@dataclass(frozen=True)
class DiffItem:
    group: str
    field: str
    a: Any
    b: Any
    rank: int
    runs: tuple[str, ...] = ()  # the runs (of bundle A) a per-run field differs in; () = bundle-wide

    def text(self, width: int = 60) -> tuple[str, str]:
        return short(self.a, width), short(self.b, width)


@dataclass(frozen=True)
class MetricDelta:
    run_a: str
    run_b: str
    framework: str
    metric: str
    a: Any
    b: Any
    delta: float | None
    relative: float | None  # delta / |a|
    matched_by: str  # "id" | "key"


def short(value: Any, width: int = 60) -> str:
    if value is ABSENT or value is None:
        return ABSENT if value is ABSENT else "null"
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= width else text[: width - 3] + "..."


def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts (and lists of dicts) as {"a.b.0.c": scalar or list of scalars}."""
    out: dict[str, Any] = {}
    if isinstance(obj, dict):
        for key, value in obj.items():
            out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    elif isinstance(obj, list) and any(isinstance(v, dict | list) for v in obj):
        for i, value in enumerate(obj):
            out.update(flatten(value, f"{prefix}.{i}" if prefix else str(i)))
    else:
        out[prefix] = obj
    return out


def _compare(group: str, a: dict[str, Any], b: dict[str, Any], prefix: str = "") -> list[DiffItem]:
    items = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key, ABSENT), b.get(key, ABSENT)
        if va != vb:
            items.append(DiffItem(group, f"{prefix}{key}", va, vb, RANK[group]))
    return items


def _distinct(rows: list[dict[str, Any]], column: str) -> Any:
    values = sorted({str(r.get(column)) for r in rows if r.get(column) is not None})
    if not values:
        return None
    return values[0] if len(values) == 1 else values


def _per_framework(facts: BundleFacts) -> dict[str, dict[str, dict[str, Any]]]:
    """group -> {"<framework>.<field>": value}: what each framework's runs and image recorded."""
    out: dict[str, dict[str, Any]] = {"image": {}, "framework": {}, "packages": {}, "other": {}}
    frameworks = sorted({r["framework"] for r in facts.runs if r.get("framework")})
    images = facts.images()
    for fw in frameworks:
        rows = [r for r in facts.runs if r.get("framework") == fw and r.get("status") == "ok"] or \
            [r for r in facts.runs if r.get("framework") == fw]
        out["image"][f"{fw}.image_id"] = _distinct(rows, "image_id")
        for col in ("framework_version", "cuda_version", "cudnn_version", "python_version"):
            out["framework"][f"{fw}.{col}"] = _distinct(rows, col)
        rec = images.get(fw, {})
        image = rec.get("image") if isinstance(rec.get("image"), dict) else {}
        for key in ("name", "repo_tags", "repo_digests", "architecture", "os", "variant"):
            if key in image:
                out["image"][f"{fw}.image.{key}"] = image[key]
        labels = image.get("labels") if isinstance(image.get("labels"), dict) else {}
        for key, label in _RECIPE_LABELS.items():  # two IDs, one recipe? these say (docs/images.md)
            if label in labels:
                out["image"][f"{fw}.image.{key}"] = labels[label]
        if "numpy" in rec:
            out["framework"][f"{fw}.numpy"] = rec.get("numpy")
        build = rec.get("build") if isinstance(rec.get("build"), dict) else {}
        for key, value in flatten({k: v for k, v in build.items() if k not in _LONG_TEXT}).items():
            out["framework"][f"{fw}.build.{key}"] = value
        for name, version in facts.packages(fw).items():
            out["packages"][f"{fw}.{name}"] = version
        for key in ("machine", "platform", "implementation", "threads", "cpu_count"):
            if key in rec:
                out["other"][f"{fw}.{key}"] = rec[key]
    return out


def _gpu(facts: BundleFacts) -> tuple[dict[str, Any], dict[str, Any]]:
    fp = facts.environment.get("gpu") or {}
    summary = (facts.manifest.get("fingerprint") or {}).get("gpu") or {}
    model = {k: summary.get(k) for k in ("gpu_name", "gpu_count", "gpu_driver_version", "cuda_driver_version")}
    clocks: dict[str, Any] = {}
    for dev in fp.get("devices") or []:
        if not isinstance(dev, dict):
            continue
        i = dev.get("index")
        for key in _GPU_MODEL_KEYS:
            if key in dev:
                model[f"gpu{i}.{key}"] = dev[key]
        for key in _GPU_CLOCK_KEYS:
            if key in dev:
                for sub, value in flatten({key: dev[key]}).items():
                    clocks[f"gpu{i}.{sub}"] = value
    return model, clocks


def _cpu(facts: BundleFacts) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    host = facts.environment.get("host") or {}
    cpu = host.get("cpu") or {}
    summary = (facts.manifest.get("fingerprint") or {}).get("host") or {}
    model = {"host_cpu_model": summary.get("host_cpu_model"), "host_cpu_threads": summary.get("host_cpu_threads")}
    for key in ("vendor", "architecture", "sockets", "cores", "threads", "usable_threads"):
        if key in cpu:
            model[f"cpu.{key}"] = cpu[key]
    clocks = {f"cpu.{k}": v for k, v in flatten({"frequency_mhz": cpu.get("frequency_mhz"),
                                                 "governors": cpu.get("governors")}).items()}
    rest = flatten({k: v for k, v in host.items() if k not in ("cpu", "engine")})
    rest.update(flatten({"numa_nodes": cpu.get("numa_nodes")}, "cpu"))
    return model, clocks, rest


def _flag_diff(a: BundleFacts, b: BundleFacts) -> list[DiffItem]:
    fa = set(((a.environment.get("host") or {}).get("cpu") or {}).get("flags") or [])
    fb = set(((b.environment.get("host") or {}).get("cpu") or {}).get("flags") or [])
    if fa == fb:
        return []
    only_a, only_b = sorted(fa - fb), sorted(fb - fa)
    return [DiffItem("cpu", "cpu.flags", f"{len(fa)} flags, only here: {' '.join(only_a) or '-'}",
                     f"{len(fb)} flags, only here: {' '.join(only_b) or '-'}", RANK["cpu"])]


def _dataset(facts: BundleFacts) -> dict[str, Any]:
    ds = (facts.manifest.get("fingerprint") or {}).get("dataset") or facts.environment.get("dataset") or {}
    out = {k: ds.get(k) for k in ("name", "synthetic", "source_root_sha256", "prepared_root_sha256", "root_sha256")
           if k in ds}
    out["runs.dataset_sha256"] = _distinct(facts.runs, "dataset_sha256")
    return out


def _code(facts: BundleFacts) -> dict[str, Any]:
    code = (facts.manifest.get("fingerprint") or {}).get("code") or {}
    return {"tree_sha256": code.get("tree_sha256"), "git.commit": (code.get("git") or {}).get("commit"),
            "git.dirty": (code.get("git") or {}).get("dirty"), "runner_version": facts.manifest.get("runner_version")}


def _engine(facts: BundleFacts) -> dict[str, Any]:
    out = {f"engine.{k}": v for k, v in flatten(facts.environment.get("engine") or {}).items()}
    out["runs.engine"] = _distinct(facts.runs, "engine")
    out["engine_version"] = ((facts.manifest.get("fingerprint") or {}).get("host") or {}).get("engine_version")
    return out


def _spec(a: BundleFacts, b: BundleFacts) -> list[DiffItem]:
    """The spec as each bundle recorded it, then each matched run's resolved config (run.json)."""
    skip = {"name", "description", "references"}
    sa = flatten({k: v for k, v in (a.manifest.get("spec") or {}).items() if k not in skip})
    sb = flatten({k: v for k, v in (b.manifest.get("spec") or {}).items() if k not in skip})
    items = _compare("spec", sa, sb, "spec.")
    per_field: dict[tuple[str, str, str], list[str]] = {}
    values: dict[tuple[str, str, str], tuple[Any, Any]] = {}
    for pair in match_runs(a.runs, b.runs).pairs:
        ca, cb = a.run_config(pair.a["run_id"]), b.run_config(pair.b["run_id"])
        if ca is None or cb is None:
            continue
        fa = {k: v for k, v in flatten(ca).items() if k != "run_id"}
        fb = {k: v for k, v in flatten(cb).items() if k != "run_id"}
        for key in sorted(set(fa) | set(fb)):
            va, vb = fa.get(key, ABSENT), fb.get(key, ABSENT)
            if va != vb:
                sig = (key, short(va, 10_000), short(vb, 10_000))
                per_field.setdefault(sig, []).append(pair.a["run_id"])
                values[sig] = (va, vb)
    for sig, runs in per_field.items():
        va, vb = values[sig]
        items.append(DiffItem("spec", f"run.{sig[0]}", va, vb, RANK["spec"], tuple(runs)))
    return items


def provenance_diff(a: Bundle | BundleFacts | str | Path, b: Bundle | BundleFacts | str | Path) -> list[DiffItem]:
    """Every recorded difference between two bundles, most result-moving group first."""
    fa = a if isinstance(a, BundleFacts) else load_facts(a, RUNS_ONLY)
    fb = b if isinstance(b, BundleFacts) else load_facts(b, RUNS_ONLY)
    items: list[DiffItem] = []
    pa_, pb_ = _per_framework(fa), _per_framework(fb)
    items += _compare("image", pa_["image"], pb_["image"])
    items += _compare("framework", pa_["framework"], pb_["framework"])
    (ga, gca), (gb, gcb) = _gpu(fa), _gpu(fb)
    items += _compare("gpu", ga, gb)
    (ca, cca, ra), (cb, ccb, rb) = _cpu(fa), _cpu(fb)
    items += _compare("cpu", ca, cb) + _flag_diff(fa, fb)
    items += _compare("clocks", gca | cca, gcb | ccb)
    items += _compare("dataset", _dataset(fa), _dataset(fb))
    items += _compare("code", _code(fa), _code(fb))
    items += _spec(fa, fb)
    items += _compare("engine", _engine(fa), _engine(fb))
    items += _compare("packages", pa_["packages"], pb_["packages"])
    items += _compare("variables", fa.environment.get("variables") or {}, fb.environment.get("variables") or {})
    items += _compare("host", ra, rb)
    items += _compare("other", pa_["other"], pb_["other"])
    return sorted(items, key=lambda i: i.rank)  # stable: each group keeps its own order


# The runs-table metrics set side by side for matched runs, in this order.
DELTA_METRICS = (
    "status", "epochs_completed", "final_test_accuracy", "best_test_accuracy", "final_train_accuracy",
    "final_test_loss", "final_train_loss", "mean_images_per_s", "training_time_s", "time_to_target_s",
    "params_trainable", "flops_per_image", "peak_host_memory_bytes", "peak_device_memory_bytes", "gpu_energy_j",
)


def metric_deltas(a: Bundle | BundleFacts | str | Path, b: Bundle | BundleFacts | str | Path,
                  metrics: tuple[str, ...] = DELTA_METRICS) -> list[MetricDelta]:
    """For each matching run, each metric: A's value, B's, and the difference (numbers only)."""
    fa = a if isinstance(a, BundleFacts) else load_facts(a, RUNS_ONLY)
    fb = b if isinstance(b, BundleFacts) else load_facts(b, RUNS_ONLY)
    out = []
    for pair in match_runs(fa.runs, fb.runs).pairs:
        for metric in metrics:
            va, vb = pair.a.get(metric), pair.b.get(metric)
            delta = rel = None
            if _number(va) and _number(vb):
                delta = vb - va
                rel = delta / abs(va) if va else None
            out.append(MetricDelta(pair.a["run_id"], pair.b["run_id"], pair.a.get("framework") or "?", metric,
                                   va, vb, delta, rel, pair.by))
    return out


@dataclass(frozen=True)
class TimingNote:
    """A timing metric of a matched run pair that moved beyond the throughput band, and host load's word on it."""

    run_a: str
    run_b: str
    framework: str
    metric: str
    a: float
    b: float
    relative: float
    cause: str

    def line(self) -> str:
        return f"{self.run_a} {self.framework} {self.metric} {self.a:.4g} vs {self.b:.4g} ({self.relative:+.0%}): " \
               f"{self.cause}"


def timing_notes(a: BundleFacts, b: BundleFacts, deltas: list[MetricDelta]) -> list[TimingNote]:
    """For each delta of a timing metric beyond the throughput tolerance of the run's variant: the likely cause."""
    band = TOLERANCES["mean_images_per_s"]
    out = []
    for d in deltas:
        if not is_timing(d.metric) or d.relative is None:
            continue
        row_a, row_b = a.run(d.run_a) or {}, b.run(d.run_b) or {}
        if abs(d.relative) <= band.band_for(row_a.get("variant")):
            continue
        out.append(TimingNote(d.run_a, d.run_b, d.framework, d.metric, float(d.a), float(d.b), d.relative,
                              likely_cause(row_a, row_b, ("A", "B"))))
    return out


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)
