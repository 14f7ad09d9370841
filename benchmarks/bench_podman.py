"""Podman beside Docker: what one run costs outside the workload, measured side by side.

1. Fixed cost per run: the engine's real start/poll/finish (create, start, wait, logs, remove)
   around a process that does nothing (`python3 -c pass` in the CPU PyTorch image), the engines
   alternating over the rounds; the local engine (a subprocess) is printed beside them.
2. Following cost: host CPU seconds (this process and its children: podman's CLI calls and the
   `podman wait` child; for Docker the SDK's polling) per second of a run that sleeps, as a share
   of one core.
3. Moving an image into podman (`docker save | podman load`) is printed once if it had to happen.

Run: .venv/bin/python benchmarks/bench_podman.py [--rounds 5] [--follow-s 10]
Needs a Docker engine with the pytorch-cpu image and Debian's podman.
"""

from __future__ import annotations

import argparse
import os
import resource
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
from runner.engine.podman_engine import PodmanEngine  # noqa: E402
from runner.images.catalog import load_catalog  # noqa: E402
from runner.images.inspect import image_state  # noqa: E402


class _Request(RunRequest):
    """A request whose process runs `python3 -c CODE` instead of the workload."""

    code: str = "pass"

    def argv(self, config: str, data: str, out: str, weights: str | None = None,
             images: str | None = None) -> list[str]:
        return ["-c", self.code]


def _request(work: Path, image_id: str | None, code: str) -> RunRequest:
    run_dir = work / f"r-{time.monotonic_ns()}"
    (run_dir / "out").mkdir(parents=True)
    (run_dir / "data").mkdir()
    config = run_dir / "run.json"
    config.write_text("{}")
    for p in (run_dir, run_dir / "out", run_dir / "data"):
        os.chmod(p, 0o777)
    req = _Request(run_id="bench", bundle_id="bench-podman", framework="pytorch", variant="cpu",
                   config_path=config, data_dir=run_dir / "data", out_dir=run_dir / "out", code_dir=work / "code",
                   image_id=image_id, threads=1, cpus=1, memory="1g", shm="256m")
    object.__setattr__(req, "code", code)
    return req


def _cpu_s() -> float:
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _life(engine, image_id: str | None, work: Path, code: str = "pass", poll_s: float = 0.05) -> tuple[float, float]:
    """(wall seconds, host CPU seconds) of start..finish."""
    request = _request(work, image_id, code)
    c0, t0 = _cpu_s(), time.perf_counter()
    handle = engine.start(request)
    while handle.poll() is None:
        time.sleep(poll_s)
    outcome = handle.finish()
    wall, cpu = time.perf_counter() - t0, _cpu_s() - c0
    if not outcome.ok:
        raise SystemExit(f"{engine.name}: the run failed: {outcome.reason} {outcome.log[-500:]}")
    return wall, cpu


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--follow-s", type=float, default=10.0)
    args = p.parse_args()

    client = connect()
    entry = load_catalog().for_run("pytorch", "cpu")
    state = image_state(client, entry)
    if state.status != "present":
        raise SystemExit(f"image {entry.name} is {state.status}: runner images build {entry.name}")
    image_id = state.image_id
    podman = PodmanEngine.connect(docker=client)
    t0 = time.perf_counter()
    moved = not podman.has_image(image_id)
    podman.ensure_image(image_id)
    move_s = time.perf_counter() - t0

    work = Path(tempfile.mkdtemp(prefix="bench-podman-"))
    os.chmod(work, 0o777)
    (work / "code").mkdir()
    os.chmod(work / "code", 0o755)
    engines = {"docker": (DockerEngine(client), image_id), "podman": (podman, image_id),
               "local": (LocalEngine(), None)}
    for engine, img in engines.values():
        _life(engine, img, work)  # first-touch costs out of the way
    life: dict[str, list[float]] = {name: [] for name in engines}
    for r in range(args.rounds):
        order = list(engines) if r % 2 == 0 else list(reversed(engines))
        for name in order:
            engine, img = engines[name]
            life[name].append(_life(engine, img, work)[0])
    follow = {}
    sleep = f"import time; time.sleep({args.follow_s})"
    for name in ("docker", "podman"):
        engine, img = engines[name]
        wall, cpu = _life(engine, img, work, sleep, poll_s=0.5)  # the session polls every 0.5 s
        follow[name] = (cpu, wall)
    shutil.rmtree(work, ignore_errors=True)

    load = os.getloadavg()[0]
    print(f"\npodman figures ({args.rounds} rounds, load average {load:.1f}, {os.cpu_count()} cores)")
    print(f"{'figure':<46} {'docker':>9} {'podman':>9} {'podman/docker':>14}  local")
    d, pm, loc = (statistics.median(life[n]) for n in ("docker", "podman", "local"))
    print(f"{'(1) fixed cost per run, start..removed (s)':<46} {d:9.2f} {pm:9.2f} {pm / d:14.2f}  {loc:.2f}")
    shares = {n: cpu / wall for n, (cpu, wall) in follow.items()}
    print(f"{'(2) following a run: host CPU, share of a core':<46} {shares['docker']:9.3%} {shares['podman']:9.3%} "
          f"{shares['podman'] / shares['docker']:14.2f}  (incl. start and finish of a {args.follow_s:g} s run)")
    if moved:
        print(f"(3) image moved into podman (docker save | podman load): {move_s:.1f} s")


if __name__ == "__main__":
    main()
