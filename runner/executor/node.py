"""The node a run ran on: its fingerprint as the run's own record (`runs/<id>/environment.json`).

The bundle's host fingerprint is the submitting machine's; with an executor that places runs
elsewhere (Slurm), each run says where it ran: host name, CPU (model and flags), kernel, the GPUs assigned to it
(NVML records of those indices only) and the driver.
"""

from __future__ import annotations

import platform
import socket
from collections.abc import Sequence
from typing import Any


def node_fingerprint(devices: Sequence[int], gpu: dict[str, Any] | None = None) -> dict[str, Any]:
    """This machine, as the node of a run given GPUs `devices`. `gpu`: a gpu_fingerprint() to reuse."""
    from runner.fingerprint.gpu import gpu_fingerprint
    from runner.fingerprint.host import cpu_info

    gpu = gpu if gpu is not None else (gpu_fingerprint() if devices else {"available": False, "reason": "no GPU asked"})
    cpu = cpu_info()
    by_index = {d.get("index"): d for d in gpu.get("devices", []) if isinstance(d, dict)}
    return {
        "host": socket.gethostname(),
        "kernel": platform.release(),
        "cpu_model": cpu.get("model"),
        "cpu_flags": cpu.get("flags"),  # instruction sets: kernels (oneDNN, MKL) and so the last bits follow them
        "cpu_threads": cpu.get("threads"),
        "gpu_indices": list(devices),
        "gpus": [by_index.get(i, {"index": i, "name": None, "missing": True}) for i in devices],
        "driver_version": gpu.get("driver_version"),
        "cuda_driver_version": gpu.get("cuda_driver_version"),
        "gpu_available": bool(gpu.get("available")),
    }
