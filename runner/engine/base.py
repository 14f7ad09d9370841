"""The engine interface: WHERE one run executes (a container, or a local subprocess).

An engine starts a run and hands back a handle; the orchestrator polls the handle (so it can
tail the run's events for live progress and enforce the time limit), then finishes it, which
collects the log, classifies the exit, and always cleans up. Both engines run the same
command: `python -m runner.workload run --config ... --data ... --out ...`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

# Workload exit codes (runner/workload/cli.py): 0 ok, 2 bad config, 3 the run failed (reason in events).
WORKLOAD_BAD_CONFIG = 2
WORKLOAD_RUN_FAILED = 3

# Seconds between SIGTERM and SIGKILL when a run is stopped, and the longest `finish()` waits for
# a run to exit before it kills it: no wait on a run is unbounded.
STOP_GRACE_S = 10.0

# Environment variables the workload may see. Nothing else of the host's environment is passed,
# so a secret in the host environment never reaches a run (or its logs).
def workload_env(threads: int | None, code_dir: str, home: str) -> dict[str, str]:
    env = {
        "PYTHONPATH": code_dir,
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONHASHSEED": "0",
        "HOME": home,
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "LC_ALL": "C.UTF-8",
    }
    if threads:
        env |= {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    return env


@dataclass(frozen=True)
class RunRequest:
    """Everything an engine needs to execute one run."""

    run_id: str
    bundle_id: str
    framework: str
    variant: str
    config_path: Path  # run.json on the host
    data_dir: Path  # prepared dataset, mounted read-only
    out_dir: Path  # the run's output folder, writable
    code_dir: Path  # folder holding the `runner` package that runs (the bundle's code/), read-only
    image_id: str | None = None
    threads: int | None = None
    cpus: float | None = None
    memory: str | None = None
    shm: str = "1g"
    gpus: int = 0
    time_limit_s: int | None = None
    weights_path: Path | None = None  # pretrained .npz (sha256 already checked), mounted read-only

    def argv(self, config: str, data: str, out: str, weights: str | None = None) -> list[str]:
        argv = ["-m", "runner.workload", "run", "--config", config, "--data", data, "--out", out]
        return argv + ["--weights", weights] if weights is not None else argv


@dataclass
class RunOutcome:
    """How a run ended, as the engine saw it. `reason` is None for a clean exit 0."""

    exit_code: int | None
    reason: str | None
    log: str
    wall_s: float
    container_id: str | None = None
    extra: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and self.reason is None


class RunningRun(Protocol):
    def poll(self) -> int | None:
        """The exit code once finished, else None."""

    def kill(self, reason: str) -> None:
        """Stop the run now (SIGTERM, SIGKILL after the grace period); `reason` becomes the
        outcome's reason (time limit, interrupted). A run already gone is fine; an engine that
        fails to stop it raises EngineError."""

    def finish(self) -> RunOutcome:
        """Wait at most the grace period for the end (then SIGKILL, said in the reason), collect
        the log, clean up (containers are always removed)."""

    @property
    def sample_target(self) -> object:
        """What the telemetry sampler watches: a container, or a process id."""


class Engine(Protocol):
    name: str
    isolated: bool

    def start(self, request: RunRequest) -> RunningRun: ...

    def describe(self) -> dict:
        """The engine's own facts for the bundle (kind, version, isolation)."""


def classify_exit(exit_code: int | None, killed_reason: str | None, oom: bool = False) -> str | None:
    """The failure reason for an exit, or None for success."""
    if killed_reason:
        return killed_reason
    if oom:
        return "oom"
    if exit_code == 0:
        return None
    if exit_code in (137, -9):
        return "killed (SIGKILL: out of memory or time limit)"
    if exit_code in (143, -15):
        return "terminated (SIGTERM)"
    if exit_code == WORKLOAD_BAD_CONFIG:
        return "bad run configuration"
    if exit_code == WORKLOAD_RUN_FAILED:
        return "run failed"
    return f"exit code {exit_code}"
