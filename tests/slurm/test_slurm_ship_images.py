"""execution.ship_images on the real one-node cluster: a node whose engine (the real Docker, the
real podman) lacks the run's image loads it from the archive on the shared filesystem and runs
it; the next run on that node finds it there; a broken archive is a failed run with nothing
loaded; and `runner reproduce --ship-images` end to end (a verified bundle that records the
archive and, per run, where its node found the image).

The image that travels is a small one of the tests' own (the local Debian base plus a label that
no other image has), so removing it from an engine disturbs nothing else."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from runner.engine.base import Launch, Mount
from runner.engine.docker_engine import LABEL_BUNDLE
from runner.executor.base import JobState
from runner.executor.image_ship import ship_image
from runner.executor.slurm import SlurmExecutor
from runner.executor.slurm_batch import SlurmSettings
from runner.images.archive import export_image
from tests.helpers import REPO
from tests.reproduce.conftest import LOCAL_BASE

pytestmark = [pytest.mark.slurm, pytest.mark.docker]


@pytest.fixture()
def small_image(docker_client):
    """A Docker image of this test's own (the base plus a unique label); removed afterwards."""
    marker = uuid.uuid4().hex[:12]
    dockerfile = f"FROM {LOCAL_BASE}\nLABEL io.runner.test.ship={marker}\n".encode()
    image, _ = docker_client.images.build(fileobj=io.BytesIO(dockerfile), tag=f"runner-test/ship:{marker}",
                                          pull=False, rm=True, network_mode="none")
    yield image.id
    import docker.errors

    try:
        docker_client.images.remove(image.id, force=True)
    except docker.errors.ImageNotFound:
        pass
    subprocess.run(["podman", "rmi", "-f", image.id], capture_output=True, check=False)


def _launch(root: Path, run_id: str, engine: str, image: str, archive: Path | None, text: str) -> Launch:
    out = root / run_id / "out"
    out.mkdir(parents=True)
    return Launch(run_id=run_id, bundle_id=f"ship-{uuid.uuid4().hex[:8]}", engine=engine,
                  argv=("/bin/sh", "-c", f"echo {text}"), env={}, mounts=(Mount(out, "/out", read_only=False),),
                  out_dir=out, image=image, image_archive=str(archive) if archive else None,
                  labels={LABEL_BUNDLE: "ship-test"})


def _through_slurm(launch: Launch):
    ex = SlurmExecutor(SlurmSettings(ship_images=True))
    job = ex.submit(launch.run_id, launch, launch.engine)
    deadline = time.monotonic() + 300
    while job.poll() is not JobState.ENDED:
        assert time.monotonic() < deadline, job.row
        time.sleep(0.5)
    return job.finish()


def _has(engine: str, image_id: str, docker_client) -> bool:
    if engine == "docker":
        return any(img.id == image_id for img in docker_client.images.list(all=True))
    return subprocess.run(["podman", "image", "exists", image_id]).returncode == 0


@pytest.mark.parametrize("engine", ["docker", pytest.param("podman", marks=pytest.mark.podman)])
def test_a_node_lacking_the_image_loads_it_from_the_shared_archive(engine, small_image, docker_client, tmp_path):
    shipped = ship_image(lambda image_id, out: export_image(docker_client, image_id, out), small_image,
                         tmp_path / "cache" / "images")
    if engine == "docker":
        docker_client.images.remove(small_image, force=True)
    assert not _has(engine, small_image, docker_client)

    first = _through_slurm(_launch(tmp_path, "first", engine, small_image, shipped.path, "loaded-and-ran"))
    assert first.ok and "loaded-and-ran" in first.log, first.reason
    image = first.node["image"]
    assert image["source"] == "archive" and image["id"] == small_image and image["load_s"] > 0
    assert _has(engine, small_image, docker_client)  # the same id the bundle records

    second = _through_slurm(_launch(tmp_path, "second", engine, small_image, shipped.path, "found-it"))
    assert second.ok and second.node["image"] == {"id": small_image, "source": "node storage"}


def test_a_broken_archive_is_a_failed_run_and_loads_nothing(small_image, docker_client, tmp_path):
    shipped = ship_image(lambda image_id, out: export_image(docker_client, image_id, out), small_image,
                         tmp_path / "images")
    docker_client.images.remove(small_image, force=True)
    data = bytearray(shipped.path.read_bytes())
    data[-5000:-4000] = b"\xff" * 1000  # a damaged layer: the sha256 file beside it no longer matches
    shipped.path.write_bytes(bytes(data))

    outcome = _through_slurm(_launch(tmp_path, "broken", "docker", small_image, shipped.path, "never"))
    assert not outcome.ok
    assert outcome.reason.startswith("the node could not load the run's image from its archive: ")
    assert outcome.node["image"]["source"] == "archive"
    assert not _has("docker", small_image, docker_client)


ONE_RUN = REPO / "tests" / "specs" / "one-run.yaml"


def test_reproduce_with_ship_images_records_the_archive_and_where_each_node_found_the_image(cpu_images, tmp_path):
    cache = tmp_path / "cache"
    argv = [sys.executable, "-m", "runner.cli", "reproduce", str(ONE_RUN), "--engine", "docker",
            "--executor", "slurm", "--ship-images", "--cache", str(cache), "--base", LOCAL_BASE]
    proc = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "archive for the nodes written" in proc.stdout, proc.stdout.splitlines()
    (bundle,) = [p for p in (tmp_path / "results" / "one-run").iterdir() if not p.name.endswith(".partial")]
    verify = subprocess.run([sys.executable, "-m", "runner.cli", "bundle", "verify", str(bundle)],
                            capture_output=True, text=True, cwd=tmp_path)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    executor = json.loads((bundle / "environment" / "executor.json").read_text())
    assert executor["sbatch"]["ship_images"] is True
    image = json.loads((bundle / "environment" / "images" / "pytorch-cpu.json").read_text())["image"]
    archive = cache / "images" / image["shipped_archive"]["file"]
    assert image["id"] == cpu_images["pytorch"] and archive.name == image["id"].removeprefix("sha256:") + ".tar"
    assert archive.stat().st_size == image["shipped_archive"]["size"]
    assert archive.with_name(archive.name + ".sha256").read_text().split()[0] == image["shipped_archive"]["sha256"]
    (run,) = (json.loads(p.read_text())["environment"] for p in (bundle / "runs").glob("*/environment.json"))
    assert run["node"]["image"] == {"id": cpu_images["pytorch"], "source": "node storage"}  # one node: Docker has it
    assert str(cache) not in (bundle / "environment" / "images" / "pytorch-cpu.json").read_text()

    again = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0 and "archive for the nodes reused" in again.stdout, again.stdout + again.stderr
