"""The engine/executor split: a Launch survives the trip to a node (JSON), the inline executor
runs submitted launches one at a time in submission order (a pending job never starts before the
previous one finished, a cancelled pending job never runs), each outcome carries the node it ran
on with only its own GPUs, and a session's rows record engine, executor and node. Real local
processes; no container needed."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from runner.engine.base import Launch, Limits, Mount
from runner.engine.local_engine import LocalEngine
from runner.errors import ExecutorError
from runner.executor.base import JobState
from runner.executor.inline import InlineExecutor
from runner.executor.node import node_fingerprint
from runner.reproduce.session import Followed, follow

# each run appends "<name> start <t>" and "<name> end <t>" to a shared journal
SCRIPT = ("import sys, time; j = open(sys.argv[1], 'a'); j.write(sys.argv[2] + ' start %f\\n' % time.time()); "
          "j.flush(); time.sleep(float(sys.argv[3])); j.write(sys.argv[2] + ' end %f\\n' % time.time())")


def _launch(tmp: Path, name: str, seconds: float = 0.3, devices: tuple[int, ...] = (), **limits) -> Launch:
    out = tmp / name / "out"
    out.mkdir(parents=True)
    return Launch(run_id=name, bundle_id="b", engine="local",
                  argv=(sys.executable, "-c", SCRIPT, str(tmp / "journal"), name, str(seconds)),
                  env={"PATH": "/usr/bin:/bin"}, mounts=(Mount(out, str(out), False),), out_dir=out,
                  workdir=str(out), devices=devices, limits=Limits(**limits))


def _drain(jobs) -> list:
    outcomes = {}
    deadline = time.monotonic() + 60
    while len(outcomes) < len(jobs) and time.monotonic() < deadline:
        for job in jobs:
            if job.run_id not in outcomes and job.poll() is JobState.ENDED:
                outcomes[job.run_id] = job.finish()
        time.sleep(0.05)
    return [outcomes[j.run_id] for j in jobs]


def test_a_launch_survives_json(tmp_path):
    launch = _launch(tmp_path, "r1", devices=(1, 3), cpus=2.5, memory="4g", time_s=60)
    back = Launch.from_dict(json.loads(json.dumps(launch.as_dict())))
    assert back == launch


def test_runs_one_at_a_time_in_submission_order(tmp_path):
    executor = InlineExecutor(LocalEngine())
    jobs = [executor.submit(n, _launch(tmp_path, n), "local") for n in ("a", "b", "c")]
    assert [j.poll() for j in jobs] == [JobState.RUNNING, JobState.PENDING, JobState.PENDING]
    outcomes = _drain(jobs)
    assert all(o.ok for o in outcomes), [o.reason for o in outcomes]
    lines = [line.split() for line in (tmp_path / "journal").read_text().splitlines()]
    assert [(n, what) for n, what, _ in lines] == [("a", "start"), ("a", "end"), ("b", "start"), ("b", "end"),
                                                  ("c", "start"), ("c", "end")]
    times = [float(t) for _, _, t in lines]
    assert times == sorted(times)  # never overlapping


def test_a_cancelled_pending_job_never_runs(tmp_path):
    executor = InlineExecutor(LocalEngine())
    first = executor.submit("a", _launch(tmp_path, "a"), "local")
    second = executor.submit("b", _launch(tmp_path, "b"), "local")
    assert first.poll() is JobState.RUNNING
    second.cancel("interrupted")
    assert second.poll() is JobState.ENDED
    outcome_b = second.finish()
    assert not outcome_b.ok and outcome_b.reason == "interrupted (never started)"
    (outcome_a,) = _drain([first])
    assert outcome_a.ok
    assert "b start" not in (tmp_path / "journal").read_text()


def test_the_time_limit_is_the_executors(tmp_path):
    executor = InlineExecutor(LocalEngine(stop_grace_s=1))
    job = executor.submit("slow", _launch(tmp_path, "slow", seconds=30, time_s=1), "local")
    t0 = time.monotonic()
    (outcome,) = _drain([job])
    assert time.monotonic() - t0 < 10
    assert not outcome.ok and outcome.reason.startswith("time limit (1 s)")


def test_each_outcome_names_its_node(tmp_path):
    (outcome,) = _drain([InlineExecutor(LocalEngine()).submit("a", _launch(tmp_path, "a"), "local")])
    node = outcome.node
    assert node["host"] and node["gpu_indices"] == [] and node["gpus"] == [] and node["cpu_threads"] >= 1


def test_the_node_lists_only_the_runs_gpus():
    gpu = {"available": True, "driver_version": "550.1", "cuda_driver_version": "12.4",
           "devices": [{"index": i, "name": f"gpu{i}", "uuid": f"GPU-{i}"} for i in range(4)]}
    node = node_fingerprint((1, 3), gpu)
    assert [g["uuid"] for g in node["gpus"]] == ["GPU-1", "GPU-3"] and node["driver_version"] == "550.1"
    assert node_fingerprint((7,), gpu)["gpus"] == [{"index": 7, "name": None, "missing": True}]
    from runner.fingerprint.host import cpu_info

    assert node["cpu_flags"] == cpu_info()["flags"]  # what a reproduction on another CPU is told apart by


def test_a_launch_for_another_engine_is_refused(tmp_path):
    with pytest.raises(ExecutorError, match="described for the docker engine"):
        InlineExecutor(LocalEngine()).submit("a", _launch(tmp_path, "a"), "docker")


def test_ctrl_c_while_following_cancels_every_job_and_finishes_the_started(tmp_path):
    executor = InlineExecutor(LocalEngine(stop_grace_s=1))
    jobs = [executor.submit(n, _launch(tmp_path, n, seconds=30), "local") for n in ("a", "b")]
    followed = [Followed(j, tmp_path / j.run_id / "out", lambda e: None) for j in jobs]

    def on_start(f):
        if f.job.run_id == "a":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        follow(followed, on_start, lambda f, o: None, poll_s=0.05)
    assert jobs[0].finished and jobs[1].poll() is JobState.ENDED
    assert jobs[1].finish().reason == "interrupted (never started)"
    journal = tmp_path / "journal"
    assert not journal.exists() or "b start" not in journal.read_text()


def test_session_rows_record_engine_executor_and_node(tmp_path, monkeypatch):
    from tests.reproduce.test_scratch_cleanup import ScriptedEngine, _reproduce

    bundle = _reproduce(tmp_path, monkeypatch, ScriptedEngine(None, None))
    executor = json.loads((bundle / "environment" / "executor.json").read_text())
    assert executor["kind"] == "inline"
    for env_file in (bundle / "runs").glob("*/environment.json"):
        env = json.loads(env_file.read_text())["environment"]
        assert env["engine"] == "fake" and env["executor"] == "inline"
        assert env["node"]["gpu_indices"] == [] and env["node"]["host"]
