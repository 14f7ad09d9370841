"""The engine interface: HOW one run executes on a node (a container, or a local subprocess).

An engine does two things, kept apart so an executor can sit between them:

- `launch(request) -> Launch`: turn a run into a plain description (image or interpreter, argv,
  environment, mounts, GPU devices, limits). A Launch is data: it can be written to a file,
  shipped to a Slurm node, and run there (`Launch.as_dict()` / `Launch.from_dict()`).
- `run(launch) -> RunningRun`: run a Launch on the node this process is on, and hand back a
  handle; the caller polls it (events, time limit), then finishes it, which collects the log,
  classifies the exit, and always cleans up.

WHERE and WHEN a launch runs is the executor's business (`runner/executor/base.py`). Every
engine runs the same workload command: `python -m runner.workload run --config ... --data ... --out ...`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

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
    replicas: int = 1  # data-parallel replicas (run.json's parallel.replicas): PyTorch's start under torchrun
    images_dir: Path | None = None  # dataset.decode: jpeg: the ImageNet JPEG folder, mounted read-only

    @property
    def devices(self) -> tuple[int, ...]:
        """The GPU indices the run gets on its node: the first `gpus` (an executor that places runs
        on GPUs itself, such as Slurm, replaces them in the Launch)."""
        return tuple(range(self.gpus))

    @property
    def limits(self) -> Limits:
        return Limits(cpus=self.cpus, memory=self.memory, shm=self.shm, time_s=self.time_limit_s)

    def argv(self, config: str, data: str, out: str, weights: str | None = None,
             images: str | None = None) -> list[str]:
        from runner.engine.launcher import workload_module

        argv = [*workload_module(self.framework, self.replicas), "run", "--config", config, "--data", data,
                "--out", out]
        argv += ["--weights", weights] if weights is not None else []
        return argv + ["--images", images] if images is not None else argv


# Default cap on processes in a run (containers: --pids-limit): a fork bomb stops there.
DEFAULT_PIDS_LIMIT = 4096


@dataclass(frozen=True)
class Mount:
    """A host path seen at `target` inside the run (for the local engine, target == host path)."""

    source: Path
    target: str
    read_only: bool = True


@dataclass(frozen=True)
class Limits:
    """What a run may use. `time_s` is enforced by whoever follows the run (the inline executor
    polls it; Slurm's own --time limit does it for the Slurm executor)."""

    cpus: float | None = None
    memory: str | None = None  # docker syntax: "8g", "512m"
    shm: str = "1g"
    pids: int | None = DEFAULT_PIDS_LIMIT
    time_s: int | None = None


@dataclass(frozen=True)
class Launch:
    """One run, described for an engine on some node: everything `Engine.run` needs, nothing else.

    `argv` is the whole command line: `python3 -m runner.workload run ...` in a container (the
    image's python), `<interpreter> -m runner.workload run ...` for the local engine; a
    data-parallel run puts its launcher in front (`torchrun ...`). Paths in argv are as the run
    sees them (container paths for container engines). `devices` are the GPU indices ON THE NODE
    the run gets (NVML/CUDA numbering); the engine exposes exactly those.
    """

    run_id: str
    bundle_id: str
    engine: str  # registry name of the engine that made it: docker | podman | local
    argv: tuple[str, ...]
    env: Mapping[str, str]
    mounts: tuple[Mount, ...]
    out_dir: Path  # host path of the run's writable output folder (events.jsonl lands here)
    image: str | None = None  # image id; None for the local engine
    workdir: str = "/tmp"
    devices: tuple[int, ...] = ()
    limits: Limits = Limits()
    labels: Mapping[str, str] = field(default_factory=dict)
    # Where a node that lacks `image` loads it from (execution.ship_images: a docker-archive on the
    # shared filesystem, runner/executor/image_ship.py); None: the node must already hold it.
    image_archive: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (for a Slurm job's launch file)."""
        return {"run_id": self.run_id, "bundle_id": self.bundle_id, "engine": self.engine, "argv": list(self.argv),
                "env": dict(self.env), "out_dir": str(self.out_dir), "image": self.image, "workdir": self.workdir,
                "mounts": [{"source": str(m.source), "target": m.target, "read_only": m.read_only}
                           for m in self.mounts],
                "devices": list(self.devices), "labels": dict(self.labels), "image_archive": self.image_archive,
                "limits": {k: getattr(self.limits, k) for k in Limits.__dataclass_fields__}}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Launch:
        return cls(run_id=str(d["run_id"]), bundle_id=str(d["bundle_id"]), engine=str(d["engine"]),
                   argv=tuple(str(a) for a in d["argv"]), env={str(k): str(v) for k, v in d["env"].items()},
                   mounts=tuple(Mount(Path(m["source"]), str(m["target"]), bool(m["read_only"])) for m in d["mounts"]),
                   out_dir=Path(d["out_dir"]), image=d.get("image"), workdir=str(d.get("workdir", "/tmp")),
                   devices=tuple(int(i) for i in d.get("devices", ())),
                   limits=Limits(**d.get("limits", {})),
                   labels={str(k): str(v) for k, v in d.get("labels", {}).items()},
                   image_archive=str(d["image_archive"]) if d.get("image_archive") else None)


@dataclass
class RunOutcome:
    """How a run ended, as the engine (and the executor) saw it. `reason` is None for a clean exit 0.

    `node`: the node the run ran on and its fingerprint (host name, the GPUs assigned to the run,
    driver), filled by the executor. `telemetry`/`telemetry_status`: the samples taken beside the
    run on that node (runner/telemetry), filled by the executor.
    """

    exit_code: int | None
    reason: str | None
    log: str
    wall_s: float
    container_id: str | None = None
    extra: dict = field(default_factory=dict)
    node: dict | None = None
    telemetry: list = field(default_factory=list)
    telemetry_status: dict | None = None

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

    def launch(self, request: RunRequest) -> Launch:
        """The run, described for this engine (no side effects: nothing starts)."""

    def run(self, launch: Launch) -> RunningRun:
        """Start `launch` on the node this process runs on."""

    def start(self, request: RunRequest) -> RunningRun:
        """`run(launch(request))`: both steps on this machine."""

    def describe(self) -> dict:
        """The engine's own facts for the bundle (kind, version, isolation)."""

    def sampler_kwargs(self, target: object) -> dict:
        """How the telemetry sampler watches a running run's `sample_target`:
        `{"container": c}` (Docker stats) or `{"pid": p}` (process tree)."""

    def workload_tool(self, image_id: str | None, argv: list[str], code_dir: Path, timeout: float = 600) -> str:
        """stdout of a describe-only workload command (`info`, `models`) where runs run; EngineError if it fails."""

    def remove_leftovers(self, bundle_id: str) -> int:
        """Remove whatever a bundle's interrupted runs left (containers); how many."""


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
