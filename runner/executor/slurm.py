"""The Slurm executor: every run a job, a sweep one job array per resource shape.

- `check()` before anything is written: Slurm answers (sinfo), the partition exists and is up,
  the GRES asked for is one the partition's nodes declare, and `sbatch --test-only` accepts the
  jobs' options. A refusal is one ExecutorError line (exit 2); nothing is submitted.
- `submit()` writes the run's Launch beside its output (`task.json`) and queues it; the first
  `poll()` submits every queued run with one `sbatch --array` per shape.
- Following is one `squeue` call for all jobs, at most every `min_poll_s` and never more often
  than keeps its CPU cost under FOLLOW_CPU_SHARE of one core; jobs squeue no longer knows are
  looked up with one `sacct` call (when the cluster keeps accounting). A job neither knows about
  and that wrote no outcome is a failed row after `vanish_grace_s`: never a hang.
- The job's time limit is Slurm's; the run's own `resources.time_limit_s` and its wall time are
  measured inside the job, from the run's start (runner/executor/slurm_node.py).
- `cancel()` queues an `scancel`; they are sent together on the next poll or finish (and at
  exit), so Ctrl-C on a 1,000-run sweep is a handful of scancel calls, not a thousand.
- A job Slurm ended (CANCELLED, TIMEOUT, NODE_FAIL, PREEMPTED, OUT_OF_MEMORY, ...) before its run
  finished is a failed row whose reason starts with that state.
"""

from __future__ import annotations

import atexit
import itertools
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.engine.base import Launch, RunOutcome
from runner.errors import ExecutorError, RunnerError
from runner.executor.base import JobState
from runner.executor.slurm_batch import (
    JobShape,
    SlurmSettings,
    array_args,
    batch_script,
    group_by_shape,
    job_gres,
    job_name,
    resource_args,
)
from runner.executor.slurm_cli import QueueRow, SlurmCli, array_job_ids, first_line
from runner.executor.slurm_node import OUTCOME_FILE, read_outcome, write_task
from runner.fileio import write_atomic

FOLLOW_CPU_SHARE = 0.005  # following may cost at most 0.5 % of one core (the issue allows 1 %)
MIN_POLL_S = 1.0
VANISH_GRACE_S = 60.0  # a job gone from squeue and sacct, with no outcome file: failed after this long
CONTROLLER_GRACE_S = 300.0  # squeue failing this long (slurmctld down) ends the follow: failed rows, no hang
# sacct's final record of a job can trail slurmctld's by seconds (measured on the test cluster: up to
# 5 s for an array's tasks; until then sacct shows the array's first record under its bare id): a job
# squeue forgot that wrote its outcome waits this long for that record before its state is UNKNOWN
ACCOUNTING_LAG_S = 20.0
UNKNOWN = "UNKNOWN"  # a job purged from the controller that wrote its outcome, with no sacct record of its end
CANCEL_WAIT_S = 90.0  # after scancel, finish() waits this long for Slurm to end the job (KillWait + grace)
LOG_TAIL_BYTES = 4000
_serial = itertools.count()


@dataclass
class _Submitted:
    """Where a queued run went: its array task id and Slurm's log for it."""

    task_id: str
    slurm_log: Path
    array_size: int = 1

    def find(self, rows: dict[str, QueueRow]) -> QueueRow | None:
        """This task's row; squeue names the one task of a one-task array by the array's id alone."""
        row = rows.get(self.task_id)
        if row is None and self.array_size == 1:
            row = rows.get(self.task_id.split("_")[0])
        return row


