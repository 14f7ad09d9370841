"""A NON-root user builds its own image with rootless podman and reproduces with it: the cluster case
where nothing is carried over but the base (no Docker it can reach, vfs storage, slirp4netns for
the system layer's apt, the framework layer offline).

Root hands over only Docker's local base (`docker save`) and the locked wheels (the host's wheel
cache, which every build re-checks against the lockfile's hashes); the user `runner-rootless`
loads the base, runs `runner images build pytorch-cpu --engine podman`, `verify`, and a one-run
reproduce with `--build never`. Its host side runs as in test_podman_rootless_reproduce.py.
"""

from __future__ import annotations

import json
import pwd
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner.images.catalog import load_catalog
from runner.images.lockfile import read_lockfile
from runner.images.paths import default_cache_dir
from tests.reproduce.test_podman_rootless import USER, _as_user
from tests.reproduce.test_podman_rootless_reproduce import user_bundle_run, user_workdir

pytestmark = [pytest.mark.podman, pytest.mark.docker, pytest.mark.slow]

LOCAL_BASE = "local/debian:bookworm"


def _as_user_run(work: Path, *argv: str, timeout: int = 1800) -> subprocess.CompletedProcess:
    env = {"PYTHONPATH": f"{work / 'code'}:{work / 'site'}", "PYTHONDONTWRITEBYTECODE": "1",
           "XDG_CACHE_HOME": str(work / "cache")}  # runner's image cache (wheels) outside a checkout
    return subprocess.run(_as_user("/usr/bin/python3", "-m", "runner.cli", *argv, env=env), cwd=work,
                          capture_output=True, text=True, timeout=timeout)


def _hand_over_wheels(dest: Path) -> None:
    """pytorch-cpu's locked wheels from root's cache (the build hash-checks each one again)."""
    entry = load_catalog().get("pytorch-cpu")
    cache = default_cache_dir() / "wheels"
    dest.mkdir(parents=True)
    for pin in read_lockfile(entry.lockfile, entry.name).pip:
        if (cache / pin.filename).is_file():
            shutil.copyfile(cache / pin.filename, dest / pin.filename)


@pytest.fixture(scope="module")
def rootless_build(cpu_images) -> Iterator[dict]:
    """cpu_images: Docker's pytorch-cpu build filled the host's wheel cache (and proves the base builds)."""
    work = user_workdir("runner-rootless-build-")
    user = pwd.getpwnam(USER)
    try:
        _hand_over_wheels(work / "cache" / "runner" / "images" / "wheels")
        base_archive = work / "base.tar"
        subprocess.run(["docker", "save", "--output", str(base_archive), LOCAL_BASE], check=True, timeout=600)
        base_id = subprocess.run(["docker", "image", "inspect", "-f", "{{.Id}}", LOCAL_BASE], capture_output=True,
                                 text=True, check=True).stdout.strip()
        subprocess.run(["chown", "-R", f"{USER}:{USER}", str(work)], check=True)
        work.chmod(0o755)
        loaded = subprocess.run(_as_user("podman", "load", "--input", str(base_archive)), cwd=work,
                                capture_output=True, text=True, timeout=600)
        assert loaded.returncode == 0, loaded.stderr
        base_archive.unlink()
        started = time.monotonic()
        built = _as_user_run(work, "images", "build", "pytorch-cpu", "--engine", "podman", "--base", LOCAL_BASE)
        build_s = time.monotonic() - started
        verified = _as_user_run(work, "images", "verify", "pytorch-cpu", "--engine", "podman", "--json")
        reproduced = _as_user_run(work, "reproduce", "spec.yaml", "--engine", "podman", "--build", "never")
        yield {"work": work, "user": user, "build": built, "build_s": build_s, "verify": verified,
               "reproduce": reproduced, "base_id": base_id}
    finally:
        subprocess.run(_as_user("podman", "rmi", "--all", "--force"), capture_output=True, timeout=600)
        shutil.rmtree(work, ignore_errors=True)


def test_the_user_builds_the_image_with_rootless_podman(rootless_build):
    proc = rootless_build["build"]
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    print(f"rootless podman build of pytorch-cpu: {rootless_build['build_s']:.0f} s")
    image_id = proc.stdout.split("built pytorch-cpu: ", 1)[1].split()[0]
    inspect = subprocess.run(_as_user("podman", "image", "inspect", image_id), capture_output=True, text=True,
                             cwd=rootless_build["work"])
    (doc,) = json.loads(inspect.stdout)
    labels = doc["Config"]["Labels"]
    assert labels["io.runner.base_id"] == rootless_build["base_id"] and "io.buildah.version" in labels
    report = json.loads(rootless_build["verify"].stdout)
    assert report["ok"], report  # pip freeze and dpkg-query in the user's own image equal the lockfile


def test_the_user_reproduces_with_its_own_build(rootless_build):
    proc = rootless_build["reproduce"]
    assert proc.returncode == 0, proc.stdout + proc.stderr
    built_id = rootless_build["build"].stdout.split("built pytorch-cpu: ", 1)[1].split()[0]
    user = rootless_build["user"]
    bundle, run = user_bundle_run(rootless_build["work"])
    assert run["image_id"] == built_id and run["engine"] == "podman"
    assert {p.stat().st_uid for p in [bundle, *bundle.rglob("*")]} == {user.pw_uid}
