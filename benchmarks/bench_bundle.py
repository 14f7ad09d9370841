"""Bundle and telemetry figures, each printed beside its target.

1. A run of 1,000,000 step events: parse its events.jsonl (reported, no target: it is JSON
   parsing of ~200 MB), write the bundle (events redacted and copied, Parquet tables, every
   file's sha256, manifest), read it back (manifest checks + every table). Target: writing and
   reading each under 2 s. The load average is printed: on a shared machine wall times grow
   with it, so CPU seconds are printed beside them.
2. Telemetry: the cost of one sample (process tree through psutil; a running container through
   the Docker stats stream when an engine answers) against a step time. Target: < 1 % of
   throughput at the default 1 Hz.

Run: .venv/bin/python benchmarks/bench_bundle.py [--steps N] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from runner.bundle.events import read_events  # noqa: E402
from runner.bundle.reader import read_bundle  # noqa: E402
from runner.bundle.writer import BundleWriter  # noqa: E402
from runner.fingerprint.redact import Redaction  # noqa: E402
from runner.spec.plan import plan_file  # noqa: E402
from runner.telemetry.sampler import TelemetrySampler  # noqa: E402

SPEC = """\
name: bench-bundle
dataset: {name: cifar10, synthetic: {train_size: 256, test_size: 64}}
model: {name: simple_cnn}
frameworks: [pytorch]
recipe: {epochs: 10, batch_size: 64, optimizer: sgd, lr: 0.1}
"""
TYPICAL_STEP_S = {"ResNet-50 on one GPU (batch 64)": 0.1, "small CNN on 2 CPU cores (batch 64)": 0.5}


def write_events(path: Path, run_id: str, steps: int, epochs: int = 10) -> None:
    """events.jsonl as the workload writes it (compact JSON, one event per line)."""
    per_epoch = steps // epochs
    t = 1.7e9
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(json.dumps({"type": "run_start", "t": t, "run_id": run_id, "framework": "pytorch",
                             "framework_version": "2.13.0", "python": {"python": "3.11.2"},
                             "build": {"cuda": None}, "params": {"trainable": 1, "total": 1},
                             "flops_per_image": 1, "config_sha256": "0" * 64}, separators=(",", ":")) + "\n")
        g = 0
        for epoch in range(epochs):
            lines = []
            for step in range(per_epoch):
                t += 0.01
                lines.append(f'{{"type":"step","t":{t:.6f},"run_id":"{run_id}","epoch":{epoch},"step":{step},'
                             f'"global_step":{g},"loss":{2.302585 - g * 1e-7:.6f},"lr":0.1,"batch_size":64,'
                             f'"data_time_s":0.0012{g % 10},"compute_time_s":0.0081{g % 7},'
                             f'"warmup":{str(g < 5).lower()}}}\n')
                g += 1
            fh.writelines(lines)
            fh.write(json.dumps({"type": "epoch", "t": t, "run_id": run_id, "epoch": epoch, "train_loss": 2.0,
                                 "train_accuracy": 0.3, "images": per_epoch * 64, "timed_images": per_epoch * 64,
                                 "time_s": per_epoch * 0.01, "images_per_s": 6400.0, "data_time_s": 1.0,
                                 "compute_time_s": 8.0}, separators=(",", ":")) + "\n")
        fh.write(json.dumps({"type": "run_end", "t": t, "run_id": run_id, "status": "ok", "reason": None,
                             "error": None, "wall_s": 10.0}, separators=(",", ":")) + "\n")


def bench_bundle(steps: int, keep: bool) -> list[tuple[str, str, str, bool]]:
    work = Path(tempfile.mkdtemp(prefix="bench-bundle-"))
    try:
        (work / "spec.yaml").write_text(SPEC)
        plan = plan_file(work / "spec.yaml")
        run = plan.runs[0]
        out = work / "out"
        out.mkdir()
        write_events(out / "events.jsonl", run.id, steps)
        size_mb = (out / "events.jsonl").stat().st_size / 1e6
        redaction = Redaction.for_this_machine()

        c0, t0 = time.process_time(), time.perf_counter()
        log = read_events(out / "events.jsonl", run.id)
        c1, t1 = time.process_time(), time.perf_counter()
        writer = BundleWriter.create(work / "results", plan, SPEC, redaction)
        writer.add_run(run, status="ok", out_dir=out, log_text="", events=log)
        path = writer.finalize()
        c2, t2 = time.process_time(), time.perf_counter()
        bundle = read_bundle(path)
        c3, t3 = time.process_time(), time.perf_counter()
        rows = bundle.tables["steps"].num_rows
        assert rows == steps == log.steps.num_rows, (rows, steps)
        if keep:
            print(f"(bundle kept at {path})")
        parse_s, write_s, read_s = t1 - t0, t2 - t1, t3 - t2
        return [
            (f"parse events.jsonl, {rows:,} steps ({size_mb:.0f} MB of JSON)",
             f"{parse_s:.2f} s ({c1 - c0:.2f} s CPU, {size_mb / parse_s:.0f} MB/s)", "", True),
            (f"write bundle, {rows:,} step rows (tables, files, hashes, manifest)",
             f"{write_s:.2f} s ({c2 - c1:.2f} s CPU)", "< 2 s", write_s < 2.0),
            (f"read bundle back (manifest checks + {len(bundle.tables)} tables)",
             f"{read_s:.2f} s ({c3 - c2:.2f} s CPU)", "< 2 s", read_s < 2.0),
            ("  end to end: parse + write", f"{parse_s + write_s:.2f} s", "", True),
        ]
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)


def sample_cost(sampler: TelemetrySampler, n: int) -> tuple[float, float]:
    """(wall s, CPU s of this process) per tick, over n ticks."""
    proc = psutil.Process()
    c0, t0 = sum(proc.cpu_times()[:2]), time.perf_counter()
    for _ in range(n):
        sampler.sample_once()
    return (time.perf_counter() - t0) / n, (sum(proc.cpu_times()[:2]) - c0) / n


def bench_telemetry() -> list[tuple[str, str, str, bool]]:
    rows = []
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        sampler = TelemetrySampler(nvml=None, pid=os.getpid())
        wall, cpu = sample_cost(sampler, 200)
        sampler.stop()
        rows += _cost_rows("process tree (psutil)", wall, cpu)
    finally:
        child.kill()
        child.wait()
    rows += _docker_rows()
    return rows


def _docker_rows() -> list[tuple[str, str, str, bool]]:
    try:
        import docker

        client = docker.from_env(timeout=10)
        client.ping()
        client.images.get("local/debian:bookworm")
    except Exception as e:  # noqa: BLE001 - no engine here: say so, measure the rest
        return [("container (Docker stats stream)", f"not measured: {type(e).__name__}", "< 1 %", True)]
    container = client.containers.run("local/debian:bookworm", ["sleep", "60"], detach=True, network_mode="none")
    try:
        proc = psutil.Process()
        seconds = 6.0
        c0 = sum(proc.cpu_times()[:2])
        time.sleep(seconds)
        idle = sum(proc.cpu_times()[:2]) - c0
        sampler = TelemetrySampler(1.0, nvml=None, container=container).start()
        c0 = sum(proc.cpu_times()[:2])
        time.sleep(seconds)
        busy = sum(proc.cpu_times()[:2]) - c0
        sampler.stop()
        per_tick = max(busy - idle, 0.0) / max(sampler.ticks, 1)
        return _cost_rows("container (Docker stats stream)", sampler.cost_per_sample_s or 0.0, per_tick)
    finally:
        container.remove(force=True)


def _cost_rows(what: str, wall: float, cpu: float) -> list[tuple[str, str, str, bool]]:
    """What sampling takes from a run is the sampler thread's CPU time (its wall time, on a busy
    machine, is mostly waiting for a CPU): one sample a second at the default 1 Hz."""
    rows = [(f"one sample, {what}", f"{wall * 1e3:.2f} ms wall, {cpu * 1e3:.2f} ms CPU", "", True)]
    share = cpu * 1.0  # seconds of CPU per second of run
    for name, step in TYPICAL_STEP_S.items():
        rows.append((f"  at 1 Hz beside {step * 1e3:.0f} ms steps ({name})",
                     f"{share * 100:.3f} % of throughput ({cpu / step * 100:.2f} % of the step it lands in)",
                     "< 1 %", share < 0.01))
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=1_000_000)
    ap.add_argument("--keep", action="store_true", help="keep the bundle written")
    args = ap.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    rows = bench_bundle(args.steps, args.keep) + bench_telemetry()
    width = max(len(r[0]) for r in rows)
    vwidth = max(len(r[1]) for r in rows)
    print(f"{'figure':<{width}}  {'measured':<{vwidth}}  target  ok")
    for name, value, target, ok in rows:
        print(f"{name:<{width}}  {value:<{vwidth}}  {target:<6}  {'yes' if ok else 'NO'}")
    return 0 if all(r[3] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
