"""No wait on a run is unbounded: a run that ignores SIGTERM is SIGKILLed after the grace period
and its row says so; an engine that cannot start a run gives a failed outcome (real local engine,
a stand-in "python" that traps SIGTERM)."""

from __future__ import annotations

import time
from pathlib import Path

from runner.engine.base import RunRequest
from runner.engine.local_engine import LocalEngine
from runner.reproduce.session import execute_run

GRACE = 0.5


def _stubborn_python(tmp_path: Path) -> str:
    """An executable that ignores SIGTERM (as a hung framework might) and never ends by itself."""
    script = tmp_path / "stubborn-python"
    script.write_text("#!/bin/sh\ntrap '' TERM\nwhile :; do sleep 1; done\n")
    script.chmod(0o755)
    return str(script)


def _request(tmp_path: Path, time_limit_s: int | None = None) -> RunRequest:
    out = tmp_path / "run" / "out"
    out.mkdir(parents=True)
    return RunRequest(run_id="r1", bundle_id="b", framework="pytorch", variant="cpu",
                      config_path=tmp_path / "run.json", data_dir=tmp_path, out_dir=out, code_dir=tmp_path,
                      time_limit_s=time_limit_s)


def test_kill_sends_sigkill_after_the_grace_period(tmp_path):
    handle = LocalEngine(_stubborn_python(tmp_path), stop_grace_s=GRACE).start(_request(tmp_path))
    time.sleep(0.2)  # let the shell install its trap
    t0 = time.monotonic()
    handle.kill("time limit (1 s)")
    outcome = handle.finish()
    assert time.monotonic() - t0 < GRACE + 3
    assert outcome.exit_code == -9
    assert outcome.reason == f"time limit (1 s); did not stop within {GRACE:g} s of SIGTERM: killed (SIGKILL)"


def test_finish_waits_at_most_the_grace_period(tmp_path):
    handle = LocalEngine(_stubborn_python(tmp_path), stop_grace_s=GRACE).start(_request(tmp_path))
    t0 = time.monotonic()
    outcome = handle.finish()  # never killed: finish itself must not wait for ever
    assert time.monotonic() - t0 < GRACE * 2 + 3
    assert not outcome.ok and "still running 0.5 s after it should have ended: killed (SIGKILL)" in outcome.reason


def test_time_limit_on_a_run_that_ignores_sigterm(tmp_path):
    engine = LocalEngine(_stubborn_python(tmp_path), stop_grace_s=GRACE)
    t0 = time.monotonic()
    outcome, _, _ = execute_run(engine, _request(tmp_path, time_limit_s=1), lambda e: None)
    assert time.monotonic() - t0 < 1 + GRACE + 5
    assert not outcome.ok and outcome.reason.startswith("time limit (1 s); did not stop within 0.5 s of SIGTERM")


def test_a_python_that_cannot_be_started_is_a_failed_outcome(tmp_path):
    engine = LocalEngine(str(tmp_path / "no-such-python"))
    outcome, samples, _ = execute_run(engine, _request(tmp_path), lambda e: None)
    assert not outcome.ok and samples == []
    assert outcome.reason.startswith("the engine could not start the run: FileNotFoundError")


def test_a_run_that_honours_sigterm_needs_no_sigkill(tmp_path):
    script = tmp_path / "polite-python"
    script.write_text("#!/bin/sh\nexec sleep 60\n")
    script.chmod(0o755)
    handle = LocalEngine(str(script), stop_grace_s=5).start(_request(tmp_path))
    t0 = time.monotonic()
    handle.kill("interrupted")
    outcome = handle.finish()
    assert time.monotonic() - t0 < 3 and outcome.reason == "interrupted" and outcome.exit_code == -15
