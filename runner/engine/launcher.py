"""What starts the workload in a run: `-m runner.workload`, or torchrun in front of it.

A PyTorch data-parallel run (`parallel: data`, replicas > 1) is one process per replica, started
by torchrun on the run's node (`--standalone`: a local rendezvous on a free loopback port, which
a container without network still has). `runner.workload.torchrun` is torchrun
(`torch.distributed.run`) with the workload's exit codes. TensorFlow keeps its replicas in one
process (MirroredStrategy), so its command does not change.
"""

from __future__ import annotations


def workload_module(framework: str, replicas: int) -> list[str]:
    """The interpreter arguments that start `runner.workload` for a run (its subcommand follows)."""
    if framework == "pytorch" and replicas > 1:
        return ["-m", "runner.workload.torchrun", "--standalone", "--nnodes", "1", "--nproc-per-node",
                str(replicas), "--max-restarts", "0", "--local-addr", "127.0.0.1", "-m", "runner.workload"]
    return ["-m", "runner.workload"]
