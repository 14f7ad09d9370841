"""Engine figures: what running in a container costs, measured side by side in one run.

1. Container overhead: the same run (small CNN, same prepared data, same thread count, same
   run.json) in the docker engine and in the local engine, the two alternating over the rounds;
   training throughput (the epoch event's images/s, warm-up excluded) docker / local.
   Target >= 0.97 in each framework.
2. Fixed cost per run: the real engine code (start, poll, finish) around a workload that does
   nothing (`python3 -c pass` in place of the workload's argv): in docker that is create, start,
   wait, log collection, removal; the local engine's figure (a subprocess) is printed beside it.
   Target < 3 s. Printed with it, the fingerprint: once per bundle the host, GPUs and engine,
   and once per image the framework's own report run in the image (it imports the framework)
   plus the image's inspect; a one-run bundle pays it once.
Telemetry's cost (< 1 %) is measured per sample in bench_bundle.py: end to end, run-to-run
noise on this shared 2-core machine (+-20 % between consecutive runs) swamps a 1 % effect.

Run: .venv/bin/python benchmarks/bench_engine.py [--rounds N] [--base local/debian:bookworm]
Needs a Docker engine and both frameworks installed locally (just setup).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from runner.engine.base import RunRequest  # noqa: E402
from runner.engine.docker_client import connect  # noqa: E402
from runner.engine.docker_engine import DockerEngine  # noqa: E402
from runner.engine.local_engine import LocalEngine  # noqa: E402
from runner.images.build import ensure_image  # noqa: E402
from runner.images.catalog import load_catalog  # noqa: E402
from runner.images.inspect import image_fingerprint  # noqa: E402
from runner.reproduce.dataset import resolve_dataset  # noqa: E402
from runner.reproduce.session import execute_run, framework_info, write_run_config  # noqa: E402
from runner.spec.plan import plan_file  # noqa: E402
from runner.telemetry.sampler import TelemetrySampler  # noqa: E402

SPEC = """
name: bench-engine
dataset:
  name: cifar10
  synthetic: {{train_size: {train}, test_size: 256, seed: 0}}
model: {{name: simple_cnn}}
frameworks: [pytorch, tensorflow]
recipe:
  epochs: 1
  batch_size: 64
  optimizer: sgd
  lr: 0.01
  deterministic: true
  augmentation:
    - {{op: random_crop, padding: 4}}
    - {{op: horizontal_flip, p: 0.5}}
measurement: {{warmup_steps: 3, latency_batch_sizes: [1], latency_iterations: 3}}
resources: {{threads: {threads}, cpus: {threads}, memory: 4g, time_limit_s: 900}}
"""


def _span(out_dir: Path) -> tuple[float, float]:
    """(images/s of the epoch, seconds from run_start to run_end) from the run's events."""
    events = [json.loads(line) for line in (out_dir / "events.jsonl").read_text().splitlines()]
    by_type = {e["type"]: e for e in events}
    if by_type.get("run_end", {}).get("status") != "ok":
        raise SystemExit(f"run failed: {by_type.get('run_end')}")
    return float(by_type["epoch"]["images_per_s"]), by_type["run_end"]["t"] - by_type["run_start"]["t"]


class _NothingRequest(RunRequest):
    """The same request, but the process the engine starts does nothing."""

    def argv(self, config: str, data: str, out: str, weights: str | None = None,
             images: str | None = None) -> list[str]:
        return ["-c", "pass"]


def _lifecycle(engine, image_id: str | None, work: Path, code_dir: Path, data_dir: Path) -> float:
    """Wall seconds of the engine's start/poll/finish around a process that does nothing."""
    run_dir = work / f"nothing-{time.monotonic_ns()}"
    (run_dir / "out").mkdir(parents=True)
    config = run_dir / "run.json"
    config.write_text("{}")
    request = _NothingRequest(run_id="nothing", bundle_id="bench-engine", framework="pytorch", variant="cpu",
                              config_path=config, data_dir=data_dir, out_dir=run_dir / "out", code_dir=code_dir,
                              image_id=image_id, threads=2, cpus=2, memory="4g", shm="512m")
    t0 = time.perf_counter()
    handle = engine.start(request)
    while handle.poll() is None:
        time.sleep(0.05)
    outcome = handle.finish()
    wall = time.perf_counter() - t0
    if not outcome.ok:
        raise SystemExit(f"{engine.name}: the empty run failed: {outcome.reason} {outcome.log[-500:]}")
    shutil.rmtree(run_dir, ignore_errors=True)
    return wall


