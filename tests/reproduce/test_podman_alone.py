"""podman with no Docker engine beside it (the cluster case), against the real podman: an image
carried over as a `runner images export` archive is imported with `runner images import --engine
podman` (checked first; a hostile archive is refused before podman sees it), listed as present,
and `runner reproduce --engine podman` runs it while DOCKER_HOST points at nothing. Under `--build
never`, a framework whose image podman lacks is a failed row naming the fix (podman's own builds:
tests/images/test_podman_build.py).
The same as a NON-root user: tests/reproduce/test_podman_rootless_reproduce.py."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.helpers import REPO

pytestmark = [pytest.mark.podman, pytest.mark.docker]

NO_DOCKER = {"DOCKER_HOST": "unix:///nonexistent/docker.sock"}
SPEC = """\
name: podman-alone
dataset:
  name: cifar10
  synthetic: {train_size: 128, test_size: 64, seed: 1}
model: {name: simple_cnn}
frameworks: [pytorch, tensorflow]
recipe: {epochs: 1, batch_size: 32, optimizer: sgd, lr: 0.01, deterministic: true}
measurement: {warmup_steps: 1, latency_batch_sizes: [], latency_iterations: 1}
resources: {threads: 1, time_limit_s: 300}
"""


def _runner(cwd: Path, *argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "runner.cli", *argv], cwd=cwd, capture_output=True, text=True,
                          env=os.environ | (env or {}), timeout=900)


def _podman(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(["podman", *argv], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def imported(cpu_images, tmp_path_factory) -> dict:
    """pytorch-cpu exported from Docker and imported into podman's storage by runner's CLI; the
    tensorflow image's tag removed from podman's storage (its runs must fail for want of it)."""
    folder = tmp_path_factory.mktemp("archives")
    archive = folder / "pytorch-cpu.tar"
    export = _runner(REPO, "images", "export", "pytorch-cpu", "--out", str(archive))
    assert export.returncode == 0, export.stdout + export.stderr
    _podman("untag", "runner/tensorflow-cpu:2.21.0")  # absent already is fine
    proc = _runner(REPO, "images", "import", str(archive), "--engine", "podman", env=NO_DOCKER)
    listed = _runner(REPO, "images", "list", "--engine", "podman", "--json", env=NO_DOCKER)
    yield {"archive": archive, "import": proc, "list": listed, "ids": cpu_images}
    archive.unlink()


def test_import_into_podman_alone_keeps_the_image_id(imported):
    proc = imported["import"]
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"imported {imported['ids']['pytorch']}" in proc.stdout and "runner/pytorch-cpu:2.13.0" in proc.stdout
    assert imported["list"].returncode == 0, imported["list"].stderr
    states = {s["name"]: s for s in json.loads(imported["list"].stdout)}
    assert states["pytorch-cpu"]["status"] == "present"
    assert states["pytorch-cpu"]["image_id"] == imported["ids"]["pytorch"]
    assert states["tensorflow-cpu"]["status"] == "missing"


def test_a_hostile_archive_is_refused_before_podman_sees_it(imported, tmp_path):
    evil = tmp_path / "evil.tar"
    with tarfile.open(evil, "w") as tar:
        link = tarfile.TarInfo("layer/etc")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc"
        tar.addfile(link)
        info = tarfile.TarInfo("manifest.json")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"[]"))
    before = _podman("images", "--quiet", "--all").stdout
    proc = _runner(REPO, "images", "import", str(evil), "--engine", "podman", env=NO_DOCKER)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "evil.tar" in proc.stderr
    assert _podman("images", "--quiet", "--all").stdout == before


def test_reproduce_with_podman_alone(imported, tmp_path):
    (tmp_path / "spec.yaml").write_text(SPEC)
    proc = _runner(tmp_path, "reproduce", "spec.yaml", "--engine", "podman", "--build", "never", env=NO_DOCKER)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "no Docker engine answers" in out
    (bundle,) = [p for p in (tmp_path / "results" / "podman-alone").iterdir() if not p.name.endswith(".partial")]
    verify = _runner(REPO, "bundle", "verify", str(bundle))
    assert verify.returncode == 0, verify.stdout + verify.stderr
    runs = {r["framework"]: r for r in pq.read_table(bundle / "tables" / "runs.parquet").to_pylist()}
    assert runs["pytorch"]["status"] == "ok" and runs["pytorch"]["image_id"] == imported["ids"]["pytorch"]
    assert runs["tensorflow"]["status"] != "ok"
    reason = runs["tensorflow"]["failure_reason"] or ""
    assert "runner/tensorflow-cpu:2.21.0 is missing" in reason, reason
    assert "runner images build tensorflow-cpu --engine podman" in reason and "import FILE --engine podman" in reason
    engine = json.loads((bundle / "environment" / "engine.json").read_text())
    assert engine["kind"] == "podman" and engine["images_from"].startswith("podman's own storage")
    assert engine["requested"] == "podman"
    image = json.loads((bundle / "environment" / "images" / "pytorch-cpu.json").read_text())["image"]
    assert image["id"] == image["podman_id"] == imported["ids"]["pytorch"]
    assert image["labels"]["io.runner.image"] == "pytorch-cpu" and image["architecture"] == "amd64"
    assert "runner/pytorch-cpu:2.13.0" in " ".join(image["repo_tags"])


def test_auto_runs_in_podman_where_docker_does_not_answer(imported, tmp_path):
    """The spec's default engine (`auto`) on a node with podman and no Docker: isolated in podman,
    not the local Python."""
    (tmp_path / "spec.yaml").write_text(SPEC.replace("[pytorch, tensorflow]", "[pytorch]"))
    proc = _runner(tmp_path, "reproduce", "spec.yaml", "--build", "never", env=NO_DOCKER)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "no Docker engine answers: podman runs the images" in out and "NOT isolated" not in out
    (bundle,) = [p for p in (tmp_path / "results" / "podman-alone").iterdir() if not p.name.endswith(".partial")]
    engine = json.loads((bundle / "environment" / "engine.json").read_text())
    assert engine["kind"] == "podman" and engine["requested"] == "auto"
    (run,) = pq.read_table(bundle / "tables" / "runs.parquet").to_pylist()
    assert run["status"] == "ok" and run["engine"] == "podman" and run["image_id"] == imported["ids"]["pytorch"]


def test_export_from_podman_alone_round_trips(imported, tmp_path):
    """podman's storage -> an archive another node (or Docker) loads: same ID, sha256 beside it."""
    from runner.images.archive import archive_image_id

    out = tmp_path / "again.tar"
    proc = _runner(REPO, "images", "export", "pytorch-cpu", "--out", str(out), "--engine", "podman", env=NO_DOCKER)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert archive_image_id(out)[0] == imported["ids"]["pytorch"]
    check = subprocess.run(["sha256sum", "--check", "again.tar.sha256"], cwd=tmp_path, capture_output=True, text=True)
    assert check.returncode == 0 and "again.tar: OK" in check.stdout  # coreutils reads the sidecar
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary file left
    again = _runner(REPO, "images", "export", "pytorch-cpu", "--out", str(out), "--engine", "podman", env=NO_DOCKER)
    assert again.returncode == 2 and "never overwrites" in again.stderr
    reimport = _runner(REPO, "images", "import", str(out), "--engine", "podman", "--expect-id",
                       imported["ids"]["pytorch"], env=NO_DOCKER)
    assert reimport.returncode == 0, reimport.stdout + reimport.stderr
    loaded = subprocess.run(["docker", "load", "--input", str(out)], capture_output=True, text=True, timeout=600)
    assert loaded.returncode == 0, loaded.stderr  # Docker reads podman's archive (and checks its layers)
    tags = [line.split(": ", 1)[1] for line in loaded.stdout.splitlines() if line.startswith("Loaded image: ")]
    for tag in tags:
        got = subprocess.run(["docker", "image", "inspect", "-f", "{{.Id}}", tag], capture_output=True, text=True)
        assert got.stdout.strip() == imported["ids"]["pytorch"]
        if tag != "runner/pytorch-cpu:2.13.0":
            subprocess.run(["docker", "rmi", tag], capture_output=True)  # the extra name only
    assert tags
