"""The benchmark scripts stay runnable as the code under them changes: each imports, and each
stand-in request that overrides RunRequest.argv still takes every argument the engines pass it
(a missed `images=` once broke bench_engine and bench_podman at their first run, not at review)."""

from __future__ import annotations

import importlib.util
import inspect

import pytest

from runner.engine.base import RunRequest
from tests.helpers import REPO

SCRIPTS = sorted((REPO / "benchmarks").glob("bench_*.py"))


def _load(path):
    spec = importlib.util.spec_from_file_location(f"bench_script_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("path", [p for p in SCRIPTS if "RunRequest" in p.read_text()], ids=lambda p: p.stem)
def test_stand_in_requests_take_what_the_engines_pass(path):
    module = _load(path)
    subclasses = [obj for obj in vars(module).values()
                  if inspect.isclass(obj) and issubclass(obj, RunRequest) and obj is not RunRequest]
    assert subclasses, f"{path.name} mentions RunRequest but defines no stand-in"
    want = list(inspect.signature(RunRequest.argv).parameters)
    for cls in subclasses:
        assert list(inspect.signature(cls.argv).parameters) == want, f"{path.name}: {cls.__name__}.argv"


def test_the_bare_ddp_loop_reports_and_exits():
    """dp_bare.py's DDP path leaves with os._exit after its last barrier (torch's gloo teardown
    could deadlock): its one JSON line must still come out, and both replicas exit 0."""
    import json
    import subprocess
    import sys

    argv = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
            str(REPO / "benchmarks" / "dp_bare.py"), "pytorch", "ddp", "8", "7"]
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
    assert len(lines) == 1 and json.loads(lines[0])["per_replica_img_s"] > 0


def test_the_bare_mirrored_loop_reports():
    """dp_bare.py's MirroredStrategy loop (the benchmark's TensorFlow baseline) runs its two
    logical CPU replicas and prints its one JSON line."""
    import json
    import os
    import subprocess
    import sys

    pytest.importorskip("tensorflow")
    argv = [sys.executable, str(REPO / "benchmarks" / "dp_bare.py"), "tensorflow", "mirrored", "8", "7"]
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
    assert len(lines) == 1 and json.loads(lines[0])["per_replica_img_s"] > 0
