"""Images built, locked, verified and run by podman alone, against the real podman: the same Dockerfiles,
lockfile and labels as Docker's build, no Docker engine asked (DOCKER_HOST points at nothing).

The tests use a podman storage of their own (CONTAINERS_STORAGE_CONF), so the images other tests
import into podman's usual storage are never retagged; the base is Docker's local one carried over
(`docker save | podman load`, the same image ID), which is the one step that needs Docker.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from images_helpers import LOCAL_BASE, copy_images_dir, rewrite

from runner.errors import ImageError
from runner.images.build import ensure_image
from runner.images.catalog import load_catalog
from runner.images.inspect import state_of
from tests.helpers import REPO

pytestmark = [pytest.mark.podman, pytest.mark.docker, pytest.mark.slow]

NO_DOCKER = {"DOCKER_HOST": "unix:///nonexistent/docker.sock"}
TAG = "runner/pytorch-cpu:2.13.0"


@pytest.fixture(scope="module")
def storage(tmp_path_factory):
    """A podman storage of the tests' own, holding Docker's local base (same ID), set for every
    podman this process and its children start."""
    root = tmp_path_factory.mktemp("podman-storage")
    conf = root / "storage.conf"
    conf.write_text(f'[storage]\ngraphroot = "{root}/graph"\nrunroot = "{root}/run"\n')
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CONTAINERS_STORAGE_CONF", str(conf))
        save = subprocess.Popen(["docker", "save", LOCAL_BASE], stdout=subprocess.PIPE)
        load = subprocess.run(["podman", "load"], stdin=save.stdout, capture_output=True, text=True, timeout=600)
        save.stdout.close()
        if save.wait() != 0:
            pytest.skip(f"{LOCAL_BASE} is not on the Docker engine (.ci/provision.sh makes it)")
        assert load.returncode == 0, load.stderr
        yield root
        subprocess.run(["podman", "rmi", "--all", "--force"], capture_output=True, timeout=600)
    shutil.rmtree(root, ignore_errors=True)


def _runner(*argv: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "runner.cli", *argv], cwd=cwd, capture_output=True, text=True,
                          env=os.environ | NO_DOCKER, timeout=1800)


def _store():
    from runner.engine.podman_engine import PodmanEngine
    from runner.images.podman_store import PodmanStore

    return PodmanStore(PodmanEngine.connect())


@pytest.fixture(scope="module")
def built(storage) -> dict:
    """pytorch-cpu built by `runner images build --engine podman` into the tests' storage."""
    proc = _runner("images", "build", "pytorch-cpu", "--engine", "podman", "--base", LOCAL_BASE)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    image_id = proc.stdout.split("built pytorch-cpu: ", 1)[1].split()[0]
    base_id = subprocess.run(["docker", "image", "inspect", "-f", "{{.Id}}", LOCAL_BASE], capture_output=True,
                             text=True).stdout.strip()
    return {"id": image_id, "base_id": base_id, "log": proc.stderr}


def test_podman_builds_the_image_with_no_docker_engine(built):
    attrs = _store().attrs(TAG)
    assert attrs is not None and attrs["Id"] == built["id"]
    labels = attrs["Config"]["Labels"]
    assert labels["io.runner.base_id"] == built["base_id"]  # built on the base carried over, by its ID
    assert "io.buildah.version" in labels  # podman's builder made it, not Docker
    assert labels["io.runner.builder"].startswith("podman 4.")
    assert (attrs["Os"], attrs["Architecture"]) == ("linux", "amd64")
    assert state_of(load_catalog().get("pytorch-cpu"), attrs).status == "present"
    listed = _runner("images", "list", "--engine", "podman", "--json")
    states = {s["name"]: s for s in json.loads(listed.stdout)}
    assert states["pytorch-cpu"]["status"] == "present" and states["pytorch-cpu"]["image_id"] == built["id"]