class SlurmJob:
    """One run as a Slurm array task."""

    def __init__(self, executor: SlurmExecutor, run_id: str, launch: Launch, run_dir: Path) -> None:
        self.run_id, self.launch, self.run_dir = run_id, launch, run_dir
        self._executor = executor
        self.submitted: _Submitted | None = None
        self.row: QueueRow | None = None  # the latest squeue/sacct row
        self.missing_since: float | None = None
        self.vanished = False
        self.cancel_reason: str | None = None
        self.refused: str | None = None  # sbatch refused the array: the reason
        self._outcome: RunOutcome | None = None

    # -- the Job interface -------------------------------------------------------------------
    def poll(self) -> JobState:
        self._executor.follow()
        return self.state

    @property
    def state(self) -> JobState:
        if self.refused is not None or self.vanished or self._outcome is not None:
            return JobState.ENDED
        if self.submitted is None:
            return JobState.PENDING
        if self.row is None:
            return JobState.PENDING  # not seen yet, or gone (within the grace): still waited for
        if self.row.final or self.row.state == UNKNOWN:
            return JobState.ENDED
        return JobState.PENDING if self.row.pending else JobState.RUNNING

    def cancel(self, reason: str) -> None:
        if self.cancel_reason is not None or self.state is JobState.ENDED:
            return
        self.cancel_reason = reason
        if self.submitted is None:  # still in our queue: it never reaches Slurm
            self._outcome = RunOutcome(exit_code=None, reason=f"{reason} (never submitted)", log="", wall_s=0.0)
            self._executor.unqueue(self)
        else:
            self._executor.queue_cancel(self.submitted.task_id)

    def finish(self) -> RunOutcome:
        """The outcome once the job ended; after a cancel, waits (bounded) for Slurm to end it."""
        if self._outcome is not None:
            return self._outcome
        if self.state is not JobState.ENDED:
            if self.cancel_reason is None:
                raise ExecutorError(f"run {self.run_id} has not ended", fix="poll it until it ends first")
            self._executor.wait_ended([self], CANCEL_WAIT_S)
        if self.refused is not None:
            self._outcome = RunOutcome(exit_code=None, reason=self.refused, log=self.refused + "\n", wall_s=0.0)
        else:
            self._outcome = self._compose()
        return self._outcome

    # -- inside ------------------------------------------------------------------------------
    def _compose(self) -> RunOutcome:
        sub = self.submitted
        assert sub is not None
        state = self.row.state if self.row is not None else None
        slurm = {"job": sub.task_id, "state": state, "node": self.row.node if self.row else None}
        problems: list[str] = []
        try:
            outcome = read_outcome(self.run_dir)
        except (RunnerError, ValueError, TypeError) as e:  # a half-written or foreign file: said, not fatal
            outcome, problems = None, [f"its outcome file could not be read: {first_line(str(e))}"]
        tail = _tail(sub.slurm_log)
        if outcome is None:
            reason = self._reason_without_outcome(state, sub)
            log = f"{reason}\n" + (f"--- Slurm's log of job {sub.task_id} ---\n{tail}" if tail else "")
            outcome = RunOutcome(exit_code=None, reason=reason, log=log, wall_s=0.0,
                                 node={"host": slurm["node"], "slurm": slurm})
        elif state not in (None, UNKNOWN, "COMPLETED", "FAILED") and not outcome.ok:
            outcome.reason = f"{self._slurm_reason(state)}; {outcome.reason or 'the run did not finish'}"
        if problems:
            outcome.reason = "; ".join([outcome.reason or "failed", *problems])
        if tail and outcome.ok is False and "Traceback" in tail:
            outcome.log += f"\n--- Slurm's log of job {sub.task_id} ---\n{tail}"
        outcome.extra = dict(outcome.extra) | {"slurm_job": sub.task_id, "slurm_state": state or "unknown"}
        return outcome

    def _slurm_reason(self, state: str) -> str:
        what = {"CANCELLED": "the job was cancelled", "TIMEOUT": "the job hit its Slurm time limit",
                "NODE_FAIL": "the node failed", "PREEMPTED": "the job was preempted",
                "OUT_OF_MEMORY": "the job ran out of memory", "BOOT_FAIL": "the node failed to boot",
                "DEADLINE": "the job missed its deadline"}.get(state, "Slurm ended the job")
        by_us = f" ({self.cancel_reason})" if state == "CANCELLED" and self.cancel_reason else ""
        return f"slurm {state}: {what}{by_us}"

    def _reason_without_outcome(self, state: str | None, sub: _Submitted) -> str:
        if self.vanished:
            return (f"slurm job {sub.task_id} vanished from the queue with no exit record (squeue and sacct know "
                    f"nothing of it after {self._executor.vanish_grace_s:g} s) and wrote no outcome")
        if state in ("COMPLETED", "FAILED", None):
            return (f"slurm {state or 'unknown'}: job {sub.task_id} ended without writing its outcome "
                    f"(see Slurm's log {sub.slurm_log})")
        return self._slurm_reason(state) + " (before the run wrote its outcome)"


def _tail(path: Path) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - LOG_TAIL_BYTES))
            return fh.read().decode("utf-8", "replace")
    except OSError:
        return ""


