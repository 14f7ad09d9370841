"""Shared option aliases, so every command spells the same flag the same way."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

DEFAULT_DATA_ROOT = Path("datasets")
DEFAULT_RESULTS = Path("results")

SpecPath = Annotated[Path, typer.Argument(help="Experiment spec (YAML), e.g. experiments/smoke.yaml.")]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of a table.")]
DataRoot = Annotated[
    Path, typer.Option("--data-root", help="Folder holding datasets; spec paths are relative to it.")
]
ResultsRoot = Annotated[
    Path, typer.Option("--results", help="Folder under which result bundles are written.")
]
MaxRuns = Annotated[int, typer.Option("--max-runs", min=1, help="Refuse specs that expand to more runs.")]
