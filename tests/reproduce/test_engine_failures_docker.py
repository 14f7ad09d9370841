"""Against the real engine: a run the engine refuses to start is a failed row naming the engine's
error while its sibling completes; nothing is left behind (containers, scratch); a container
still running when it should have ended is killed after the grace period, and its row says so."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from rich.console import Console

from runner.engine.base import RunRequest
from runner.engine.docker_engine import LABEL_BUNDLE, LABEL_RUN, LABEL_TOOL, DockerEngine, DockerRun
from runner.errors import EngineError
from tests.helpers import REPO
from tests.reproduce.conftest import LOCAL_BASE

pytestmark = pytest.mark.docker

TINY = REPO / "tests" / "specs" / "tiny.yaml"


def _request(tmp_path: Path, image_id: str | None, run_id: str = "r1") -> RunRequest:
    out = tmp_path / "scratch" / run_id / "out"
    out.mkdir(parents=True)
    config = tmp_path / "scratch" / run_id / "run.json"
    config.write_text("{}")
    return RunRequest(run_id=run_id, bundle_id="engine-failures-test", framework="pytorch", variant="cpu",
                      config_path=config, data_dir=tmp_path, out_dir=out, code_dir=tmp_path, image_id=image_id)


def _leftovers(client, bundle_id: str = "engine-failures-test") -> list:
    return client.containers.list(all=True, filters={"label": f"{LABEL_BUNDLE}={bundle_id}"})


def test_an_image_the_engine_does_not_have(docker_client, tmp_path):
    with pytest.raises(EngineError, match="is not on this engine"):
        DockerEngine(docker_client).start(_request(tmp_path, "sha256:" + "0" * 64))
    assert _leftovers(docker_client) == []


def test_a_container_refused_at_start_is_removed(docker_client, tmp_path):
    """The base image has no python3: the engine creates the container, then refuses to start it."""
    base = docker_client.images.get(LOCAL_BASE).id
    with pytest.raises(EngineError) as exc:
        DockerEngine(docker_client).start(_request(tmp_path, base))
    line = exc.value.describe()
    assert "starting the container of run r1 failed" in line and "python3" in line and "\n" not in line
    assert _leftovers(docker_client) == []  # docker's own containers.run would have left it


def test_finish_waits_at_most_the_grace_period(docker_client, tmp_path):
    container = docker_client.containers.run(LOCAL_BASE, ["sleep", "600"], detach=True,
                                             labels={LABEL_BUNDLE: "engine-failures-test", LABEL_RUN: "r1"})
    engine = DockerEngine(docker_client, stop_grace_s=1)
    run = DockerRun(engine, _request(tmp_path, None), container)
    t0 = time.monotonic()
    outcome = run.finish()  # not killed first: the container would run for 10 minutes
    assert time.monotonic() - t0 < 15
    assert outcome.exit_code == 137 and not outcome.ok
    assert outcome.reason == "still running 1 s after it should have ended: killed (SIGKILL)"
    assert _leftovers(docker_client) == []


def test_a_container_that_ignores_sigterm_is_killed_and_the_row_says_so(docker_client, tmp_path):
    """`sleep` as a container's PID 1 has no SIGTERM handler: the engine's stop SIGKILLs it."""
    container = docker_client.containers.run(LOCAL_BASE, ["sleep", "600"], detach=True,
                                             labels={LABEL_BUNDLE: "engine-failures-test", LABEL_RUN: "r1"})
    run = DockerRun(DockerEngine(docker_client, stop_grace_s=1), _request(tmp_path, None), container)
    t0 = time.monotonic()
    run.kill("time limit (5 s)")
    outcome = run.finish()
    assert time.monotonic() - t0 < 15
    assert outcome.reason == "time limit (5 s); did not stop within 1 s of SIGTERM: killed (SIGKILL)"
    assert _leftovers(docker_client) == []


def test_kill_of_a_container_already_gone_is_fine(docker_client, tmp_path):
    container = docker_client.containers.run(LOCAL_BASE, ["true"], detach=True,
                                             labels={LABEL_BUNDLE: "engine-failures-test"})
    container.wait(timeout=60)
    container.remove(force=True)
    DockerRun(DockerEngine(docker_client), _request(tmp_path, None), container).kill("interrupted")


def test_a_run_refused_at_start_is_a_row_and_the_sweep_goes_on(cpu_images, docker_client, tmp_path, monkeypatch):
    """PyTorch's runs get an image the engine refuses to start (no python3 in it); TensorFlow's run
    completes; the bundle says why the PyTorch run failed; no container or scratch is left."""
    import runner.reproduce.images as images_module
    from runner.reproduce.session import SessionOptions, reproduce_spec

    real = images_module.resolve_images
    base = docker_client.images.get(LOCAL_BASE).id

    def pytorch_gets_the_base_image(*args, **kwargs):
        choices = real(*args, **kwargs)
        choices["pytorch"] = type(choices["pytorch"])("pytorch", choices["pytorch"].name, base)
        return choices

    monkeypatch.setattr(images_module, "resolve_images", pytorch_gets_the_base_image)
    opts = SessionOptions(data_root=tmp_path / "data", results_root=tmp_path / "results", cache=tmp_path / "cache",
                          engine="docker", base=LOCAL_BASE)
    bundle = reproduce_spec(TINY, opts, console=Console(file=open("/dev/null", "w")))  # noqa: SIM115
    rows = {r["framework"]: r for r in pq.read_table(bundle / "tables" / "runs.parquet").to_pylist()}
    assert rows["tensorflow"]["status"] == "ok", rows["tensorflow"]["failure_reason"]
    torch_row = rows["pytorch"]
    assert torch_row["status"] == "failed"
    assert torch_row["failure_reason"].startswith("the engine could not start the run: starting the container")
    assert "python3" in torch_row["failure_reason"]
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert {r["status"] for r in manifest["runs"]} == {"ok", "failed"}
    assert _leftovers(docker_client, bundle.name + ".partial") == []
    assert _leftovers(docker_client, bundle.name) == []
    scratch = tmp_path / "cache" / "scratch"
    assert not scratch.exists() or list(scratch.iterdir()) == []
    # nor the describe-only `info` container that could not start in the base image either
    assert docker_client.containers.list(all=True, filters={"label": LABEL_TOOL, "ancestor": base}) == []
