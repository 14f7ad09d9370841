"""Shared test helpers: drive the real CLI entry point and capture its exit code and output."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

import pytest


@dataclass
class CliResult:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(capsys):
    """Run `runner ARGS` in-process through the console entry point (the one error mapping)."""
    from runner.cli.main import main

    def invoke(*args: str | os.PathLike) -> CliResult:
        capsys.readouterr()
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as e:
            code = int(e.code or 0)
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return invoke


def pytest_report_header(config):
    return f"python {sys.version.split()[0]}"


def _engine_answers() -> bool:
    try:
        import docker

        docker.from_env(timeout=5).ping()
        return True
    except Exception:  # noqa: BLE001 - any failure means "no engine here"
        return False


def _slurm_answers() -> bool:
    import shutil
    import subprocess

    if shutil.which("sbatch") is None or shutil.which("sinfo") is None:
        return False
    try:
        return subprocess.run(["sinfo", "-h"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _podman_answers() -> bool:
    import shutil
    import subprocess

    if shutil.which("podman") is None or not _engine_answers():
        return False
    try:
        return subprocess.run(["podman", "version"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


# marker -> (does the real thing answer?, what CI should have provisioned, how to provision it here)
_REAL = {
    "docker": (_engine_answers, "no Docker engine answers: .ci/provision.sh should have started it",
               "no Docker engine answers (run .ci/provision.sh as root)"),
    "podman": (_podman_answers, "podman does not answer: .ci/provision.sh should have installed it",
               "podman (with a Docker engine to move images from) does not answer (run .ci/provision.sh as root)"),
    "slurm": (_slurm_answers, "no Slurm cluster answers: .ci/provision.sh should have started one",
              "no Slurm cluster answers (run .ci/slurm-up.sh as root)"),
}


def pytest_collection_modifyitems(config, items):
    """Tests marked `docker`, `podman` or `slurm` need the real thing: skipped without it locally, an error in CI."""
    for marker, (answers, ci_error, skip_reason) in _REAL.items():
        marked = [item for item in items if item.get_closest_marker(marker)]
        if not marked or answers():
            continue
        if os.environ.get("CI") == "true":
            raise pytest.UsageError(f"CI=true but {ci_error}")
        for item in marked:
            item.add_marker(pytest.mark.skip(reason=skip_reason))
