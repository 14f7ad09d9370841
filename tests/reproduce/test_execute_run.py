"""`execute_run` always finishes the run it started, and a run that fails on the host side (the
engine refuses to start it, loses it, or the host errs while following it) is a failed outcome
with its reason: only Ctrl-C propagates."""

from __future__ import annotations

import pytest

from runner.engine.base import Launch, RunOutcome, RunRequest
from runner.errors import EngineError
from runner.reproduce.session import execute_run


class FakeHandle:
    """Stands in for a running container: never exits by itself."""

    def __init__(self, kill_error: Exception | None = None, finish_error: Exception | None = None) -> None:
        self.killed: str | None = None
        self.finished = False
        self.sample_target = None
        self.kill_error, self.finish_error = kill_error, finish_error

    def poll(self):
        return None if self.killed is None else 137

    def kill(self, reason: str) -> None:
        self.killed = reason
        if self.kill_error:
            raise self.kill_error

    def finish(self) -> RunOutcome:
        self.finished = True
        if self.finish_error:
            raise self.finish_error
        return RunOutcome(exit_code=137, reason=self.killed, log="", wall_s=0.0)


def fake_launch(request: RunRequest) -> Launch:
    return Launch(run_id=request.run_id, bundle_id=request.bundle_id, engine="fake", argv=("python3",), env={},
                  mounts=(), out_dir=request.out_dir, limits=request.limits)


class FakeEngine:
    name, isolated = "fake", True

    def __init__(self, start_error: Exception | None = None, **handle) -> None:
        self.handle = FakeHandle(**handle)
        self.start_error = start_error

    def launch(self, request):
        return fake_launch(request)

    def run(self, launch):
        if self.start_error:
            raise self.start_error
        return self.handle


def _request(tmp_path, time_limit_s: int | None = None) -> RunRequest:
    out = tmp_path / "out"
    out.mkdir()
    (out / "events.jsonl").write_text('{"type": "step", "t": 0, "run_id": "r"}\n')
    return RunRequest(run_id="r", bundle_id="b", framework="pytorch", variant="cpu", config_path=tmp_path / "c",
                      data_dir=tmp_path, out_dir=out, code_dir=tmp_path, time_limit_s=time_limit_s)


def test_ctrl_c_stops_finishes_and_propagates(tmp_path):
    engine = FakeEngine()

    def on_event(event):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        execute_run(engine, _request(tmp_path), on_event)
    assert engine.handle.finished and engine.handle.killed == "interrupted"


def test_a_host_side_error_is_a_failed_outcome_and_the_run_is_finished(tmp_path):
    engine = FakeEngine()

    def on_event(event):
        raise ValueError("boom")

    outcome, samples, _ = execute_run(engine, _request(tmp_path), on_event)
    assert engine.handle.finished and engine.handle.killed == "runner error: ValueError: boom"
    assert not outcome.ok and outcome.reason == "runner error: ValueError: boom" and samples == []


def test_a_failing_sampler_does_not_leave_the_run_behind(tmp_path):
    engine = FakeEngine()

    def broken_sampler(target):
        raise RuntimeError("no stats")

    outcome, _, _ = execute_run(engine, _request(tmp_path), lambda e: None, broken_sampler)
    assert engine.handle.finished and engine.handle.killed
    assert not outcome.ok and "RuntimeError: no stats" in outcome.reason


@pytest.mark.parametrize("error", [
    EngineError("the engine refused", fix="check `runner doctor`"),
    OSError(2, "No such file or directory"),
    RuntimeError("SDK surprise"),
])
def test_an_engine_that_cannot_start_the_run_gives_a_failed_outcome(tmp_path, error):
    outcome, samples, status = execute_run(FakeEngine(start_error=error), _request(tmp_path), lambda e: None)
    assert not outcome.ok and outcome.exit_code is None and samples == [] and status is None
    assert outcome.reason.startswith("the engine could not start the run: ")
    assert str(error).split()[0] in outcome.reason and "\n" not in outcome.reason
    assert outcome.reason in outcome.log  # the bundle's log for the run says why, too


def test_ctrl_c_while_starting_propagates(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        execute_run(FakeEngine(start_error=KeyboardInterrupt()), _request(tmp_path), lambda e: None)


def test_an_engine_that_fails_to_stop_or_finish_is_in_the_reason(tmp_path):
    engine = FakeEngine(kill_error=EngineError("stopping container abc failed: 500 Server Error"),
                        finish_error=EngineError("container abc did not exit 10 s after SIGKILL"))
    outcome, _, _ = execute_run(engine, _request(tmp_path, time_limit_s=0.01), lambda e: None)
    assert engine.handle.killed.startswith("time limit") and engine.handle.finished
    assert outcome.reason.startswith("time limit (0.01 s); the engine could not finish the run: container abc")
    assert "stopping it failed: stopping container abc failed: 500 Server Error" in outcome.reason
