"""`runner reproduce --executor slurm` on the real one-node cluster, the runs in real containers
(docker on the node): a verified bundle, Ctrl-C cancels the jobs and `--resume` submits only the
missing run, bad Slurm input is one line with nothing submitted; and containers through Slurm
directly: a failing one and a cancelled one (removed with its job)."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from runner.engine.base import Launch, Mount
from runner.engine.docker_engine import LABEL_BUNDLE
from runner.executor.base import JobState
from runner.executor.slurm import SlurmExecutor
from runner.executor.slurm_batch import SlurmSettings
from tests.helpers import REPO
from tests.reproduce.conftest import LOCAL_BASE

pytestmark = [pytest.mark.slurm, pytest.mark.docker]

TINY = REPO / "tests" / "specs" / "tiny.yaml"
SLURM = ["--engine", "docker", "--executor", "slurm", "--base", LOCAL_BASE]


def _argv(spec: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "runner.cli", "reproduce", str(spec), *SLURM, *extra]


def _queue(name_prefix: str = "runner-") -> dict[str, str]:
    out = subprocess.run(["squeue", "-h", "-r", "-t", "all", "-o", "%i|%T|%j"], capture_output=True, text=True).stdout
    return {i: t for i, t, j in (line.split("|") for line in out.splitlines()) if j.startswith(name_prefix)}


def _runs_env(bundle: Path) -> dict[str, dict]:
    """run id -> the per-run facts the session recorded (runs/<id>/environment.json)."""
    return {p.parent.name: json.loads(p.read_text())["environment"]
            for p in (bundle / "runs").glob("*/environment.json")}


def _bundles(results: Path) -> list[Path]:
    folder = results / "tiny"
    return sorted(p for p in folder.iterdir() if not p.name.endswith(".partial")) if folder.exists() else []


def test_a_spec_through_slurm_is_a_verified_bundle(cpu_images, tmp_path):
    proc = subprocess.run(_argv(TINY), cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (bundle,) = _bundles(tmp_path / "results")
    verify = subprocess.run([sys.executable, "-m", "runner.cli", "bundle", "verify", str(bundle)],
                            capture_output=True, text=True, cwd=tmp_path)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    executor = json.loads((bundle / "environment" / "executor.json").read_text())
    assert executor["kind"] == "slurm" and executor["partition"] == "debug"
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert [r["status"] for r in manifest["runs"]] == ["ok", "ok"]
    envs = _runs_env(bundle)
    jobs = {e["slurm_job"] for e in envs.values()}
    assert len(jobs) == 2 and len({j.split("_")[0] for j in jobs}) == 1  # one array, two tasks
    for env in envs.values():
        assert env["slurm_state"] == "COMPLETED" and env["executor"] == "slurm"
        assert env["node"]["slurm"]["partition"] == "debug" and env["node"]["host"]


def test_ctrl_c_cancels_the_jobs_and_resume_submits_only_the_missing_run(cpu_images, tmp_path):
    proc = subprocess.Popen(_argv(TINY, "--max-parallel", "1"), cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    deadline, partial = time.monotonic() + 600, None
    while time.monotonic() < deadline:  # wait until the first run is recorded in the partial bundle
        found = list((tmp_path / "results" / "tiny").glob("*.partial/.state.json"))
        if found and json.loads(found[0].read_text())["runs"]:
            partial = found[0].parent
            break
        assert proc.poll() is None, proc.stdout.read()
        time.sleep(0.5)
    assert partial is not None, "no run was recorded"
    first = set(json.loads((partial / ".state.json").read_text())["runs"])
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=180)
    assert proc.returncode == 130, out
    assert "--resume" in out
    bundle_jobs = _queue(f"runner-{partial.name}")
    assert bundle_jobs and all(s in ("COMPLETED", "CANCELLED") for s in bundle_jobs.values()), bundle_jobs
    done = subprocess.run(_argv(TINY, "--resume", str(partial)), cwd=tmp_path, capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    (bundle,) = _bundles(tmp_path / "results")
    envs = _runs_env(bundle)
    assert len(envs) == 2 and set(envs) > first
    (missing,) = set(envs) - first
    new_array = envs[missing]["slurm_job"].split("_")[0]
    assert new_array != envs[next(iter(first))]["slurm_job"].split("_")[0]
    tasks = subprocess.run(["squeue", "-h", "-r", "-t", "all", "-j", new_array, "-o", "%i"], capture_output=True,
                           text=True).stdout.split()
    assert len(tasks) == 1, tasks  # the resumed submission held only the missing run


@pytest.mark.parametrize(("flags", "says"), [
    (["--partition", "nope"], "unknown partition 'nope'"),
    (["--gres", "gpu:1"], "has no GRES 'gpu'"),
    (["--time", "soon"], "--time"),
])
def test_bad_slurm_input_is_one_line_and_nothing_is_submitted(cli, tmp_path, flags, says):
    before = _queue()
    r = cli("reproduce", TINY, *SLURM, "--results", tmp_path / "results", "--cache", tmp_path / "cache",
            "--data-root", tmp_path / "data", *flags)
    assert r.code == 2, r.out + r.err
    assert says in r.err and len(r.err.strip().splitlines()) == 1, r.err
    assert "Traceback" not in r.err
    assert not (tmp_path / "results").exists()
    assert _queue() == before


def _container_launch(root: Path, run_id: str, image: str, code: str, bundle: str) -> Launch:
    out = root / run_id / "out"
    out.mkdir(parents=True)
    return Launch(run_id=run_id, bundle_id=bundle, engine="docker", argv=("python3", "-c", code), env={},
                  mounts=(Mount(out, "/out", read_only=False),), out_dir=out, image=image,
                  labels={LABEL_BUNDLE: bundle})


def test_containers_through_slurm_a_failing_one_and_a_cancelled_one(cpu_images, docker_client, tmp_path):
    bundle = f"slurm-test-{uuid.uuid4().hex[:12]}"
    image = cpu_images["pytorch"]
    ex = SlurmExecutor(SlurmSettings())
    fails = ex.submit("fails", _container_launch(tmp_path, "fails", image, "import sys; sys.exit(3)", bundle), "docker")
    long = ex.submit("long", _container_launch(tmp_path, "long", image, "import time; time.sleep(600)", bundle),
                     "docker")
    deadline = time.monotonic() + 120
    while not docker_client.containers.list(filters={"label": f"{LABEL_BUNDLE}={bundle}", "status": "running"}):
        assert time.monotonic() < deadline, "no container started through Slurm"
        fails.poll()
        time.sleep(0.5)
    while long.poll() is not JobState.RUNNING:
        assert time.monotonic() < deadline
        time.sleep(0.5)
    time.sleep(2)  # the long container is up
    subprocess.run(["scancel", long.submitted.task_id], check=True)
    outcomes = {}
    while len(outcomes) < 2:
        assert time.monotonic() < deadline + 120
        for j in (fails, long):
            if j.run_id not in outcomes and j.poll() is JobState.ENDED:
                outcomes[j.run_id] = j.finish()
        time.sleep(0.5)
    assert outcomes["fails"].exit_code == 3 and outcomes["fails"].reason == "run failed"
    assert outcomes["long"].reason.startswith("slurm CANCELLED"), outcomes["long"].reason
    assert docker_client.containers.list(all=True, filters={"label": f"{LABEL_BUNDLE}={bundle}"}) == []
    assert os.path.isdir(tmp_path / "long" / "out")


@pytest.mark.podman
def test_podman_containers_through_slurm(cpu_images, docker_client, tmp_path):
    """engine: podman on the node: a run that succeeds, and a cancelled one whose container is removed."""
    from runner.engine.podman_engine import PodmanEngine

    bundle = f"slurm-podman-{uuid.uuid4().hex[:12]}"
    image = cpu_images["pytorch"]
    PodmanEngine.connect(docker=docker_client).ensure_image(image)  # what the session does before submitting

    def launch(run_id: str, code: str) -> Launch:
        return dataclasses.replace(_container_launch(tmp_path, run_id, image, code, bundle), engine="podman")

    ex = SlurmExecutor(SlurmSettings())
    ok = ex.submit("ok", launch("ok", "print('from podman')"), "podman")
    long = ex.submit("long", launch("long", "import time; time.sleep(600)"), "podman")
    deadline = time.monotonic() + 180
    while long.poll() is not JobState.RUNNING or ok.poll() is not JobState.ENDED:
        assert time.monotonic() < deadline, (ok.row, long.row)
        time.sleep(0.5)
    time.sleep(3)
    long.cancel("interrupted")
    outcomes = {"ok": ok.finish(), "long": long.finish()}
    assert outcomes["ok"].ok and "from podman" in outcomes["ok"].log, outcomes["ok"].reason
    assert outcomes["long"].reason.startswith("slurm CANCELLED"), outcomes["long"].reason
    left = subprocess.run(["podman", "ps", "-a", "-q", "--filter", f"label={LABEL_BUNDLE}={bundle}"],
                          capture_output=True, text=True).stdout.split()
    assert left == []


ONE_RUN = REPO / "tests" / "specs" / "one-run.yaml"


@pytest.mark.podman
def test_podman_alone_through_slurm(cpu_images, tmp_path):
    """The cluster case end to end: no Docker engine answers (DOCKER_HOST points at nothing), the
    image carried over as an archive and imported into podman's storage, the run a Slurm job whose
    node runs it with podman; --ship-images writes podman's archive of it for the nodes."""
    no_docker = os.environ | {"DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock"}
    archive = tmp_path / "pytorch-cpu.tar"

    def runner(*argv: str, env: dict | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "runner.cli", *argv], cwd=tmp_path, capture_output=True,
                              text=True, timeout=900, env=env)

    exported = runner("images", "export", "pytorch-cpu", "--out", str(archive))
    assert exported.returncode == 0, exported.stdout + exported.stderr
    imported = runner("images", "import", str(archive), "--engine", "podman", env=no_docker)
    assert imported.returncode == 0, imported.stdout + imported.stderr
    archive.unlink()
    cache = tmp_path / "cache"
    proc = runner("reproduce", str(ONE_RUN), "--engine", "podman", "--executor", "slurm", "--ship-images",
                  "--cache", str(cache), env=no_docker)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "no Docker engine answers" in proc.stdout + proc.stderr
    (bundle,) = [p for p in (tmp_path / "results" / "one-run").iterdir()
                 if not p.name.endswith(".partial")]
    verify = runner("bundle", "verify", str(bundle))
    assert verify.returncode == 0, verify.stdout + verify.stderr
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert [r["status"] for r in manifest["runs"]] == ["ok"]
    (env,) = _runs_env(bundle).values()
    assert env["engine"] == "podman" and env["executor"] == "slurm" and env["slurm_state"] == "COMPLETED"
    image = json.loads((bundle / "environment" / "images" / "pytorch-cpu.json").read_text())["image"]
    assert image["id"] == cpu_images["pytorch"]
    # --ship-images with podman alone: `podman save` wrote the archive the nodes would load
    shipped = cache / "images" / image["shipped_archive"]["file"]
    assert shipped.stat().st_size == image["shipped_archive"]["size"]
    assert env["node"]["image"] == {"id": image["id"], "source": "node storage"}
