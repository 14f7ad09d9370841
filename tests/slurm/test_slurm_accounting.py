"""runner's `sacct` path against the real sacct: the test cluster keeps accounting (MariaDB +
slurmdbd, .ci/slurmdbd-up.sh). squeue forgets a job MinJobAge (300 s here) after it ended; runner
then reads the job's record from sacct. These tests check runner's parser on sacct's real output
and the executor's use of it; only squeue's forgetting is simulated, every sacct answer is real."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runner.engine.base import Launch, Limits
from runner.executor.base import JobState
from runner.executor.slurm import SlurmExecutor, SlurmJob
from runner.executor.slurm_batch import JobShape, SlurmSettings
from runner.executor.slurm_cli import QueueRow, SlurmCli

pytestmark = pytest.mark.slurm

SHAPE = JobShape(cpus=1, mem_mb=None, gpus=0, time_s=None)


@pytest.fixture(autouse=True, scope="module")
def _accounting_on() -> None:
    """Accounting is what these tests are about: skipped without it locally, an error in CI."""
    conf = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True).stdout
    if "accounting_storage/slurmdbd" in conf and SlurmCli().accounting(["1"]) is not None:
        return
    why = "the Slurm cluster keeps no accounting (run .ci/slurm-up.sh as root: it starts slurmdbd)"
    if os.environ.get("CI") == "true":
        pytest.fail(why)
    pytest.skip(why)


def _node() -> str:
    return subprocess.run(["sinfo", "-h", "-o", "%n"], capture_output=True, text=True).stdout.split()[0]


def _sbatch(*args: str) -> str:
    return subprocess.run(["sbatch", "--parsable", "-o", "/dev/null", *args], capture_output=True, text=True,
                          check=True).stdout.strip()


def _squeue_states(job_ids: list[str]) -> dict[str, str]:
    out = subprocess.run(["squeue", "-h", "-r", "-t", "all", "-j", ",".join(job_ids), "-o", "%i|%T"],
                         capture_output=True, text=True).stdout
    return dict(line.split("|") for line in out.split())


def _wait(what: str, done, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < deadline, f"waited {timeout_s:g} s for {what}"
        time.sleep(0.3)


def _records(task_ids: list[str], timeout_s: float = 30.0) -> dict[str, QueueRow]:
    """sacct's rows once each task's record is final (slurmctld hands records to slurmdbd asynchronously)."""
    cli, rows = SlurmCli(), {}

    def final() -> bool:
        nonlocal rows
        rows = cli.accounting(sorted({t.split("_")[0] for t in task_ids})) or {}
        return all(t in rows and rows[t].final for t in task_ids)

    _wait(f"sacct's final records of {task_ids}", final, timeout_s)
    return rows


def test_sacct_real_output_is_what_runners_parser_expects():
    node = _node()
    done, failed = _sbatch("--wrap", "true"), _sbatch("--wrap", "exit 3")
    running = _sbatch("--wrap", "sleep 300")
    held = _sbatch("--hold", "--array=0-2", "--wrap", "true")  # cancelled before any task starts
    _wait("the sleeping job to run", lambda: _squeue_states([running]).get(running) == "RUNNING")
    subprocess.run(["scancel", running, held], check=True)
    tasks = [done, failed, running, f"{held}_0", f"{held}_1", f"{held}_2"]
    rows = _records(tasks)
    assert (rows[done].state, rows[done].reason, rows[done].node) == ("COMPLETED", "exit code 0:0", node)
    assert (rows[failed].state, rows[failed].reason, rows[failed].node) == ("FAILED", "exit code 3:0", node)
    assert rows[running].state == "CANCELLED" and rows[running].node == node  # sacct: "CANCELLED by 0"
    for t in tasks[3:]:  # one sacct record, `N_[0-2]`, stands for the three tasks; it never had a node
        assert (rows[t].state, rows[t].node) == ("CANCELLED", ""), rows[t]
    # squeue still holds them (MinJobAge): both of runner's parsers read the same state and node
    queue = SlurmCli().queue([done, failed, running, held])
    assert {t: (queue[t].state, queue[t].node) for t in tasks} == {t: (rows[t].state, rows[t].node) for t in tasks}


def _launch(root: Path, run_id: str, code: str) -> Launch:
    out = root / run_id / "out"
    out.mkdir(parents=True)
    return Launch(run_id=run_id, bundle_id=f"test-{root.name}", engine="local", argv=(sys.executable, "-c", code),
                  env={"PATH": "/usr/bin:/bin"}, mounts=(), out_dir=out, workdir=str(out), limits=Limits())


def _squeue_forgets_ended_jobs(monkeypatch, ex: SlurmExecutor) -> list[dict[str, QueueRow] | None]:
    """squeue as after MinJobAge: the real answer without the jobs that ended. Returns sacct's
    (real, untouched) answers to the executor, as it gets them."""
    real_queue, real_accounting, answers = ex.cli.queue, ex.cli.accounting, []

    def queue(job_ids):
        return {t: row for t, row in real_queue(job_ids).items() if not row.final}

    def accounting(job_ids):
        answers.append(real_accounting(job_ids))
        return answers[-1]

    monkeypatch.setattr(ex.cli, "queue", queue)
    monkeypatch.setattr(ex.cli, "accounting", accounting)
    return answers


def _ended(jobs: list[SlurmJob]) -> None:
    """Runner does not poll while the jobs end (as a runner suspended for longer than MinJobAge):
    wait for the real squeue to say they ended; from then on the wrapped squeue has forgotten them."""
    arrays = sorted({j.submitted.task_id.split("_")[0] for j in jobs})

    def ended() -> bool:
        states = _squeue_states(arrays)  # a one-task array's task is listed by the array's id alone
        return len(states) == len(jobs) and set(states.values()) <= {"COMPLETED", "FAILED", "CANCELLED"}

    _wait(f"jobs {arrays} to end", ended)


def _follow(jobs: list[SlurmJob], timeout_s: float = 60.0) -> dict[str, object]:
    deadline, outcomes = time.monotonic() + timeout_s, {}
    while len(outcomes) < len(jobs):
        assert time.monotonic() < deadline, {j.run_id: j.state for j in jobs}
        for j in jobs:
            if j.run_id not in outcomes and j.poll() is JobState.ENDED:
                outcomes[j.run_id] = j.finish()
        time.sleep(0.2)
    return outcomes


def test_jobs_squeue_forgot_get_sacct_states_not_unknown(tmp_path, monkeypatch):
    """Without accounting these rows would say slurm_state UNKNOWN (their outcome files decide).
    squeue forgets them the moment they end, before slurmdbd has their final records (they trail
    slurmctld by up to ~5 s for an array's tasks): the executor waits for those records."""
    ex = SlurmExecutor(SlurmSettings(), min_poll_s=0.5, vanish_grace_s=20)
    answers = _squeue_forgets_ended_jobs(monkeypatch, ex)
    jobs = [ex.submit("ok", _launch(tmp_path, "ok", "print('fine')"), "local"),
            ex.submit("fails", _launch(tmp_path, "fails", "import sys; sys.exit(3)"), "local")]
    ex.follow(force=True)  # submits the array, sees it queued
    _ended(jobs)
    outcomes = _follow(jobs)
    assert outcomes["ok"].ok and outcomes["ok"].extra["slurm_state"] == "COMPLETED"
    assert outcomes["fails"].exit_code == 3 and outcomes["fails"].extra["slurm_state"] == "FAILED"
    assert answers and ex._accounting is True
    assert {t: r.state for t, r in answers[-1].items()} == {jobs[0].submitted.task_id: "COMPLETED",
                                                            jobs[1].submitted.task_id: "FAILED"}


@pytest.mark.parametrize("cancel", ["array", "task"])
def test_a_job_cancelled_elsewhere_and_forgotten_by_squeue_is_cancelled_not_vanished(tmp_path, monkeypatch,
                                                                                     cancel):
    """A held job someone else scancels never runs, so it writes no outcome: only sacct can say
    what became of it once squeue forgot it. Its record reads `N_[0]` (the array cancelled: the
    task that never started) or `N` (the task `N_0` cancelled)."""
    ex = SlurmExecutor(SlurmSettings(hold=True), min_poll_s=0.5, vanish_grace_s=20)
    _squeue_forgets_ended_jobs(monkeypatch, ex)
    job = ex.submit("held", _launch(tmp_path, "held", "print('must not run')"), "local")
    assert job.poll() is JobState.PENDING
    task_id = job.submitted.task_id
    subprocess.run(["scancel", task_id.split("_")[0] if cancel == "array" else task_id], check=True)
    _ended([job])
    t0 = time.monotonic()
    outcome = _follow([job])["held"]
    assert outcome.reason == "slurm CANCELLED: the job was cancelled (before the run wrote its outcome)", \
        outcome.reason
    assert outcome.extra["slurm_state"] == "CANCELLED" and time.monotonic() - t0 < ex.vanish_grace_s


def test_the_executor_records_that_the_cluster_keeps_accounting():
    ex = SlurmExecutor(SlurmSettings())
    ex.check([SHAPE])
    assert ex.describe()["config"]["AccountingStorageType"] == "accounting_storage/slurmdbd"
