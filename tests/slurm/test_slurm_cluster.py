"""The Slurm executor against the real one-node cluster (.ci/slurm-up.sh): real sbatch, squeue,
scancel, real jobs on the node running real processes (the local engine, so these tests do not
need images; tests/slurm/test_slurm_reproduce.py runs containers through Slurm)."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from runner.engine.base import Launch, Limits
from runner.errors import ExecutorError
from runner.executor.base import JobState
from runner.executor.slurm import SlurmExecutor, SlurmJob, _Submitted
from runner.executor.slurm_batch import JobShape, SlurmSettings
from runner.executor.slurm_cli import SlurmCli

pytestmark = pytest.mark.slurm

SHAPE = JobShape(cpus=1, mem_mb=None, gpus=0, time_s=None)


def _launch(root: Path, run_id: str, code: str, time_s: int | None = None) -> Launch:
    out = root / run_id / "out"
    out.mkdir(parents=True)
    return Launch(run_id=run_id, bundle_id=f"test-{root.name}", engine="local", argv=(sys.executable, "-c", code),
                  env={"PATH": "/usr/bin:/bin"}, mounts=(), out_dir=out, workdir=str(out),
                  limits=Limits(time_s=time_s))


def _follow(jobs: list[SlurmJob], timeout_s: float = 120.0) -> dict[str, object]:
    deadline, outcomes = time.monotonic() + timeout_s, {}
    while len(outcomes) < len(jobs):
        assert time.monotonic() < deadline, {j.run_id: j.state for j in jobs}
        for j in jobs:
            if j.run_id not in outcomes and j.poll() is JobState.ENDED:
                outcomes[j.run_id] = j.finish()
        time.sleep(0.2)
    return outcomes


def _wait_running(job: SlurmJob, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while job.poll() is not JobState.RUNNING:
        assert time.monotonic() < deadline, job.row
        time.sleep(0.2)


def _alive(marker: str) -> bool:
    return subprocess.run(["pgrep", "-f", marker], capture_output=True).returncode == 0


def _queue_ids() -> set[str]:
    out = subprocess.run(["squeue", "-h", "-r", "-t", "all", "-o", "%i"], capture_output=True, text=True).stdout
    return set(out.split())


def test_runs_go_through_one_sbatch_array_and_come_back_with_their_node(tmp_path):
    ex = SlurmExecutor(SlurmSettings(), telemetry_hz=4)
    ex.check([SHAPE])
    jobs = [ex.submit(r, _launch(tmp_path, r, code), "local") for r, code in (
        ("ok", "print('hello from the node')"),
        ("fails", "import sys; print('about to fail'); sys.exit(3)"),
        ("sleeps", "import time; time.sleep(2)"))]
    outcomes = _follow(jobs)
    ok, fails, sleeps = outcomes["ok"], outcomes["fails"], outcomes["sleeps"]
    assert ok.ok and "hello from the node" in ok.log
    assert fails.exit_code == 3 and fails.reason == "run failed" and "about to fail" in fails.log
    assert fails.extra["slurm_state"] == "FAILED" and ok.extra["slurm_state"] == "COMPLETED"
    arrays = {o.extra["slurm_job"].split("_")[0] for o in outcomes.values()}
    assert len(arrays) == 1, "the three runs were not one job array"
    (array,) = arrays
    assert 2.0 <= sleeps.wall_s < 30  # measured inside the job: the run's own time
    for o in outcomes.values():
        assert o.node["host"] and o.node["slurm"]["partition"] == "debug"
        assert str(o.node["slurm"]["array_job_id"]) == array, o.node["slurm"]
        assert o.telemetry, "no telemetry sampled beside the run on the node"
    assert ex.describe()["partition"] == "debug" and ex.describe()["kind"] == "slurm"


def test_scancel_mid_run_is_a_failed_row_and_stops_the_run(tmp_path):
    marker = f"runner-slurm-test-{uuid.uuid4().hex}"
    ex = SlurmExecutor(SlurmSettings())
    job = ex.submit("long", _launch(tmp_path, "long", f"import time; time.sleep(300)  # {marker}"), "local")
    _wait_running(job)
    deadline = time.monotonic() + 30
    while not _alive(marker):  # the run itself started on the node
        assert time.monotonic() < deadline
        time.sleep(0.2)
    subprocess.run(["scancel", job.submitted.task_id], check=True)
    outcome = _follow([job], timeout_s=90)["long"]
    assert not outcome.ok
    assert outcome.reason.startswith("slurm CANCELLED: the job was cancelled"), outcome.reason
    assert not _alive(marker), "the run outlived its cancelled job"


def test_cancel_from_runner_sends_scancel(tmp_path):
    ex = SlurmExecutor(SlurmSettings())
    job = ex.submit("long", _launch(tmp_path, "long", "import time; time.sleep(300)"), "local")
    _wait_running(job)
    job.cancel("interrupted")
    outcome = job.finish()  # bounded: waits for Slurm to end the job
    assert outcome.reason.startswith("slurm CANCELLED: the job was cancelled (interrupted)"), outcome.reason
    out = subprocess.run(["squeue", "-h", "-t", "all", "-j", job.submitted.task_id, "-o", "%T"],
                         capture_output=True, text=True).stdout.split()
    assert out == ["CANCELLED"]


def test_a_pending_job_cancelled_never_runs(tmp_path):
    ex = SlurmExecutor(SlurmSettings(hold=True))
    job = ex.submit("held", _launch(tmp_path, "held", "print('must not run')"), "local")
    assert job.poll() is JobState.PENDING  # submitted held
    job.cancel("interrupted")
    outcome = job.finish()
    assert outcome.reason.startswith("slurm CANCELLED"), outcome.reason
    assert "must not run" not in outcome.log


def test_the_runs_own_time_limit_is_measured_inside_the_job(tmp_path):
    ex = SlurmExecutor(SlurmSettings())
    job = ex.submit("slow", _launch(tmp_path, "slow", "import time; time.sleep(120)", time_s=3), "local")
    outcome = _follow([job], timeout_s=90)["slow"]
    assert outcome.reason.startswith("time limit (3 s)"), outcome.reason
    assert outcome.extra["slurm_state"] == "FAILED"
    assert 3 <= outcome.wall_s < 20


@pytest.mark.slow
def test_a_job_past_its_slurm_time_limit_is_a_timeout_row(tmp_path):
    """Slurm's own limit (execution.time: 1 minute; Slurm checks it about every 30 s)."""
    ex = SlurmExecutor(SlurmSettings(time="1"))
    ex.check([SHAPE])
    job = ex.submit("forever", _launch(tmp_path, "forever", "import time; time.sleep(600)"), "local")
    outcome = _follow([job], timeout_s=240)["forever"]
    assert outcome.reason.startswith("slurm TIMEOUT: the job hit its Slurm time limit"), outcome.reason
    assert "terminated by Slurm" in outcome.reason  # the node side stopped the run on SIGTERM
    assert 55 <= outcome.wall_s < 200


