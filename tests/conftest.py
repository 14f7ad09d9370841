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


def pytest_collection_modifyitems(config, items):
    """Tests marked `docker` need the real engine: skipped without one locally, an error in CI."""
    if not any(item.get_closest_marker("docker") for item in items):
        return
    if _engine_answers():
        return
    if os.environ.get("CI") == "true":
        raise pytest.UsageError("CI=true but no Docker engine answers: .ci/provision.sh should have started it")
    skip = pytest.mark.skip(reason="no Docker engine answers (run .ci/provision.sh as root)")
    for item in items:
        if item.get_closest_marker("docker"):
            item.add_marker(skip)
