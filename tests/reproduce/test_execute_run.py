"""`execute_run` always finishes the run it started: on Ctrl-C, and on any host-side error."""

from __future__ import annotations

import pytest

from runner.engine.base import RunOutcome, RunRequest
from runner.reproduce.session import execute_run


class FakeHandle:
    """Stands in for a running container: never exits by itself."""

    def __init__(self) -> None:
        self.killed: str | None = None
        self.finished = False
        self.sample_target = None

    def poll(self):
        return None if self.killed is None else 137

    def kill(self, reason: str) -> None:
        self.killed = reason

    def finish(self) -> RunOutcome:
        self.finished = True
        return RunOutcome(exit_code=137, reason=self.killed, log="", wall_s=0.0)


class FakeEngine:
    name, isolated = "fake", True

    def __init__(self) -> None:
        self.handle = FakeHandle()

    def start(self, request):
        return self.handle


def _request(tmp_path) -> RunRequest:
    out = tmp_path / "out"
    out.mkdir()
    (out / "events.jsonl").write_text('{"type": "step", "t": 0, "run_id": "r"}\n')
    return RunRequest(run_id="r", bundle_id="b", framework="pytorch", variant="cpu", config_path=tmp_path / "c",
                      data_dir=tmp_path, out_dir=out, code_dir=tmp_path)


@pytest.mark.parametrize("error", [KeyboardInterrupt, ValueError])
def test_the_run_is_killed_and_finished(tmp_path, error):
    engine = FakeEngine()

    def on_event(event):
        raise error("boom")

    with pytest.raises(error):
        execute_run(engine, _request(tmp_path), on_event)
    assert engine.handle.finished
    assert engine.handle.killed == ("interrupted" if error is KeyboardInterrupt else "runner error: ValueError")


def test_a_failing_sampler_does_not_leave_the_run_behind(tmp_path):
    engine = FakeEngine()

    def broken_sampler(target):
        raise RuntimeError("no stats")

    with pytest.raises(RuntimeError):
        execute_run(engine, _request(tmp_path), lambda e: None, broken_sampler)
    assert engine.handle.finished and engine.handle.killed