def test_a_job_that_vanishes_without_a_record_is_a_failed_row(tmp_path):
    """A job id that never existed: squeue AND sacct (real ones: the cluster keeps accounting) know nothing."""
    assert SlurmCli().queue(["999999"]) == {} and SlurmCli().accounting(["999999"]) in ({}, None)
    ex = SlurmExecutor(SlurmSettings(), vanish_grace_s=3, min_poll_s=0.5)
    job = SlurmJob(ex, "ghost", _launch(tmp_path, "ghost", "pass"), tmp_path / "ghost")
    job.submitted = _Submitted("999999_0", tmp_path / "none.log")  # no such job: as if purged with no record
    ex._live.append(job)
    t0 = time.monotonic()
    outcome = _follow([job], timeout_s=30)["ghost"]
    assert time.monotonic() - t0 >= 3
    assert "vanished from the queue with no exit record" in outcome.reason and not outcome.ok
    assert ex._accounting is not None  # sacct was asked (None: never); False on a cluster without accounting


def test_unknown_partition_is_refused_before_anything_is_submitted():
    before = _queue_ids()
    with pytest.raises(ExecutorError) as e:
        SlurmExecutor(SlurmSettings(partition="nope")).check([SHAPE])
    assert "unknown partition 'nope' (the cluster has: debug, urgent)" in e.value.describe()
    assert e.value.exit_code == 2 and _queue_ids() == before


def test_a_gres_the_cluster_lacks_is_refused():
    with pytest.raises(ExecutorError) as e:
        SlurmExecutor(SlurmSettings(gres="gpu:1")).check([SHAPE])
    assert "has no GRES 'gpu'" in e.value.describe()
    with pytest.raises(ExecutorError) as e:  # resources.gpus: 2 asks for gpu:2 by itself
        SlurmExecutor(SlurmSettings()).check([JobShape(cpus=1, mem_mb=None, gpus=2, time_s=None)])
    assert "--gres=gpu:2" in e.value.describe()


def test_what_sbatch_would_refuse_is_refused_by_test_only():
    with pytest.raises(ExecutorError) as e:  # more CPUs than the node has
        SlurmExecutor(SlurmSettings()).check([JobShape(cpus=4096, mem_mb=None, gpus=0, time_s=None)])
    assert "Slurm refuses the jobs" in e.value.describe() and "--cpus-per-task=4096" in e.value.describe()