def test_verify_with_podman_checks_pip_freeze_and_debian_pins(built):
    proc = _runner("images", "verify", "pytorch-cpu", "--engine", "podman", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    assert report["ok"] and report["image_id"] == built["id"]
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["pip freeze"]["ok"] and "equal the lockfile's pins" in checks["pip freeze"]["detail"]
    assert checks["debian packages"]["ok"]


def test_an_unchanged_rebuild_is_the_same_image_and_ensure_reuses_it(built):
    again = _runner("images", "build", "pytorch-cpu", "--engine", "podman", "--base", LOCAL_BASE)
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"built pytorch-cpu: {built['id']}" in again.stdout  # podman's layer cache: the same ID
    store = _store()
    entry = load_catalog().get("pytorch-cpu")
    assert ensure_image(store, entry, "never", base=LOCAL_BASE) == built["id"]
    assert ensure_image(store, entry, "missing", base=LOCAL_BASE) == built["id"]


def test_the_framework_layer_builds_with_the_network_off(storage, tmp_path):
    (tmp_path / "Dockerfile").write_text(
        "ARG BASE\nFROM ${BASE}\n"
        "RUN if getent hosts deb.debian.org; then echo NETWORK; exit 1; else echo offline; fi\n")
    lines: list[str] = []
    _store().build("a network probe", tmp_path, buildargs={"BASE": LOCAL_BASE}, network=False,
                   platform="linux/amd64", nocache=True, log=lines.append)
    assert "offline" in lines


def test_a_failed_podman_build_leaves_nothing_tagged(storage, tmp_path):
    catalog_path = copy_images_dir(tmp_path)
    rewrite(catalog_path, 'framework_version = "2.13.0"\nframework_package = "pip:torch"\nvariant = "cpu"',
            'framework_version = "9.9.9"\nframework_package = "pip:torch"\nvariant = "cpu"')
    entry = load_catalog(catalog_path).get("pytorch-cpu")
    store = _store()
    with pytest.raises(ImageError, match="building pytorch-cpu with podman failed") as err:
        ensure_image(store, entry, "always", base=LOCAL_BASE)
    assert "expected 9.9.9" in err.value.message and len(err.value.describe().splitlines()) == 1
    assert store.attrs(entry.tag) is None


def test_a_base_podman_lacks_is_one_line_naming_the_fix(storage):
    proc = _runner("images", "build", "pytorch-cpu", "--engine", "podman", "--base", "runner-test/absent:1")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    error = proc.stderr.strip().splitlines()[-1]  # after the build's heading rule, one line
    assert error.startswith("error: --base: base image runner-test/absent:1 is not in podman's storage")
    assert "podman load" in error and proc.stderr.count("error") == 1


def test_reproduce_with_podman_alone_builds_what_podman_lacks(built, tmp_path):
    """The tag removed: `runner reproduce --engine podman` (build missing) rebuilds it in podman, runs it."""
    subprocess.run(["podman", "untag", built["id"], TAG], capture_output=True, check=True)
    shutil.copy(REPO / "tests" / "specs" / "one-run.yaml", tmp_path / "spec.yaml")
    proc = _runner("reproduce", "spec.yaml", "--engine", "podman", "--base", LOCAL_BASE, cwd=tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert f"image pytorch-cpu: {built['id'][:19]}, in podman's storage" in out
    (bundle,) = [p for p in (tmp_path / "results" / "one-run").iterdir() if not p.name.endswith(".partial")]
    verify = _runner("bundle", "verify", str(bundle))
    assert verify.returncode == 0, verify.stdout + verify.stderr
    (row,) = pq.read_table(bundle / "tables" / "runs.parquet").to_pylist()
    assert row["status"] == "ok" and row["image_id"] == built["id"]
    image = json.loads((bundle / "environment" / "images" / "pytorch-cpu.json").read_text())["image"]
    assert image["labels"]["io.runner.base_id"] == built["base_id"]


def test_lock_with_podman_resolves_the_same_pins(storage, tmp_path):
    """`runner images lock --engine podman`: apt in the base run by podman, pip on the host."""
    from runner.images.lockfile import read_lockfile

    catalog_path = copy_images_dir(tmp_path)
    committed = read_lockfile(load_catalog().get("pytorch-cpu").lockfile)
    proc = _runner("images", "lock", "pytorch-cpu", "--engine", "podman", "--base", LOCAL_BASE,
                   "--catalog", str(catalog_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    entry = load_catalog(catalog_path).get("pytorch-cpu")
    fresh = read_lockfile(entry.lockfile, entry.name)
    assert set(fresh.debian_versions()) == set(committed.debian_versions())  # versions move with security updates
    assert fresh.debian_versions()["python3"].startswith("3.11.")
    torch = {p.name: p for p in fresh.pip}["torch"]
    assert (torch.version, torch.sha256) == ("2.13.0+cpu", {p.name: p for p in committed.pip}["torch"].sha256)
