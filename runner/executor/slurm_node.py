"""The node side of a Slurm job: `python -m runner.executor.slurm_node INDEX TASK`.

Array task TASK reads line TASK of INDEX (a run folder), loads the engine's Launch from
`task.json` there, and runs it on this node exactly as the inline executor runs one on the
submitting machine: the engine starts it, the run's time limit is enforced from its start (queue
time is not run time), telemetry is sampled beside it, and the outcome (exit, reason, wall time,
this node's fingerprint with the job's Slurm facts, telemetry) is written atomically to
`outcome.json`, the run's log to `run.log`. With `execution.ship_images` a node that lacks the
run's image first loads it from the archive the launch names (runner/executor/image_ship.py).
SIGTERM (scancel, Slurm's time limit, preemption) stops the run within the engine's grace
period, shorter than Slurm's KillWait, so a container is never left running after its job.
Exit status: 0 when the run succeeded, 1 when it failed (so `squeue`/`sacct` say FAILED too), 2
when the task itself could not be read.

Host-side code (the `runner` package of the submitting machine, on the shared filesystem);
it never imports a framework.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from runner.engine.base import Launch, RunOutcome
from runner.fileio import read_bounded, write_atomic

TASK_FILE, OUTCOME_FILE, LOG_FILE = "task.json", "outcome.json", "run.log"
NODE_STOP_GRACE_S = 5.0  # SIGTERM -> SIGKILL of the run on the node; under Slurm's KillWait (30 s by default)
MAX_TASK_BYTES = 16 * 2**20
MAX_OUTCOME_BYTES = 256 * 2**20
POLL_S = 0.2  # how often the node checks its run; part of the per-run fixed cost

SLURM_FACTS = {"job_id": "SLURM_JOB_ID", "array_job_id": "SLURM_ARRAY_JOB_ID", "array_task_id": "SLURM_ARRAY_TASK_ID",
               "node": "SLURMD_NODENAME", "partition": "SLURM_JOB_PARTITION", "cpus_on_node": "SLURM_CPUS_ON_NODE",
               "job_gpus": "SLURM_JOB_GPUS", "cluster": "SLURM_CLUSTER_NAME"}


class Terminated(Exception):
    """SIGTERM reached the job (scancel, Slurm's time limit, preemption)."""


def write_task(run_dir: Path, launch: Launch, telemetry_hz: float) -> Path:
    """The host writes this before submitting; the node reads it."""
    doc = {"launch": launch.as_dict(), "telemetry_hz": telemetry_hz}
    path = run_dir / TASK_FILE
    write_atomic(path, json.dumps(doc, sort_keys=True).encode())
    return path


def slurm_facts(environ: dict[str, str] | None = None) -> dict[str, str]:
    env = os.environ if environ is None else environ
    return {key: env[var] for key, var in SLURM_FACTS.items() if env.get(var)}


def node_devices(launch: Launch, environ: dict[str, str] | None = None) -> tuple[int, ...]:
    """The GPUs this job was given on this node: Slurm's SLURM_JOB_GPUS (node indices) when it
    set them, else the launch's own (a cluster without GPU GRES)."""
    env = os.environ if environ is None else environ
    given = [int(x) for x in env.get("SLURM_JOB_GPUS", "").split(",") if x.strip().isdigit()]
    if launch.devices and given:
        return tuple(given[:len(launch.devices)])
    return launch.devices


def node_engine(name: str):
    """The engine that runs `name`'s launches on this node (its own client, a short stop grace)."""
    from runner.errors import EngineError

    if name == "local":
        from runner.engine.local_engine import LocalEngine

        return LocalEngine(stop_grace_s=NODE_STOP_GRACE_S)
    if name == "docker":
        from runner.engine.docker_client import connect
        from runner.engine.docker_engine import DockerEngine

        return DockerEngine(connect(answer_within=30), stop_grace_s=NODE_STOP_GRACE_S)
    if name == "podman":  # the image is already in the node's podman storage (the session moved it)
        from runner.engine.podman_engine import PodmanEngine

        engine = PodmanEngine.connect()
        engine.stop_grace_s = NODE_STOP_GRACE_S
        return engine
    raise EngineError(f"engine {name!r} cannot run on a Slurm node", field="execution.engine",
                      fix="use engine: docker, podman or local")


def run_here(launch: Launch, telemetry_hz: float) -> RunOutcome:
    """The launch on this node through the inline executor; SIGTERM stops it (bounded)."""
    from runner.executor.base import JobState
    from runner.executor.inline import InlineExecutor, host_failure
    from runner.telemetry.sampler import TelemetrySampler

    started = time.monotonic()
    try:
        engine = node_engine(launch.engine)
    except Exception as e:  # noqa: BLE001 - no engine on this node: a failed outcome, said
        return host_failure("the node has no engine for the run", e, started)
    image: dict[str, Any] | None = None
    if launch.image is not None and launch.image_archive is not None:  # execution.ship_images
        from runner.executor.image_ship import deliver

        try:
            image = deliver(engine, launch.image, Path(launch.image_archive))
        except Exception as e:  # noqa: BLE001 - an archive that cannot give the image: a failed run, said
            failed = host_failure("the node could not load the run's image from its archive", e, started)
            archive = Path(launch.image_archive).name
            failed.node = {"image": {"id": launch.image, "source": "archive", "archive": archive}}
            return failed

    def sampler(_launch: Launch, target: object, eng: Any) -> TelemetrySampler:
        import psutil

        interval = 1.0 / telemetry_hz
        try:
            return TelemetrySampler(interval, gpus=_launch.devices, host=True, **eng.sampler_kwargs(target))
        except psutil.NoSuchProcess:  # a run that ended before its sampler started: the node's load only
            return TelemetrySampler(interval, gpus=_launch.devices, host=True)

    job = InlineExecutor(engine, sampler).submit(launch.run_id, launch, engine.name)

    def on_term(signum: int, frame: object) -> None:
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        try:
            while job.poll() is not JobState.ENDED:
                time.sleep(POLL_S)
        except Terminated:
            job.cancel("terminated by Slurm (SIGTERM: scancel, time limit or preemption)")
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # finishing (bounded) is not interrupted again
        outcome = job.finish()
        if image is not None:
            outcome.node = (outcome.node or {}) | {"image": image}
        return outcome
    finally:
        signal.signal(signal.SIGTERM, previous)


def outcome_doc(outcome: RunOutcome, facts: dict[str, str]) -> dict[str, Any]:
    doc = asdict(outcome)
    doc.pop("log")
    doc["node"] = (doc.get("node") or {}) | {"slurm": facts}
    return doc


def read_outcome(run_dir: Path) -> RunOutcome | None:
    """The outcome the job wrote, or None when it wrote none (the job died before the end)."""
    from runner.errors import ExecutorError

    path = run_dir / OUTCOME_FILE
    if not path.exists():
        return None
    doc = json.loads(read_bounded(path, MAX_OUTCOME_BYTES, ExecutorError, what="job outcome"))
    log_path = run_dir / LOG_FILE
    log = read_bounded(log_path, MAX_OUTCOME_BYTES, ExecutorError, what="run log").decode("utf-8", "replace") \
        if log_path.exists() else ""
    fields = {k: doc[k] for k in ("exit_code", "reason", "wall_s", "container_id", "extra", "node", "telemetry",
                                  "telemetry_status") if k in doc}
    return RunOutcome(log=log, **fields)


def main(argv: list[str]) -> int:
    if len(argv) != 2 or not argv[1].isdigit():
        print("usage: python -m runner.executor.slurm_node INDEX TASK", file=sys.stderr)
        return 2
    lines = Path(argv[0]).read_text(encoding="utf-8").splitlines()
    task = int(argv[1])
    if task >= len(lines):
        print(f"task {task} is not in {argv[0]} ({len(lines)} runs)", file=sys.stderr)
        return 2
    run_dir = Path(lines[task])
    from runner.errors import ExecutorError

    doc = json.loads(read_bounded(run_dir / TASK_FILE, MAX_TASK_BYTES, ExecutorError, what="task file"))
    launch = Launch.from_dict(doc["launch"])
    devices = node_devices(launch)
    if devices != launch.devices:
        from dataclasses import replace

        env = dict(launch.env)
        if "CUDA_VISIBLE_DEVICES" in env:  # the local engine's way of giving the run its GPUs
            env["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in devices)
        launch = replace(launch, devices=devices, env=env)
    outcome = run_here(launch, float(doc.get("telemetry_hz") or 1.0))
    write_atomic(run_dir / LOG_FILE, outcome.log.encode("utf-8", "replace"))
    write_atomic(run_dir / OUTCOME_FILE,
                 json.dumps(outcome_doc(outcome, slurm_facts()), sort_keys=True, default=str).encode())
    print(f"run {launch.run_id}: {'ok' if outcome.ok else 'failed: ' + str(outcome.reason)}")
    return 0 if outcome.ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
