"""The inline executor: every run on this machine, one after another, through the engine.

`submit` only queues; a job starts when it is polled and no earlier job of this executor is
still unfinished, so a session can submit a whole sweep, then follow it. The time limit is
enforced here (polling), the telemetry sampler runs beside the run on this machine, and a run
that fails on the host side (the engine refuses to start it, loses it) is a failed outcome with
its reason, never an exception.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any

from runner.engine.base import Engine, Launch, RunningRun, RunOutcome
from runner.errors import ExecutorError, RunnerError
from runner.executor.base import JobState
from runner.executor.node import node_fingerprint

# (launch, the running run's sample_target, the engine) -> a started-able sampler, or None
SamplerFactory = Callable[[Launch, object, Engine], Any]


def one_line(e: BaseException) -> str:
    text = e.describe() if isinstance(e, RunnerError) else f"{type(e).__name__}: {e}"
    return " ".join(text.split())[:500]


def host_failure(what: str, e: BaseException, started: float, stopped_for: str | None = None) -> RunOutcome:
    reason = f"{stopped_for + '; ' if stopped_for else ''}{what}: {one_line(e)}"
    return RunOutcome(exit_code=None, reason=reason, log=reason + "\n", wall_s=time.monotonic() - started)


class InlineJob:
    def __init__(self, executor: InlineExecutor, run_id: str, launch: Launch) -> None:
        self.run_id, self.launch = run_id, launch
        self._executor = executor
        self.state = JobState.PENDING
        self._handle: RunningRun | None = None
        self._outcome: RunOutcome | None = None  # decided without the engine (start failed, cancelled while pending)
        self._sampler: Any = None
        self._started = 0.0
        self._stopped_for: str | None = None
        self._problems: list[str] = []
        self.finished = False

    # -- the Job interface -------------------------------------------------------------------
    def poll(self) -> JobState:
        if self.state is JobState.PENDING:
            self._executor.advance()
        if self.state is JobState.RUNNING:
            try:
                code = self._handle.poll()
            except Exception as e:  # noqa: BLE001 - the engine lost the run: stop it, finish() reports
                self._stop(f"runner error: {one_line(e)}")
                return self.state
            if code is not None:
                self.state = JobState.ENDED
            elif self.launch.limits.time_s and time.monotonic() - self._started > self.launch.limits.time_s:
                self._stop(f"time limit ({self.launch.limits.time_s} s)")
        return self.state

    def cancel(self, reason: str) -> None:
        if self.state is JobState.PENDING:
            self._outcome = RunOutcome(exit_code=None, reason=f"{reason} (never started)", log="", wall_s=0.0)
            self.state = JobState.ENDED
        elif self.state is JobState.RUNNING:
            self._stop(reason)

    def finish(self) -> RunOutcome:
        """Bounded: the engine's finish() waits at most its grace period, then SIGKILL."""
        if self.state is JobState.PENDING:
            raise ExecutorError(f"run {self.run_id} was never started", fix="poll it until it ends first")
        try:
            if self._outcome is not None:
                return self._outcome
            try:
                outcome = self._handle.finish()
            except Exception as e:  # noqa: BLE001 - the engine lost the run: a failed row, the sweep goes on
                outcome = host_failure("the engine could not finish the run", e, self._started, self._stopped_for)
            finally:
                outcome_samples = self._stop_sampler()
            if self._problems:
                outcome.reason = "; ".join([outcome.reason or "failed on the host side", *self._problems])
            outcome.telemetry = outcome_samples
            outcome.telemetry_status = self._sampler.status() if self._sampler is not None else None
            outcome.node = self._executor.node(self.launch)
            self._outcome = outcome
            return outcome
        finally:
            self.state = JobState.ENDED
            self.finished = True

    # -- inside ------------------------------------------------------------------------------
    def _start(self) -> None:
        self._started = time.monotonic()
        try:
            self._handle = self._executor.engine.run(self.launch)
        except Exception as e:  # noqa: BLE001 - EngineError, the SDK's errors, OSError: a failed row
            self._outcome = host_failure("the engine could not start the run", e, self._started)
            self._outcome.node = self._executor.node(self.launch)
            self.state = JobState.ENDED
            return
        self.state = JobState.RUNNING
        factory = self._executor.sampler_factory
        if factory is not None:
            try:
                self._sampler = factory(self.launch, self._handle.sample_target, self._executor.engine)
                if self._sampler is not None:
                    self._sampler.start()
            except Exception as e:  # noqa: BLE001 - a host-side error while starting: the run is stopped, as before
                self._sampler = None
                self._stop(f"runner error: {one_line(e)}")

    def _stop(self, reason: str) -> None:
        """Stop the run; an engine that fails to is noted in the reason (finish() still bounds the wait)."""
        self._stopped_for = self._stopped_for or reason
        self.state = JobState.ENDED
        try:
            self._handle.kill(reason)
        except Exception as e:  # noqa: BLE001 - EngineError and the SDK's errors: noted, finish() goes on
            self._problems.append(f"stopping it failed: {one_line(e)}")

    def _stop_sampler(self) -> list:
        if self._sampler is None:
            return []
        try:
            return self._sampler.stop()
        except Exception as e:  # noqa: BLE001 - telemetry is lost, the run's result is not
            self._problems.append(f"telemetry sampler: {one_line(e)}")
            return []


class InlineExecutor:
    """Runs on this machine, one at a time (`max_parallel` > 1 would overlap them; not offered yet)."""

    name = "inline"

    def __init__(self, engine: Engine, sampler_factory: SamplerFactory | None = None) -> None:
        self.engine = engine
        self.sampler_factory = sampler_factory
        self._queue: deque[InlineJob] = deque()
        self._current: InlineJob | None = None
        self._gpu: dict | None = None

    def describe(self) -> dict:
        import socket

        return {"kind": "inline", "node": socket.gethostname(), "parallel": 1,
                "note": "runs execute on the submitting machine, one after another"}

    def submit(self, run_id: str, launch: Launch, engine_name: str) -> InlineJob:
        if engine_name != self.engine.name:
            raise ExecutorError(f"run {run_id} was described for the {engine_name} engine; "
                                f"this inline executor runs {self.engine.name}", field="execution.engine",
                                fix="describe runs with the executor's engine")
        job = InlineJob(self, run_id, launch)
        self._queue.append(job)
        return job

    def advance(self) -> None:
        """Start the next queued job when the slot is free (the previous job finished)."""
        while (self._current is None or self._current.finished) and self._queue:
            job = self._queue.popleft()
            if job.state is not JobState.PENDING:
                continue  # cancelled while queued
            self._current = job
            job._start()
            if job.state is JobState.ENDED and job._handle is None:
                job.finished = True  # the engine refused it: its outcome is decided, the slot is free

    def node(self, launch: Launch) -> dict:
        if self._gpu is None and launch.devices:
            from runner.fingerprint.gpu import gpu_fingerprint

            self._gpu = gpu_fingerprint()
        return node_fingerprint(launch.devices, self._gpu)
