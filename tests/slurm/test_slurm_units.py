"""The Slurm executor's pure parts, without a cluster: parsing Slurm's output, the jobs' sbatch
options, the spec's execution fields. The cluster itself is exercised in test_slurm_cluster.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.engine.base import Launch, Limits
from runner.executor.slurm_batch import (
    JobShape,
    SlurmSettings,
    array_args,
    batch_script,
    group_by_shape,
    memory_mb,
    resource_args,
)
from runner.executor.slurm_cli import SlurmCli, expand_task_ids, parse_partitions, parse_queue, parse_sacct
from runner.executor.slurm_node import node_devices, slurm_facts
from tests.helpers import plan_with_execution


def test_parse_queue_expanded_array_and_plain_jobs():
    text = "5_0|CANCELLED|JobHeldUser|\n5_1|RUNNING|None|vm\n12|PENDING|Priority|\n\ngarbage line\n"
    rows = parse_queue(text)
    assert sorted(rows) == ["12", "5_0", "5_1"]
    assert rows["5_0"].final and not rows["5_0"].pending
    assert rows["5_1"].state == "RUNNING" and rows["5_1"].node == "vm" and not rows["5_1"].final
    assert rows["12"].pending


def test_parse_sacct_takes_the_first_word_of_a_state():
    rows = parse_sacct("7_0|CANCELLED by 0|0:15|vm\n7_1|TIMEOUT|0:0|vm\n7_2|NODE_FAIL|1:0|vm\n7_3|COMPLETED|0:0|vm\n")
    assert {k: r.state for k, r in rows.items()} == {"7_0": "CANCELLED", "7_1": "TIMEOUT", "7_2": "NODE_FAIL",
                                                     "7_3": "COMPLETED"}
    assert all(r.final for r in rows.values())
    assert rows["7_2"].reason == "exit code 1:0"


# Real `sacct -n -P -X -j ... -o JobID,State,ExitCode,NodeList` output of Slurm 22.05 with slurmdbd
# (the test cluster): a completed job, exit 3, a running job cancelled, a held 3-task array and a
# held 1-task array cancelled while pending (never started: one record for the tasks, no node).
REAL_SACCT = ("354|COMPLETED|0:0|vm\n355|FAILED|3:0|vm\n358|CANCELLED by 0|0:0|vm\n"
              "356_[0-2]|CANCELLED by 0|0:0|None assigned\n357_[0]|CANCELLED by 0|0:0|None assigned\n")


def test_parse_sacct_real_output_array_tasks_that_never_started_are_each_found():
    rows = parse_sacct(REAL_SACCT)
    assert sorted(rows) == ["354", "355", "356_0", "356_1", "356_2", "357_0", "358"]
    assert rows["355"].state == "FAILED" and rows["355"].reason == "exit code 3:0" and rows["355"].node == "vm"
    assert rows["356_1"].state == "CANCELLED" and rows["356_1"].node == ""  # "None assigned" is no node
    assert rows["357_0"].final and rows["358"].node == "vm"


@pytest.mark.parametrize(("job_id", "ids"), [
    ("123", ["123"]), ("123_4", ["123_4"]), ("7_[0]", ["7_0"]), ("7_[0-2,5]", ["7_0", "7_1", "7_2", "7_5"]),
    ("7_[3-4%2]", ["7_3", "7_4"]), ("7_[x]", ["7_[x]"]), ("7_[1-", ["7_[1-"]),
])
def test_expand_task_ids(job_id, ids):
    assert expand_task_ids(job_id) == ids


def _fake_sacct(tmp: Path, script: str) -> SlurmCli:
    (tmp / "sacct").write_text(f"#!/bin/sh\n{script}\n")
    (tmp / "sacct").chmod(0o755)
    return SlurmCli(bin_dir=str(tmp), timeout_s=2)


def test_accounting_disabled_is_none_but_slurmdbd_down_is_no_record_this_time(tmp_path):
    """Only "disabled" makes the executor stop asking; a slurmdbd restart must not switch sacct off."""
    assert SlurmCli(bin_dir=str(tmp_path)).accounting(["1"]) is None  # no sacct at all
    disabled = _fake_sacct(tmp_path, "echo 'Slurm accounting storage is disabled' >&2; exit 1")
    assert disabled.accounting(["1"]) is None
    down = _fake_sacct(tmp_path, "echo 'sacct: error: Problem talking to the database: Connection refused' >&2; "
                                 "exit 1")
    assert down.accounting(["1"]) == {}
    assert _fake_sacct(tmp_path, "exec sleep 10").accounting(["1"]) == {}  # no answer in time: asked again later
    answers = _fake_sacct(tmp_path, "echo '5_[0-1]|CANCELLED by 0|0:0|None assigned'")
    assert sorted(answers.accounting(["5"])) == ["5_0", "5_1"]


class _NoQueueCli:
    """squeue has forgotten every job; sacct gives the given answers, one per call (the last one repeats)."""

    def __init__(self, *answers) -> None:
        self.answers, self.cpu_s = list(answers), 0.0

    def queue(self, job_ids):
        return {}

    def accounting(self, job_ids):
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]


def _forgotten_job(tmp_path: Path, cli: _NoQueueCli):
    """A task of a 2-task array that wrote its outcome and that squeue no longer knows."""
    from runner.executor.slurm import SlurmExecutor, SlurmJob, _Submitted
    from runner.executor.slurm_node import OUTCOME_FILE

    ex = SlurmExecutor(SlurmSettings(), cli, min_poll_s=0.0)
    run_dir = tmp_path / "r1"
    run_dir.mkdir(parents=True)
    (run_dir / OUTCOME_FILE).write_text("{}")
    job = SlurmJob(ex, "r1", _launch(tmp_path), run_dir)
    job.submitted = _Submitted("7_1", tmp_path / "slurm-7_1.log", array_size=2)
    ex._live.append(job)
    return ex, job


def test_a_forgotten_job_waits_for_sacct_records_that_trail_slurmctld(tmp_path):
    """Real sacct, seconds after an array ended: only the array's first record, under its bare id."""
    from runner.executor.base import JobState

    cli = _NoQueueCli(parse_sacct("7|COMPLETED|0:0|vm\n"), parse_sacct("7_0|COMPLETED|0:0|vm\n7_1|FAILED|1:0|vm\n"))
    ex, job = _forgotten_job(tmp_path, cli)
    ex.follow(force=True)
    assert job.state is not JobState.ENDED and job.row is None  # not UNKNOWN: sacct's record is on its way
    ex.follow(force=True)
    assert job.state is JobState.ENDED and (job.row.state, job.row.node) == ("FAILED", "vm")