class SlurmExecutor:
    name = "slurm"

    def __init__(self, settings: SlurmSettings, cli: SlurmCli | None = None, *, telemetry_hz: float = 1.0,
                 min_poll_s: float = MIN_POLL_S, vanish_grace_s: float = VANISH_GRACE_S) -> None:
        self.settings, self.cli = settings, cli or SlurmCli()
        self.telemetry_hz, self.min_poll_s, self.vanish_grace_s = telemetry_hz, min_poll_s, vanish_grace_s
        self.partition: str | None = settings.partition
        self.facts: dict[str, Any] = {}
        self._queued: list[SlurmJob] = []
        self._live: list[SlurmJob] = []  # submitted, not ended
        self._to_cancel: list[str] = []
        self._next_follow = 0.0
        self._accounting: bool | None = None  # None: not asked yet
        self._unanswered_since: float | None = None  # squeue has been failing since
        self.follow_calls = 0
        atexit.register(self.close)

    # -- before anything is written ----------------------------------------------------------
    def check(self, shapes: list[JobShape]) -> None:
        """Refuse (ExecutorError, one line) what Slurm would not run; submits nothing."""
        partitions = self.cli.partitions()
        if not partitions:
            raise ExecutorError("the Slurm cluster has no partitions", field="execution.partition",
                                fix="ask the cluster's administrators")
        names = ", ".join(sorted(partitions))
        if self.partition is None:
            default = [p for p in partitions.values() if p.default]
            if not default:
                raise ExecutorError(f"the cluster has no default partition (it has: {names})",
                                    field="execution.partition", fix="name one: --partition NAME")
            self.partition = default[0].name
        part = partitions.get(self.partition)
        if part is None:
            raise ExecutorError(f"unknown partition {self.partition!r} (the cluster has: {names})",
                                field="execution.partition", fix="name one of those: --partition NAME")
        if part.available != "up":
            raise ExecutorError(f"partition {self.partition!r} is {part.available}", field="execution.partition",
                                fix="wait for it, or name another partition")
        for shape in dict.fromkeys(shapes):
            gres = job_gres(self.settings, shape)
            missing = sorted({g.split(":")[0] for g in (gres or "").split(",") if g} - part.gres)
            if missing:
                have = ", ".join(sorted(part.gres)) or "none"
                raise ExecutorError(f"partition {self.partition!r} has no GRES {missing[0]!r} (its nodes declare: "
                                    f"{have}); the jobs would ask for --gres={gres}", field="execution.gres",
                                    fix="drop gres / resources.gpus, or name a partition with it")
            refusal = self.cli.test_only(self._resource_args(shape))
            if refusal is not None:
                raise ExecutorError(f"Slurm refuses the jobs ({' '.join(self._resource_args(shape))}): {refusal}",
                                    field="execution", fix="change the spec's execution/resources fields or the flags")
        self.facts = self._cluster_facts()

    def _resource_args(self, shape: JobShape) -> list[str]:
        return resource_args(SlurmSettings(**{**self.settings.__dict__, "partition": self.partition}), shape)

    def _cluster_facts(self) -> dict[str, Any]:
        version = self.cli.run("sinfo", ["--version"], check=False).stdout.strip()
        conf = self.cli.run("scontrol", ["show", "config"], check=False).stdout
        keys = ("ClusterName", "SlurmctldHost", "SelectType", "SelectTypeParameters", "ProctrackType",
                "TaskPlugin", "AccountingStorageType", "KillWait", "MinJobAge")
        facts = {}
        for line in conf.splitlines():
            key, _, value = line.partition("=")
            if key.strip() in keys:
                facts[key.strip()] = value.strip()
        return {"version": version, "config": facts}

    @property
    def ships_images(self) -> bool:
        """execution.ship_images: the session writes image archives the nodes load (image_ship.py)."""
        return self.settings.ship_images

    def describe(self) -> dict[str, Any]:
        return {"kind": "slurm", "partition": self.partition, "sbatch": self.settings.describe(), **self.facts,
                "arrays": "one sbatch --array per resource shape", "node_side": "python -m runner.executor.slurm_node",
                "follow": {"min_poll_s": self.min_poll_s, "max_cpu_share": FOLLOW_CPU_SHARE},
                "note": "the job's limit is Slurm's; wall time and resources.time_limit_s are measured inside "
                        "the job from the run's start (queue time is not run time)"}

    # -- the Executor interface ---------------------------------------------------------------
    def submit(self, run_id: str, launch: Launch, engine_name: str) -> SlurmJob:
        run_dir = launch.out_dir.parent
        write_task(run_dir, launch, self.telemetry_hz)
        job = SlurmJob(self, run_id, launch, run_dir)
        self._queued.append(job)
        return job

    def unqueue(self, job: SlurmJob) -> None:
        if job in self._queued:
            self._queued.remove(job)

    def queue_cancel(self, task_id: str) -> None:
        self._to_cancel.append(task_id)

    def flush(self) -> None:
        """Submit every queued run: one sbatch --array per resource shape. A refused array's runs
        end as failed rows with sbatch's reason (the sweep goes on)."""
        queued, self._queued = self._queued, []
        for shape, jobs in group_by_shape(queued, lambda j: j.launch).items():
            self._submit_array(shape, jobs)

    def _submit_array(self, shape: JobShape, jobs: list[SlurmJob]) -> None:
        work = jobs[0].run_dir.parent / ".slurm"
        work.mkdir(parents=True, exist_ok=True)
        stem = f"array-{os.getpid()}-{next(_serial)}"
        index = work / f"{stem}.index"
        write_atomic(index, "".join(f"{j.run_dir}\n" for j in jobs).encode())
        settings = SlurmSettings(**{**self.settings.__dict__, "partition": self.partition})
        args = array_args(settings, shape, name=job_name(jobs[0].launch.bundle_id), count=len(jobs),
                          log_pattern=str(work / "slurm-%A_%a.log"), workdir=str(work))
        try:
            job_id = self.cli.submit(args, batch_script(str(index)))
        except ExecutorError as e:
            for j in jobs:
                j.refused = f"sbatch refused the job array: {e.message}"
            return
        for i, j in enumerate(jobs):
            j.submitted = _Submitted(f"{job_id}_{i}", work / f"slurm-{job_id}_{i}.log", len(jobs))
            self._live.append(j)

    def follow(self, force: bool = False) -> None:
        """Submit what is queued, send queued cancels, and (rate-limited) refresh every live job."""
        if self._queued:
            self.flush()
        self._send_cancels()
        now = time.monotonic()
        if not self._live or (not force and now < self._next_follow):
            return
        t0, cpu0 = time.monotonic(), self.cli.cpu_s + time.process_time()
        self._refresh()
        cost = self.cli.cpu_s + time.process_time() - cpu0
        self.follow_calls += 1
        self._next_follow = time.monotonic() + max(self.min_poll_s, cost / FOLLOW_CPU_SHARE,
                                                   (time.monotonic() - t0) * 2)

    def _refresh(self) -> None:
        live = [j for j in self._live if j.state is not JobState.ENDED]
        try:
            rows = self.cli.queue(array_job_ids(j.submitted.task_id for j in live))
        except ExecutorError:
            # the controller did not answer: the jobs keep their last known state for a while
            # (a slurmctld restart or failover), then the error ends the follow (failed rows)
            self._unanswered_since = self._unanswered_since or time.monotonic()
            if time.monotonic() - self._unanswered_since >= CONTROLLER_GRACE_S:
                raise
            return
        self._unanswered_since = None
        missing = []
        for j in live:
            row = j.submitted.find(rows)
            if row is not None:
                j.row, j.missing_since = row, None
            else:
                missing.append(j)
        if missing and self._accounting is not False:
            acc = self.cli.accounting(array_job_ids(j.submitted.task_id for j in missing))
            self._accounting = acc is not None
            for j in list(missing):
                row = j.submitted.find(acc or {})
                if row is not None and row.final:
                    j.row, j.missing_since = row, None
                    missing.remove(j)
        now = time.monotonic()
        for j in missing:
            if j.cancel_reason is not None and not (j.row is not None and j.row.state == "RUNNING"):
                # a pending task we cancelled (without accounting it leaves no record: Slurm drops it from the array)
                j.row = QueueRow(j.submitted.task_id, "CANCELLED", "cancelled while pending", "")
                continue
            j.missing_since = j.missing_since or now
            waited = now - j.missing_since
            if (j.run_dir / OUTCOME_FILE).exists():  # purged (MinJobAge) after it wrote its outcome
                if not self._accounting or waited >= ACCOUNTING_LAG_S:
                    j.row = QueueRow(j.submitted.task_id, UNKNOWN, "no longer in squeue or sacct",
                                     j.row.node if j.row else "")
                continue  # else: sacct's final record may be seconds behind slurmctld; asked again next poll
            if waited >= self.vanish_grace_s:
                j.vanished = True
        self._live = [j for j in self._live if j.state is not JobState.ENDED]

    def _send_cancels(self) -> None:
        if self._to_cancel:
            ids, self._to_cancel = self._to_cancel, []
            try:
                self.cli.cancel(ids)
            except ExecutorError:
                pass  # no scancel reachable: the jobs end by their time limit; finish() waits bounded

    def wait_ended(self, jobs: list[SlurmJob], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while any(j.state is not JobState.ENDED for j in jobs) and time.monotonic() < deadline:
            time.sleep(min(1.0, self.min_poll_s))
            self.follow(force=True)
        for j in jobs:
            if j.state is not JobState.ENDED:  # Slurm did not end it in time: a failed row that says so
                j.vanished = False
                j.refused = (f"{j.cancel_reason}: scancel sent, but Slurm still shows job {j.submitted.task_id} "
                             f"{j.row.state if j.row else 'unknown'} after {timeout_s:g} s")

    def close(self) -> None:
        """Send the cancels still queued (Ctrl-C's); called at exit too."""
        try:
            self._send_cancels()
        except Exception:  # noqa: BLE001, S110 - at exit: nothing left to report to
            pass
