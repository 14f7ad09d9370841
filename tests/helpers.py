"""Helpers shared by tests (import as `tests.helpers`)."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXPERIMENTS = REPO / "experiments"


def files_under(path: Path) -> set[Path]:
    return set(path.rglob("*")) if path.exists() else set()