def _one(engine, run, dataset, code_dir: Path, image_id: str | None, work: Path, telemetry: bool) -> dict:
    run_dir = work / f"{run.id}-{time.monotonic_ns()}"
    out_dir = run_dir / "out"
    out_dir.mkdir(parents=True)
    for p in (run_dir, out_dir):
        os.chmod(p, 0o777)  # the container's unprivileged user writes here
    config = write_run_config(run, run_dir)
    res = run.resolved["resources"]
    request = RunRequest(run_id=run.id, bundle_id="bench-engine", framework=run.framework, variant="cpu",
                         config_path=config, data_dir=dataset.prepared.resolve(), out_dir=out_dir, code_dir=code_dir,
                         image_id=image_id, threads=res["threads"], cpus=res["cpus"], memory=res["memory"],
                         shm=res["shm"], time_limit_s=res["time_limit_s"])

    def sampler(target):
        return TelemetrySampler(1.0, container=target if image_id else None, pid=None if image_id else target)

    outcome, _, _ = execute_run(engine, request, lambda e: None, sampler if telemetry else None)
    if not outcome.ok:
        raise SystemExit(f"{engine.name} run failed: {outcome.reason}\n{outcome.log[-2000:]}")
    ips, span = _span(out_dir)
    shutil.rmtree(run_dir, ignore_errors=True)
    return {"ips": ips, "outside_s": outcome.wall_s - span}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--train", type=int, default=4096, help="training images (one epoch)")
    p.add_argument("--base", default="local/debian:bookworm", help="base image if an image must be built")
    args = p.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-engine-"))
    os.chmod(work, 0o777)
    spec = work / "bench.yaml"
    spec.write_text(SPEC.format(train=args.train, threads=args.threads))
    plan = plan_file(spec)
    dataset = resolve_dataset(plan.experiment.dataset, work, work / "cache", spec)
    code_dir = work / "code"
    shutil.copytree(ROOT / "runner", code_dir / "runner", ignore=shutil.ignore_patterns("__pycache__"))
    for q in [code_dir, *code_dir.rglob("*")]:
        os.chmod(q, 0o755 if q.is_dir() else 0o644)

    client = connect()
    docker, local = DockerEngine(client), LocalEngine()
    catalog = load_catalog()
    rows = []
    for run in plan.runs:
        fw = run.framework
        image_id = ensure_image(client, catalog.for_run(fw, "cpu"), "missing", args.base)
        t0 = time.perf_counter()
        framework_info(docker, image_id, fw, code_dir)
        image_fingerprint(client, image_id)
        image_fp_s = time.perf_counter() - t0
        _one(local, run, dataset, code_dir, None, work, True)  # first-touch costs (page cache) out of the way
        life = {"docker": [], "local": []}
        for _ in range(5):
            life["docker"].append(_lifecycle(docker, image_id, work, code_dir, dataset.prepared.resolve()))
            life["local"].append(_lifecycle(local, None, work, code_dir, dataset.prepared.resolve()))
        res: dict[str, list[dict]] = {"docker": [], "local": []}
        for r in range(args.rounds):
            order = ("docker", "local") if r % 2 == 0 else ("local", "docker")
            for side in order:
                engine, img = (local, None) if side == "local" else (docker, image_id)
                res[side].append(_one(engine, run, dataset, code_dir, img, work, True))
                print(f"  {fw:<10} round {r + 1} {side:<20} {res[side][-1]['ips']:8.1f} img/s  "
                      f"outside workload {res[side][-1]['outside_s']:.2f} s", flush=True)
        rows.append((fw, res, image_fp_s, life))

    from runner.fingerprint.gpu import gpu_fingerprint
    from runner.fingerprint.host import host_fingerprint

    t0 = time.perf_counter()
    host_fingerprint(client)
    gpu_fingerprint()
    docker.describe()
    host_fp_s = time.perf_counter() - t0

    def med(xs: list[dict], key: str) -> float:
        return statistics.median(x[key] for x in xs)

    load = os.getloadavg()[0]
    print(f"\nengine figures ({args.rounds} rounds, {args.threads} threads, {args.train} images, "
          f"load average {load:.1f}, {os.cpu_count()} cores)")
    print(f"{'figure':<44} {'framework':<11} {'measured':<34} {'value':>8}  target")
    failed = False
    for fw, res, image_fp_s, life in rows:
        d, loc = med(res["docker"], "ips"), med(res["local"], "ips")
        ratio = d / loc
        cost, local_cost = statistics.median(life["docker"]), statistics.median(life["local"])
        failed |= ratio < 0.97 or cost >= 3
        print(f"{'(1) container overhead docker/local':<44} {fw:<11} {f'{d:.1f} vs {loc:.1f} img/s':<34} "
              f"{ratio:8.3f}  >= 0.97 {'ok' if ratio >= 0.97 else 'MISSED'}")
        print(f"{'(2) fixed cost per run (container life)':<44} {fw:<11} "
              f"{f'docker start..removed; local {local_cost:.2f} s':<34} {cost:7.2f}s  < 3 s "
              f"{'ok' if cost < 3 else 'MISSED'}")
        print(f"{'    fingerprint: per bundle + per image':<44} {fw:<11} "
              f"{f'{host_fp_s:.2f} s + {image_fp_s:.2f} s (imports {fw})':<34} {host_fp_s + image_fp_s:7.2f}s  "
              f"once per bundle")
    shutil.rmtree(work, ignore_errors=True)
    if failed:
        print("note: ratios of a few percent move with the machine's load; rerun on a quiet machine")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
