"""Helpers shared by tests (import as `tests.helpers`)."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXPERIMENTS = REPO / "experiments"


def files_under(path: Path) -> set[Path]:
    return set(path.rglob("*")) if path.exists() else set()


def mxnet_python() -> str:
    """The interpreter with MXNet (`.venv-mxnet`, made by `just setup`, or RUNNER_MXNET_PYTHON).

    Absent locally: the test is skipped with the reason. Under CI (`CI` set) it must be there:
    the test fails instead, so MXNet's tests cannot silently stop running.
    """
    import os

    import pytest

    from runner.engine.interpreters import python_for
    from runner.errors import EngineError

    try:
        return python_for("mxnet", "")
    except EngineError as e:
        if os.environ.get("CI"):
            pytest.fail(f"CI must have MXNet's interpreter: {e.describe()}")
        pytest.skip(e.describe())


def plan_with_execution(tmp_path: Path, execution: dict):
    """tests/specs/tiny.yaml planned with `execution` in place of its own."""
    import yaml

    from runner.spec.plan import plan_file

    doc = yaml.safe_load((REPO / "tests" / "specs" / "tiny.yaml").read_text())
    doc["execution"] = execution
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(doc))
    return plan_file(path)