def test_a_forgotten_job_without_accounting_is_unknown_at_once_and_with_it_after_the_lag(tmp_path, monkeypatch):
    from runner.executor import slurm

    ex, job = _forgotten_job(tmp_path / "off", _NoQueueCli(None))
    ex.follow(force=True)
    assert job.row.state == slurm.UNKNOWN
    monkeypatch.setattr(slurm, "ACCOUNTING_LAG_S", 0.0)  # sacct never gets a record (slurmdbd down)
    ex, job = _forgotten_job(tmp_path / "lost", _NoQueueCli({}))
    ex.follow(force=True)
    assert job.row.state == slurm.UNKNOWN


def test_parse_partitions_default_gres_and_node_sets():
    text = ("debug*|up|(null)|infinite\n"
            "gpu|up|gpu:a100:4(S:0-1)|2-00:00:00\n"
            "gpu|up|gpu:v100:2,mps:200|2-00:00:00\n"
            "old|down|(null)|1:00:00\n")
    parts = parse_partitions(text)
    assert parts["debug"].default and not parts["gpu"].default
    assert parts["debug"].gres == frozenset()
    assert parts["gpu"].gres == {"gpu", "mps"}
    assert parts["old"].available == "down" and parts["gpu"].max_time == "2-00:00:00"


def _launch(tmp: Path, run_id: str = "r1", cpus: float | None = None, memory: str | None = None,
            devices: tuple[int, ...] = (), time_s: int | None = None, threads: str | None = None) -> Launch:
    env = {"OMP_NUM_THREADS": threads} if threads else {}
    return Launch(run_id=run_id, bundle_id="b", engine="local", argv=("python3", "-c", "pass"), env=env, mounts=(),
                  out_dir=tmp / run_id / "out", devices=devices,
                  limits=Limits(cpus=cpus, memory=memory, time_s=time_s))


def test_job_shape_from_launch_and_from_resources(tmp_path):
    shape = JobShape.of_launch(_launch(tmp_path, cpus=1.5, memory="2g", devices=(0, 1), time_s=300, threads="3"))
    assert shape == JobShape(cpus=3, mem_mb=2048, gpus=2, time_s=300)
    same = JobShape.of_resources({"cpus": 1.5, "memory": "2g", "threads": 3, "gpus": 2, "time_limit_s": 300})
    assert same == shape
    assert JobShape.of_resources({}) == JobShape(cpus=1, mem_mb=None, gpus=0, time_s=None)


@pytest.mark.parametrize(("size", "mb"), [("2g", 2048), ("512m", 512), ("1536k", 2), ("1048576", 1), ("1", 1)])
def test_memory_in_whole_mib_rounded_up(size, mb):
    assert memory_mb(size) == mb


