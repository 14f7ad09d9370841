"""Which replica of a data-parallel run this process is, and how replicas report to the leader.

PyTorch data-parallel runs are N processes started by torchrun (`RANK`, `WORLD_SIZE`,
`LOCAL_RANK` in the environment); TensorFlow's MirroredStrategy keeps its replicas in one
process. Only the leader (rank 0) writes events and result.json. A replica that fails writes
`replica-<rank>.failed.json` into the output folder before it exits, so the leader's `run_end`
can say which replica failed and why (torchrun then stops every replica, the leader with SIGTERM).
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.errors import UsageError
from runner.workload.harness.config import RunConfig

FAILED_GLOB = "replica-*.failed.json"


@dataclass(frozen=True)
class Replica:
    """This process's place in the run: `rank` of `processes` (1 for a single process or TensorFlow)."""

    rank: int = 0
    processes: int = 1
    local_rank: int = 0

    @property
    def leader(self) -> bool:
        return self.rank == 0

    @property
    def shard(self) -> tuple[int, int]:
        return (self.rank, self.processes)


def replica_of(cfg: RunConfig, environ: dict[str, str] | None = None) -> Replica:
    """The replica this process is: from torchrun's environment for a PyTorch data-parallel run."""
    env = os.environ if environ is None else environ
    par = cfg.parallel
    if not par.data or cfg.framework != "pytorch" or par.replicas == 1:
        return Replica()
    try:
        rank, world, local = int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", env["RANK"]))
    except (KeyError, ValueError):
        raise UsageError(f"run.json asks for {par.replicas} PyTorch replicas, but this process was not started by "
                         "torchrun (RANK / WORLD_SIZE unset)", file=cfg.path, field="parallel.replicas",
                         fix=f"torchrun --nproc-per-node {par.replicas} -m runner.workload run ...") from None
    if world != par.replicas or not 0 <= rank < world:
        raise UsageError(f"torchrun started {world} processes (this is rank {rank}); run.json asks for "
                         f"{par.replicas} replicas", file=cfg.path, field="parallel.replicas",
                         fix=f"use --nproc-per-node {par.replicas}")
    return Replica(rank, world, local)


def die_with_launcher() -> None:
    """Ask Linux to SIGTERM this replica when its launcher dies: torchrun starts every replica in a
    session of its own, so a launcher killed outright (SIGKILL after the engine's grace period)
    would otherwise leave the replicas running."""
    if not sys.platform.startswith("linux"):
        return
    pr_set_pdeathsig, launcher = 1, os.getppid()  # the launcher may be pid 1 (a container's entrypoint)
    try:
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != launcher:  # the launcher died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)


def report_failure(out_dir: Path, replica: Replica, reason: str, error: str | None) -> None:
    """A non-leader replica's failure, for the leader to put in run_end (best effort: the
    replica is failing already)."""
    path = out_dir / f"replica-{replica.rank}.failed.json"
    try:
        path.write_text(json.dumps({"rank": replica.rank, "reason": reason, "error": error}), encoding="utf-8")
    except OSError:
        pass


def first_failure(out_dir: Path) -> dict[str, Any] | None:
    """The failure another replica reported, lowest rank first (None: none did)."""
    for path in sorted(out_dir.glob(FAILED_GLOB)):
        try:
            doc = json.loads(path.read_text(encoding="utf-8")[:4096])
        except (OSError, ValueError):
            continue
        if isinstance(doc, dict) and isinstance(doc.get("reason"), str):
            return doc
    return None


class NullEvents:
    """What a non-leader replica writes events to: nothing (the leader's stream is the record)."""

    def emit(self, type_: str, **fields: Any) -> dict[str, Any]:
        return {"type": type_, **fields}

    def sync(self) -> None:
        pass

    def __enter__(self) -> NullEvents:
        return self

    def __exit__(self, *exc: object) -> None:
        pass