def test_no_slurm_on_path_is_one_line(tmp_path):
    with pytest.raises(ExecutorError) as e:
        SlurmExecutor(SlurmSettings(), SlurmCli(bin_dir=str(tmp_path))).check([SHAPE])
    assert e.value.describe().startswith("execution.executor: no Slurm here: `sinfo` is not on PATH")


def test_a_controller_that_does_not_answer_is_one_line(tmp_path, monkeypatch):
    conf = Path("/etc/slurm/slurm.conf").read_text().replace("SlurmctldHost=", "SlurmctldPort=6999\nSlurmctldHost=")
    (tmp_path / "slurm.conf").write_text(conf)
    monkeypatch.setenv("SLURM_CONF", str(tmp_path / "slurm.conf"))
    with pytest.raises(ExecutorError) as e:
        SlurmExecutor(SlurmSettings()).check([SHAPE])
    assert "Slurm does not answer" in e.value.describe() and "Unable to contact slurm controller" in str(e.value)


def test_doctor_reports_the_slurm_executor(cli, tmp_path, monkeypatch):
    import json

    monkeypatch.chdir(tmp_path)
    checks = {c["name"]: c for c in json.loads(cli("doctor", "--json").out)}
    assert checks["executors"]["status"] == "OK"
    assert checks["executors"]["detail"] == "inline; slurm: partitions debug* (up), urgent (up)"


def test_a_node_failure_is_a_failed_row_and_the_node_comes_back(tmp_path):
    """The node set DOWN under a running job (what slurmctld does when a node stops answering)."""
    node = subprocess.run(["sinfo", "-h", "-o", "%n"], capture_output=True, text=True).stdout.split()[0]
    ex = SlurmExecutor(SlurmSettings())
    job = ex.submit("doomed", _launch(tmp_path, "doomed", "import time; time.sleep(300)"), "local")
    _wait_running(job)
    try:
        subprocess.run(["scontrol", "update", f"NodeName={node}", "State=DOWN", "Reason=runner-test"], check=True)
        outcome = _follow([job], timeout_s=90)["doomed"]
    finally:
        subprocess.run(["scontrol", "update", f"NodeName={node}", "State=RESUME"], capture_output=True)
        deadline = time.monotonic() + 60
        while "idle" not in subprocess.run(["sinfo", "-h", "-n", node, "-o", "%t"], capture_output=True,
                                           text=True).stdout and time.monotonic() < deadline:
            time.sleep(1)
    assert outcome.reason.startswith("slurm NODE_FAIL: the node failed"), outcome.reason
    assert not outcome.ok


def test_a_preempted_job_is_a_failed_row_that_says_so(tmp_path):
    """A job of a higher-priority partition takes the node: Slurm preempts (cancels) runner's job."""
    ex = SlurmExecutor(SlurmSettings())
    marker = f"preempted-{uuid.uuid4().hex[:8]}"
    job = ex.submit("preempted", _launch(tmp_path, "preempted", f"import time; time.sleep(300)  # {marker}"), "local")
    _wait_running(job)
    urgent = subprocess.run(["sbatch", "--parsable", "-p", "urgent", "-c", "2", "--mem=64", "-o", "/dev/null",
                             "--wrap", "sleep 1"], capture_output=True, text=True, check=True).stdout.strip()
    try:
        outcome = _follow([job], timeout_s=90)["preempted"]
    finally:
        subprocess.run(["scancel", urgent], capture_output=True)
    assert outcome.reason.startswith("slurm PREEMPTED: the job was preempted"), outcome.reason
    assert not outcome.ok
    deadline = time.monotonic() + 15
    while _alive(marker) and time.monotonic() < deadline:  # the run's process went with its job
        time.sleep(0.5)
    assert not _alive(marker)


def test_a_controller_that_stops_answering_for_a_while_does_not_fail_the_runs(tmp_path, monkeypatch):
    ex = SlurmExecutor(SlurmSettings(), min_poll_s=0.5)
    job = ex.submit("steady", _launch(tmp_path, "steady", "import time; time.sleep(8)"), "local")
    _wait_running(job)
    conf = Path("/etc/slurm/slurm.conf").read_text().replace("SlurmctldHost=", "SlurmctldPort=6999\nSlurmctldHost=")
    (tmp_path / "slurm.conf").write_text(conf)
    monkeypatch.setenv("SLURM_CONF", str(tmp_path / "slurm.conf"))  # squeue now gets no answer
    ex.follow(force=True)  # one squeue now, without an answer
    assert job.poll() is JobState.RUNNING  # the last known state, no error
    assert ex._unanswered_since is not None
    monkeypatch.delenv("SLURM_CONF")
    outcome = _follow([job], timeout_s=90)["steady"]
    assert outcome.ok, outcome.reason