def test_resource_args_spec_fields_and_derived_values():
    shape = JobShape(cpus=2, mem_mb=2048, gpus=2, time_s=300)
    args = resource_args(SlurmSettings(partition="debug", account="lab", qos="low"), shape)
    assert args == ["--nodes=1", "--ntasks=1", "--cpus-per-task=2", "--mem=2048M", "--partition=debug",
                    "--account=lab", "--qos=low", "--time=7", "--gres=gpu:2"]  # 300 s + 120 s margin: 7 min
    explicit = resource_args(SlurmSettings(time="0:30", gres="gpu:a100:1"), shape)
    assert "--time=0:30" in explicit and "--gres=gpu:a100:1" in explicit
    bare = resource_args(SlurmSettings(), JobShape(cpus=1, mem_mb=None, gpus=0, time_s=None))
    assert bare == ["--nodes=1", "--ntasks=1", "--cpus-per-task=1"]  # the partition's defaults decide the rest


def test_array_args_throttle_hold_and_no_inherited_environment():
    args = array_args(SlurmSettings(max_parallel=4, hold=True), JobShape(1, None, 0, None), name="runner-x",
                      count=10, log_pattern="/w/slurm-%A_%a.log", workdir="/w")
    assert "--array=0-9%4" in args and "--hold" in args
    assert "--export=NONE" in args and "--no-requeue" in args
    assert "--output=/w/slurm-%A_%a.log" in args


def test_batch_script_runs_the_node_side_with_quoted_paths():
    script = batch_script("/scratch/with space/array-1.index", python="/venv/bin/python")
    assert script.startswith("#!/bin/sh\n")
    assert ("exec /venv/bin/python -m runner.executor.slurm_node '/scratch/with space/array-1.index' "
            '"$SLURM_ARRAY_TASK_ID"') in script


def test_runs_with_equal_shapes_share_an_array(tmp_path):
    launches = [_launch(tmp_path, "a", cpus=1), _launch(tmp_path, "b", cpus=2), _launch(tmp_path, "c", cpus=1)]
    groups = group_by_shape(launches, lambda launch: launch)
    assert {shape.cpus: [x.run_id for x in g] for shape, g in groups.items()} == {1: ["a", "c"], 2: ["b"]}


def test_node_devices_are_slurms_when_it_assigned_gpus(tmp_path):
    launch = _launch(tmp_path, devices=(0, 1))
    assert node_devices(launch, {"SLURM_JOB_GPUS": "2,3"}) == (2, 3)
    assert node_devices(launch, {}) == (0, 1)  # no GPU GRES on this cluster: the launch's own
    assert node_devices(_launch(tmp_path), {"SLURM_JOB_GPUS": "2"}) == ()  # no GPU asked, none given


def test_slurm_facts_from_the_job_environment():
    facts = slurm_facts({"SLURM_JOB_ID": "9", "SLURM_ARRAY_JOB_ID": "8", "SLURMD_NODENAME": "n1", "HOME": "/root"})
    assert facts == {"job_id": "9", "array_job_id": "8", "node": "n1"}


# --- the spec's execution fields ---------------------------------------------------------------

def test_slurm_fields_are_accepted_with_the_slurm_executor(tmp_path):
    plan = plan_with_execution(tmp_path, {"engine": "docker", "executor": "slurm", "partition": "debug",
                                          "time": "1-00:00", "gres": "gpu:a100:1", "account": "lab", "qos": "normal",
                                          "max_parallel": 8})
    ex = plan.experiment.execution
    assert SlurmSettings.from_execution(ex) == SlurmSettings("debug", "1-00:00", "gpu:a100:1", "lab", "normal", 8)


@pytest.mark.parametrize(("execution", "says"), [
    ({"partition": "debug"}, "applies to the Slurm executor only"),
    ({"executor": "slurm"}, "name the engine"),
    ({"engine": "docker", "executor": "slurm", "time": "soon"}, "execution.time"),
    ({"engine": "docker", "executor": "slurm", "gres": "gpu:1; rm -rf /"}, "execution.gres"),
    ({"engine": "docker", "executor": "slurm", "partition": "-p evil"}, "execution.partition"),
    ({"engine": "docker", "executor": "slurm", "max_parallel": 0}, "execution.max_parallel"),
    ({"engine": "docker", "executor": "pbs"}, "execution.executor"),
])
def test_bad_execution_fields_are_one_line(tmp_path, execution, says):
    from runner.errors import SpecError

    with pytest.raises(SpecError) as e:
        plan_with_execution(tmp_path, execution)
    line = e.value.describe()
    assert says in line and "\n" not in line


def test_an_array_record_beyond_any_slurm_array_is_kept_whole():
    from runner.executor.slurm_cli import expand_task_ids

    assert expand_task_ids("7_[0-99999999999]") == ["7_[0-99999999999]"]  # not a 10^11-element list
    assert expand_task_ids("7_[0-3,5]") == ["7_0", "7_1", "7_2", "7_3", "7_5"]
