"""The sweep with a fake engine: a run the engine cannot start is a failed row and the next run
goes on; Ctrl-C stops the sweep; either way nothing is left under <cache>/scratch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich.console import Console

import runner.reproduce.session as session
from runner.engine.base import RunOutcome
from runner.errors import EngineError
from tests.helpers import REPO
from tests.reproduce.test_execute_run import fake_launch

TINY = REPO / "tests" / "specs" / "tiny.yaml"


class _Done:
    """A run that ended at once with exit 0 but wrote no events (so the bundle calls it failed)."""

    sample_target = None

    def poll(self) -> int:
        return 0

    def kill(self, reason: str) -> None:
        pass

    def finish(self) -> RunOutcome:
        return RunOutcome(exit_code=0, reason=None, log="", wall_s=0.0)


class ScriptedEngine:
    """start() raises the next scripted error (None: the run starts)."""

    name, isolated = "fake", False

    def __init__(self, *errors: BaseException | None) -> None:
        self.errors = list(errors)
        self.started: list[str] = []

    def describe(self) -> dict:
        return {"kind": "fake"}

    def launch(self, request):
        return fake_launch(request)

    def remove_leftovers(self, bundle_id: str) -> int:
        return 0

    def run(self, request):
        self.started.append(request.run_id)
        assert request.out_dir.is_dir()  # the run's scratch exists while it runs
        error = self.errors.pop(0)
        if error is not None:
            raise error
        return _Done()


def _reproduce(tmp_path: Path, monkeypatch, engine: ScriptedEngine) -> Path:
    monkeypatch.setattr(session, "_select_engine", lambda choice, console: engine)
    monkeypatch.setattr(session, "framework_info", lambda *a, **k: {"framework": "fake"})
    opts = session.SessionOptions(data_root=tmp_path / "data", results_root=tmp_path / "results",
                                  cache=tmp_path / "cache", engine="local")
    return session.reproduce_spec(TINY, opts, console=Console(file=open("/dev/null", "w")))  # noqa: SIM115


def _scratch_left(tmp_path: Path) -> list[Path]:
    scratch = tmp_path / "cache" / "scratch"
    return sorted(scratch.rglob("*")) if scratch.exists() else []


def test_a_start_failure_is_a_row_and_the_next_run_goes_on(tmp_path, monkeypatch):
    engine = ScriptedEngine(EngineError("creating the container of run x failed: 500 Server Error"), None)
    bundle = _reproduce(tmp_path, monkeypatch, engine)
    assert len(engine.started) == 2
    runs = {r["id"]: r for r in json.loads((bundle / "manifest.json").read_text())["runs"]}
    first = runs[engine.started[0]]
    assert first["status"] == "failed"
    assert first["reason"].startswith("the engine could not start the run: creating the container of run x failed")
    assert "500 Server Error" in (bundle / "logs" / f"{engine.started[0]}.log").read_text()
    assert _scratch_left(tmp_path) == []


def test_ctrl_c_at_a_start_stops_the_sweep_and_leaves_no_scratch(tmp_path, monkeypatch):
    engine = ScriptedEngine(None, KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        _reproduce(tmp_path, monkeypatch, engine)
    assert len(engine.started) == 2
    assert _scratch_left(tmp_path) == []
    (partial,) = (tmp_path / "results" / "tiny").iterdir()
    assert partial.name.endswith(".partial")  # kept for --resume
