"""A whole `runner reproduce` as a NON-root user under rootless podman, with no Docker engine it can
reach: how runner runs on a cluster where Docker is not allowed.

Root exports the pytorch-cpu image (`runner images export`, Docker); the user `runner-rootless`
(made here and by .ci/provision.sh; not in the docker group) imports it into its own podman storage
(`runner images import --engine podman`), then reproduces a one-run spec. The user runs runner's
host side with the system python3 and a copy of the checkout's runner/ and images/ plus its
dependencies (the repo's venv lives
under root's 0700 home). Checked: the bundle verifies, the run is ok in the exported image, the
bundle records rootless podman, and every file of it belongs to the user.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.helpers import REPO
from tests.reproduce.test_podman_rootless import USER, _as_user, _ensure_user

pytestmark = [pytest.mark.podman, pytest.mark.docker, pytest.mark.slow]

HOST_DEPENDENCIES = ("typer", "rich", "pydantic", "PyYAML", "pyarrow", "docker", "nvidia-ml-py", "psutil",
                     "numpy", "filelock", "pillow")  # pyproject's dependencies: runner's host side
SPEC = REPO / "tests" / "specs" / "one-run.yaml"


def _copy_distributions(dest: Path, roots: tuple[str, ...]) -> list[str]:
    """Copy the installed files of `roots` and everything they require (no extras) into `dest`."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    seen: set[str] = set()
    todo = list(roots)
    while todo:
        name = canonicalize_name(todo.pop())
        if name in seen:
            continue
        seen.add(name)
        dist = metadata.distribution(name)
        for file in dist.files or []:
            if ".." in Path(str(file)).parts:  # console scripts outside site-packages
                continue
            src = Path(str(dist.locate_file(file)))
            if src.is_file():
                (dest / str(file)).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dest / str(file))
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return sorted(seen)


def _root_mode(archive: Path) -> int:
    """The mode the image's `/` gets in vfs storage (rootless podman here): its first layer's `.` entry."""
    with tarfile.open(archive) as tar:
        first_layer = json.loads(tar.extractfile("manifest.json").read())[0]["Layers"][0]
        with tarfile.open(fileobj=tar.extractfile(first_layer)) as layer:
            root = layer.next()
    return root.mode if root is not None and root.name in (".", "./", "") else 0o755


def _as_user_run(work: Path, *argv: str, timeout: int = 900) -> subprocess.CompletedProcess:
    env = {"PYTHONPATH": f"{work / 'code'}:{work / 'site'}", "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run(_as_user("/usr/bin/python3", "-m", "runner.cli", *argv, env=env), cwd=work,
                          capture_output=True, text=True, timeout=timeout)


def user_workdir(prefix: str) -> Path:
    """A folder for the rootless user's runner: code/ (runner/ and images/ of the checkout), site/
    (the host side's dependencies), spec.yaml. Skips where runner cannot run as another user."""
    if os.geteuid() != 0:
        pytest.skip("runs runner as another user: needs root (runuser)")
    system = subprocess.run(["/usr/bin/python3", "-c", "import sys; print(sys.version_info[:2])"],
                            capture_output=True, text=True).stdout.strip()
    if system != str(sys.version_info[:2]):  # the copied packages hold compiled modules for this Python
        pytest.skip(f"the system python3 is {system or 'missing'}, the test's Python {sys.version_info[:2]}")
    _ensure_user()
    work = Path(tempfile.mkdtemp(prefix=prefix))
    for part in ("runner", "images"):  # the package and the image catalog with its lockfiles (a checkout)
        shutil.copytree(REPO / part, work / "code" / part, ignore=shutil.ignore_patterns("__pycache__"))
    _copy_distributions(work / "site", HOST_DEPENDENCIES)
    shutil.copyfile(SPEC, work / "spec.yaml")
    return work


def export_for_user(work: Path) -> Path:
    """pytorch-cpu exported by root (Docker) into the user's folder, which is then handed to the user;
    skips (fails in CI) when the image's `/` would not let a non-root user in."""
    archive = work / "pytorch-cpu.tar"
    export = subprocess.run([sys.executable, "-m", "runner.cli", "images", "export", "pytorch-cpu", "--out",
                             str(archive)], cwd=REPO, capture_output=True, text=True, timeout=900)
    assert export.returncode == 0, export.stdout + export.stderr
    mode = _root_mode(archive)
    if mode & 0o005 != 0o005:
        message = (f"the pytorch-cpu image's / has mode {mode:o} in its first layer (its base "
                   "was imported from a mktemp folder, before .ci/provision.sh made it 0755): no non-root "
                   "user can run in it; rebuild the base (.ci/provision.sh) and the images")
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    subprocess.run(["chown", "-R", f"{USER}:{USER}", str(work)], check=True)
    work.chmod(0o755)
    return archive


@pytest.fixture(scope="module")
def rootless_run(cpu_images) -> Iterator[dict]:
    work = user_workdir("runner-rootless-reproduce-")
    user = pwd.getpwnam(USER)
    try:
        archive = export_for_user(work)
        imported = _as_user_run(work, "images", "import", str(archive), "--engine", "podman")
        archive.unlink()  # podman holds it now; the disk is needed for the run
        reproduced = _as_user_run(work, "reproduce", "spec.yaml", "--engine", "podman")
        yield {"work": work, "user": user, "import": imported, "reproduce": reproduced, "ids": cpu_images}
    finally:
        subprocess.run(_as_user("podman", "rmi", "--force", cpu_images["pytorch"]), capture_output=True,
                       timeout=300)
        shutil.rmtree(work, ignore_errors=True)


def user_bundle_run(work: Path) -> tuple[Path, dict]:
    """The user's one-run bundle, verified by `runner bundle verify`, and its one run's row."""
    (bundle,) = [p for p in (work / "results" / "one-run").iterdir() if not p.name.endswith(".partial")]
    verify = subprocess.run([sys.executable, "-m", "runner.cli", "bundle", "verify", str(bundle)], cwd=REPO,
                            capture_output=True, text=True, timeout=300)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    (run,) = pq.read_table(bundle / "tables" / "runs.parquet").to_pylist()
    assert run["status"] == "ok", run["failure_reason"]
    return bundle, run


def test_the_user_imports_the_image_into_its_own_podman(rootless_run):
    proc = rootless_run["import"]
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"imported {rootless_run['ids']['pytorch']}" in proc.stdout


def test_a_whole_reproduce_as_the_user(rootless_run):
    proc = rootless_run["reproduce"]
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "no Docker engine answers" in out  # the user cannot reach root's Docker
    user = rootless_run["user"]
    bundle, run = user_bundle_run(rootless_run["work"])
    assert run["image_id"] == rootless_run["ids"]["pytorch"] and run["engine"] == "podman"
    engine = (bundle / "environment" / "engine.json").read_text()
    assert re.search(r'"rootless": true', engine) and "the host user (--userns=keep-id)" in engine
    owners = {p.stat().st_uid for p in [bundle, *bundle.rglob("*")]}
    assert owners == {user.pw_uid}  # written by the user, inside the container as outside
