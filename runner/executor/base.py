"""The executor interface: WHERE and WHEN runs execute.

An engine describes a run (`Engine.launch(request) -> Launch`) and knows how to run that
description on the node it is on. An executor takes Launches and places them: the inline
executor runs them on this machine one after another; the Slurm executor makes each a job.

The session submits every run first, then follows the jobs (`poll()` until ended, then
`finish()`), so several can be in flight. A job that fails on the host side, or that the
executor loses, finishes as a failed RunOutcome with the reason: never an exception for one
run, never an unbounded wait.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Protocol

from runner.engine.base import Launch, RunOutcome


class JobState(StrEnum):
    PENDING = "pending"  # submitted, not started (queued, or waiting for the inline slot)
    RUNNING = "running"
    ENDED = "ended"  # finish() collects the outcome now, without waiting long


class Job(Protocol):
    run_id: str

    def poll(self) -> JobState:
        """Where the job is now; cheap (the session calls it about twice a second per job)."""

    def cancel(self, reason: str) -> None:
        """Stop it (a pending job never starts); `reason` becomes the outcome's reason."""

    def finish(self) -> RunOutcome:
        """The outcome, once ENDED or cancelled: exit, reason, log, wall time, the node it ran on
        (`outcome.node`) and the telemetry sampled beside it. Bounded wait; cleans up."""


class Executor(Protocol):
    name: str

    def submit(self, run_id: str, launch: Launch, engine_name: str) -> Job:
        """Queue one run. Raises RunnerError (one line) only when nothing can be submitted at all."""

    def describe(self) -> dict:
        """The executor's facts for the bundle and `runner doctor` (kind, and e.g. cluster, partition)."""
