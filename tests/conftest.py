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
