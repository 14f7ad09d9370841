"""Run MXNet code from the tests: in `.venv-mxnet`'s python (or RUNNER_MXNET_PYTHON), a subprocess.

MXNet 1.9.1 needs numpy 1.23.5 and cannot live in the main venv (numpy 2.x for PyTorch and
TensorFlow), so a test computes the PyTorch side in its own process and asks `run_job` for the
MXNet side: inputs go in as an `.npz`, `tests/workload/mx_jobs.py` runs the named job there, and
its arrays come back as a dict. Nothing here imports mxnet.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from runner.engine.interpreters import python_for
from runner.errors import EngineError

REPO = Path(__file__).resolve().parents[2]
JOBS = Path(__file__).with_name("mx_jobs.py")


def mx_python() -> tuple[str | None, str]:
    """(the MXNet interpreter, "") or (None, why there is none here); `just setup` creates it."""
    try:
        return python_for("mxnet", sys.executable), ""
    except EngineError as e:
        return None, e.describe()


def require_mxnet() -> str:
    """The MXNet interpreter, or skip the calling test with the reason."""
    python, why = mx_python()
    if python is None:
        pytest.skip(f"MXNet tests need an MXNet interpreter: {why}")
    return python


def run_job(job: str, tmp: Path, params: dict, arrays: dict[str, np.ndarray] | None = None,
            timeout: float = 900) -> dict[str, np.ndarray]:
    """Run `mx_jobs.<job>(params, arrays)` under MXNet on one CPU thread; its returned arrays."""
    python = require_mxnet()
    tmp.mkdir(parents=True, exist_ok=True)
    np.savez(tmp / "in.npz", **(arrays or {}))
    (tmp / "params.json").write_text(json.dumps(params))
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", MXNET_CPU_WORKER_NTHREADS="1",
               MXNET_ENFORCE_DETERMINISM="1")
    proc = subprocess.run([python, str(JOBS), job, str(tmp)], env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)
    if proc.returncode != 0:
        raise AssertionError(f"MXNet job {job} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    with np.load(tmp / "out.npz", allow_pickle=False) as f:
        return {k: f[k] for k in f.files}
