"""Slurm executor figures (issue 12), on the one-node cluster of .ci/slurm-up.sh.

1. Submitting a 1,000-run sweep: 1,000 Launches through `SlurmExecutor.submit` and the flush
   that sends them (one task file each, one `sbatch --array`), submitted held (--hold) so the
   figure is the submission alone; then scancel'd. Host time = this process's CPU + its
   children's (sbatch), and the wall time beside it. Target < 30 s.
2. Following it: the session's way (every job polled twice a second; one squeue for all, at
   the executor's self-limited rate) for FOLLOW_S seconds over the 1,000 held jobs. Cost =
   CPU of this process + children / wall, as a share of one core. Target < 1 %. slurmctld's own
   CPU over the same window is printed beside it (the controller's side, not runner's).
3. Per-run fixed cost: a run that does nothing (`python -c pass`), one at a time, submit to
   outcome, through the inline executor and through Slurm, with the local engine and (when a
   Docker engine and the pytorch-cpu image are there) the docker engine. Printed side by side.

Run: .venv/bin/python benchmarks/bench_slurm.py [--runs 1000] [--follow-s 30] [--rounds 5]
Needs a Slurm cluster (sudo .ci/slurm-up.sh); skips (exit 0, says so) without one.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from runner.engine.base import Launch, Mount  # noqa: E402
from runner.executor.base import JobState  # noqa: E402
from runner.executor.inline import InlineExecutor  # noqa: E402
from runner.executor.slurm import SlurmExecutor  # noqa: E402
from runner.executor.slurm_batch import SlurmSettings  # noqa: E402

SUBMIT_TARGET_S, FOLLOW_TARGET, POLL_S = 30.0, 0.01, 0.5


def cpu_s() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def slurmctld_cpu_s() -> float | None:
    pid = subprocess.run(["pgrep", "-x", "slurmctld"], capture_output=True, text=True).stdout.split()
    if not pid:
        return None
    fields = Path(f"/proc/{pid[0]}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def trivial_launch(root: Path, run_id: str, engine: str = "local", image: str | None = None) -> Launch:
    out = root / run_id / "out"
    out.mkdir(parents=True)
    if engine == "local":
        return Launch(run_id=run_id, bundle_id=f"bench-{root.name}", engine="local",
                      argv=(sys.executable, "-c", "pass"), env={"PATH": "/usr/bin:/bin"}, mounts=(), out_dir=out,
                      workdir=str(out))
    return Launch(run_id=run_id, bundle_id=f"bench-{root.name}", engine="docker", argv=("python3", "-c", "pass"),
                  env={}, mounts=(Mount(out, "/out", read_only=False),), out_dir=out, image=image,
                  labels={"io.runner.bundle": f"bench-{root.name}"})


def submit_and_follow(root: Path, runs: int, follow_s: float) -> dict[str, float]:
    ex = SlurmExecutor(SlurmSettings(hold=True))
    ex.check([])
    c0, w0 = cpu_s(), time.monotonic()
    jobs = [ex.submit(f"r{i:05d}", trivial_launch(root, f"r{i:05d}"), "local") for i in range(runs)]
    ex.flush()
    submit_cpu, submit_wall = cpu_s() - c0, time.monotonic() - w0
    arrays = sorted({j.submitted.task_id.split("_")[0] for j in jobs})
    try:
        c0, w0, s0 = cpu_s(), time.monotonic(), slurmctld_cpu_s()
        calls0 = ex.follow_calls
        while time.monotonic() - w0 < follow_s:
            states = [j.poll() for j in jobs]
            assert all(s is JobState.PENDING for s in states), "a held job left the queue"
            time.sleep(POLL_S)
        follow_cpu, follow_wall = cpu_s() - c0, time.monotonic() - w0
        s1 = slurmctld_cpu_s()
        squeues = ex.follow_calls - calls0
    finally:
        subprocess.run(["scancel", *arrays], check=False)
    return {"submit_cpu": submit_cpu, "submit_wall": submit_wall, "arrays": len(arrays),
            "follow_share": follow_cpu / follow_wall, "follow_wall": follow_wall, "squeues": squeues,
            "ctld_share": (s1 - s0) / follow_wall if s0 is not None and s1 is not None else float("nan")}


def one_run(executor, launch: Launch) -> float:
    t0 = time.monotonic()
    job = executor.submit(launch.run_id, launch, launch.engine)
    while job.poll() is not JobState.ENDED:
        time.sleep(0.05)
    outcome = job.finish()
    assert outcome.ok, outcome.reason
    return time.monotonic() - t0


def fixed_costs(root: Path, rounds: int) -> dict[str, tuple[float, float]]:
    from runner.engine.local_engine import LocalEngine

    engines = {"local": (LocalEngine(), None)}
    try:
        from runner.engine.docker_client import connect
        from runner.engine.docker_engine import DockerEngine

        client = connect(timeout=10)
        image = client.images.list("runner/pytorch-cpu")[0].id  # IndexError: not built
        engines["docker"] = (DockerEngine(client), image)
    except Exception as e:  # noqa: BLE001 - the docker row is left out, said
        print(f"(docker engine or runner/pytorch-cpu image not here: {type(e).__name__}; local engine only)")
    out: dict[str, tuple[float, float]] = {}
    slurm = SlurmExecutor(SlurmSettings())
    slurm.check([])
    for name, (engine, image) in engines.items():
        inline = InlineExecutor(engine)
        times: dict[str, list[float]] = {"inline": [], "slurm": []}
        for r in range(rounds):  # alternating, so a busy moment of the shared machine hits both
            for kind, ex in (("inline", inline), ("slurm", slurm)):
                times[kind].append(one_run(ex, trivial_launch(root, f"{name}-{kind}-{r}", name, image)))
        out[name] = (statistics.median(times["inline"]), statistics.median(times["slurm"]))
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--follow-s", type=float, default=30.0)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    if shutil.which("sbatch") is None or subprocess.run(["sinfo", "-h"], capture_output=True).returncode != 0:
        print("no Slurm cluster answers here (sudo .ci/slurm-up.sh): skipped")
        return 0
    root = Path(tempfile.mkdtemp(prefix="bench-slurm-"))
    try:
        s = submit_and_follow(root / "sweep", args.runs, args.follow_s)
        costs = fixed_costs(root / "fixed", args.rounds)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    ok_submit = max(s["submit_cpu"], s["submit_wall"]) < SUBMIT_TARGET_S  # both: CPU and wall
    ok_follow = s["follow_share"] < FOLLOW_TARGET
    print(f"{'figure':<52} {'measured':>12} {'target':>10}")
    print(f"{'submit ' + str(args.runs) + '-run sweep: host CPU s (' + str(s['arrays']) + ' sbatch --array)':<52} "
          f"{s['submit_cpu']:>12.2f} {'< 30':>10} {'ok' if ok_submit else 'MISSED'}")
    print(f"{'  wall s (task files written with fsync)':<52} {s['submit_wall']:>12.2f} {'< 30':>10}")
    print(f"{'follow it: runner CPU / wall, share of one core':<52} {s['follow_share']:>11.2%} {'< 1 %':>10} "
          f"{'ok' if ok_follow else 'MISSED'}")
    print(f"{'  (squeue calls in ' + format(s['follow_wall'], '.0f') + ' s; slurmctld CPU share)':<52} "
          f"{s['squeues']:>12d} {s['ctld_share']:>11.2%}")
    print(f"\nper-run fixed cost, `python -c pass`, submit to outcome, median of {args.rounds} (s):")
    print(f"{'engine':<10} {'inline':>10} {'slurm':>10} {'slurm - inline':>16}")
    for name, (inline, slurm) in costs.items():
        print(f"{name:<10} {inline:>10.2f} {slurm:>10.2f} {slurm - inline:>16.2f}")
    return 0 if ok_submit and ok_follow else 1


if __name__ == "__main__":
    sys.exit(main())
