"""Synthetic bundles for audit, report and publish tests (and benchmarks/bench_audit.py).

Bundles are written through the real BundleWriter from hand-made events: no training. Each
run's numbers come from a `values(run)` callable, so a test states exactly what it expects.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from runner.bundle.writer import BundleWriter
from runner.fingerprint.redact import Redaction
from runner.spec.plan import Plan, Run, plan_file

SPEC = """\
name: synth
dataset:
  name: cifar10
  synthetic: {train_size: 256, test_size: 64, seed: 0}
model: {name: simple_cnn}
frameworks: [pytorch, tensorflow]
repeats: 3
recipe: {epochs: 2, batch_size: 32, optimizer: sgd, lr: 0.05, deterministic: true}
measurement: {warmup_steps: 1, latency_batch_sizes: [1, 8], latency_iterations: 10, target_accuracy: 0.3}
sweeps:
  - name: throughput
    grid: {batch_size: [32, 64]}
"""

IMAGE_IDS = {"pytorch": "sha256:" + "a1" * 32, "tensorflow": "sha256:" + "b2" * 32}
VERSIONS = {"pytorch": "2.13.0", "tensorflow": "2.21.0"}
DATASET_SHA = "d" * 64


@dataclass
class RunValues:
    """What one run reports: per-epoch numbers, the per-step losses, latency per batch size."""

    test_accuracy: list[float]
    train_accuracy: list[float]
    train_loss: list[float]
    test_loss: list[float]
    images_per_s: list[float]
    losses: list[float]  # every step, in order; split evenly over the epochs
    latency_ms: dict[int, float] = field(default_factory=lambda: {1: 2.0, 8: 6.0})
    epoch_time_s: float = 0.5
    params: int = 62006
    framework_version: str | None = None
    status: str = "ok"
    time_to_target_s: float | None = 0.8
    host_load: tuple[float, float] | None = None  # (other processes' CPU %, steal %) telemetry recorded


def host_rows(other_pct: float, steal_pct: float, n: int = 3) -> list[dict[str, Any]]:
    """Telemetry rows of the host probe, as the sampler writes them, with this load throughout."""
    from runner.telemetry.schema import empty_sample

    rows = []
    for i in range(n):
        row = empty_sample(1_790_000_000.0 + i, float(i), "host")
        row.update(host_cpus=2, host_cpu_pct=min(100.0, other_pct + 50.0), host_steal_pct=steal_pct,
                   host_load_1m=1.0, other_cpu_pct=other_pct)
        rows.append(row)
    return rows


def default_values(run: Run) -> RunValues:
    """Plausible numbers that differ by framework, seed and batch size, the same for the same run."""
    rng = random.Random(f"{run.id}")
    fw = 0.05 if run.framework == "pytorch" else 0.0
    epochs = run.recipe["epochs"]
    acc = [min(0.99, 0.3 + fw + 0.1 * e + rng.uniform(-0.01, 0.01)) for e in range(epochs)]
    rate = 1000.0 * (run.recipe["batch_size"] / 32) ** 0.5 * (1.1 if run.framework == "tensorflow" else 1.0)
    losses = [2.3 * (0.97 ** i) + rng.uniform(0, 1e-3) for i in range(4 * epochs)]
    return RunValues(test_accuracy=acc, train_accuracy=[a + 0.02 for a in acc],
                     train_loss=[2.0 - 0.3 * e for e in range(epochs)],
                     test_loss=[1.9 - 0.2 * e for e in range(epochs)],
                     images_per_s=[rate * rng.uniform(0.98, 1.02) for _ in range(epochs)], losses=losses)


def write_events(out: Path, run: Run, v: RunValues, t0: float = 1_790_000_000.0) -> None:
    """events.jsonl as the workload writes it (one JSON object per line, `type` first)."""
    out.mkdir(parents=True, exist_ok=True)
    epochs = len(v.test_accuracy)
    per_epoch = max(1, len(v.losses) // max(epochs, 1))
    t = t0

    def ev(kind: str, **fields: Any) -> str:
        nonlocal t
        t += 0.01
        return json.dumps({"type": kind, "t": t, "run_id": run.id, **fields}, separators=(",", ":"))

    lines = [ev("run_start", framework=run.framework,
                framework_version=v.framework_version or VERSIONS.get(run.framework, "1.0"),
                python={"python": "3.11.2"}, build={"cuda": None, "cudnn": None},
                params={"trainable": v.params, "total": v.params}, flops_per_image=1_300_000, config_sha256="c" * 64)]
    for e in range(epochs):
        for s in range(per_epoch):
            g = e * per_epoch + s
            if g < len(v.losses):
                lines.append(ev("step", epoch=e, step=s, global_step=g, loss=v.losses[g], lr=0.05,
                                batch_size=run.recipe["batch_size"], data_time_s=0.001, compute_time_s=0.02,
                                warmup=g == 0))
        lines.append(ev("epoch", epoch=e, train_loss=v.train_loss[e], train_accuracy=v.train_accuracy[e], images=256,
                        timed_images=256, time_s=v.epoch_time_s, images_per_s=v.images_per_s[e],
                        data_time_s=0.01, compute_time_s=0.4))
        lines.append(ev("eval", epoch=e, test_loss=v.test_loss[e], test_accuracy=v.test_accuracy[e], images=64,
                        time_s=0.05))
    if v.time_to_target_s is not None:
        lines.append(ev("target_reached", accuracy=v.test_accuracy[-1], epoch=epochs - 1, time_s=v.time_to_target_s))
    for bs, ms in sorted(v.latency_ms.items()):
        lines.append(ev("latency", batch_size=bs, iterations=10, p50_ms=ms, p90_ms=ms * 1.2, p99_ms=ms * 1.5,
                        mean_ms=ms * 1.1, per_image_ms=ms / bs))
    lines.append(ev("memory", peak_device_bytes=None, peak_host_bytes=512 * 2**20))
    lines.append(ev("run_end", status=v.status, reason=None if v.status == "ok" else "diverged", error=None,
                    wall_s=2.0))
    (out / "events.jsonl").write_text("\n".join(lines) + "\n")
    (out / "result.json").write_text(json.dumps({"status": v.status}) + "\n")
    (out / "run.json").write_text(json.dumps({
        "run_id": run.id, "framework": run.framework, "seed": run.seed, "variant": run.resolved["variant"],
        "train": {"batch_size": run.recipe["batch_size"], "epochs": run.recipe["epochs"],
                  "deterministic": run.recipe["deterministic"]},
        "optimizer": {"name": run.recipe["optimizer"], "lr": run.recipe["lr"]}}) + "\n")


def environment(image_ids: dict[str, str] | None = None, versions: dict[str, str] | None = None,
                gpu: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """The environment records a docker-engine reproduction writes, with the given images and versions."""
    image_ids = image_ids or IMAGE_IDS
    versions = versions or VERSIONS
    env: dict[str, dict[str, Any]] = {
        "host": {"cpu": {"model": "AMD EPYC", "threads": 2, "vendor": "AuthenticAMD", "architecture": "x86_64",
                         "flags": ["avx", "avx2", "fma"], "frequency_mhz": {"max": None, "min": None}},
                 "memory": {"total_bytes": 24 * 2**30}, "os": {"distribution": "Debian GNU/Linux 12 (bookworm)",
                                                             "kernel": "6.1.0", "hostname": "host-0a07bd"},
                 "engine": {"available": True, "version": "20.10.24"}},
        "gpu": gpu or {"available": False, "reason": "no NVIDIA driver"},
        "engine": {"kind": "docker", "isolated": True, "version": "20.10.24"},
        "dataset": {"name": "cifar10", "synthetic": True, "source_root_sha256": DATASET_SHA},
    }
    for fw, image_id in image_ids.items():
        name = f"{fw}-cpu"
        env[f"images/{name}"] = {
            "framework": fw, "framework_version": versions[fw], "python": "3.11.2", "numpy": "1.26.4",
            "image": {"name": name, "id": image_id, "repo_tags": [f"runner/{name}:{versions[fw]}"]},
            "packages": [f"{fw}=={versions[fw]}", "numpy==1.26.4"]}
    return env


def make_plan(tmp: Path, spec: str = SPEC) -> tuple[Plan, str]:
    tmp.mkdir(parents=True, exist_ok=True)
    path = tmp / "spec.yaml"
    path.write_text(spec)
    return plan_file(path), spec


def make_bundle(root: Path, *, spec: str = SPEC, values: Callable[[Run], RunValues] = default_values,
                env: dict[str, dict[str, Any]] | None = None, image_ids: dict[str, str] | None = None,
                versions: dict[str, str] | None = None, now: datetime | None = None,
                redaction: Redaction | None = None, plan: Plan | None = None, skip: set[str] | None = None,
                run_env: dict[str, Any] | None = None) -> Path:
    """Write a finished bundle under `root` and return its path (`run_env`: more of each run's
    environment.json, e.g. its node)."""
    root.mkdir(parents=True, exist_ok=True)
    if plan is None:
        plan, spec = make_plan(root / "_spec", spec)
    env = env or environment(image_ids, versions)
    image_ids = image_ids or IMAGE_IDS
    versions = versions or VERSIONS
    now = now or datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=random.randrange(10**8))
    writer = BundleWriter.create(root / "results", plan, spec, redaction or Redaction(), now=now, fsync=False)
    for name, data in env.items():
        writer.add_environment(name, data)
    for run in plan.runs:
        if skip and run.id in skip:
            continue
        v = values(run)
        if v.framework_version is None:
            v.framework_version = versions.get(run.framework)
        out = root / "_runs" / writer.state["name"] / run.id
        write_events(out, run, v)
        writer.add_run(run, status="ok", out_dir=out, log_text=f"training {run.id}\n",
                       image_id=image_ids.get(run.framework),
                       telemetry=host_rows(*v.host_load) if v.host_load else None,
                       environment={"engine": "docker", "dataset_sha256": DATASET_SHA} | (run_env or {}))
    return writer.finalize()


def rehash(bundle: Path, rel: str) -> None:
    """Rewrite the manifest entry of `rel` (size, sha256) to match the file as it is now: an edited
    bundle whose file hashes agree, so only what the file holds is wrong."""
    import hashlib
    import json

    manifest = json.loads((bundle / "manifest.json").read_text())
    for entry in manifest["files"]:
        if entry["path"] == rel:
            entry["size"] = (bundle / rel).stat().st_size
            entry["sha256"] = hashlib.sha256((bundle / rel).read_bytes()).hexdigest()
    (bundle / "manifest.json").write_text(json.dumps(manifest))
