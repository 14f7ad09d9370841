"""`runner doctor` against the real engine and without one; `runner models` equal across frameworks."""

from __future__ import annotations

import json

import pytest

from tests.helpers import mxnet_python


@pytest.mark.docker
def test_doctor_reports_the_engine(cli, tmp_path, monkeypatch):
    import docker

    monkeypatch.chdir(tmp_path)
    version = docker.from_env().version()["Version"]
    result = cli("doctor", "--json")
    checks = {c["name"]: c for c in json.loads(result.out)}
    assert checks["container engine"]["status"] == "OK"
    assert version in checks["container engine"]["detail"]
    assert checks["GPUs (NVML)"]["status"] in ("OK", "WARN")  # never a crash without a driver
    assert set(checks) == {"container engine", "podman", "executors", "GPUs (NVML)", "free disk", "datasets",
                           "images"}
    assert checks["executors"]["detail"].startswith("inline")
    assert result.code == 0


def test_doctor_without_engine_fails_with_the_fix(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    monkeypatch.setenv("PATH", str(tmp_path))  # no podman either
    result = cli("doctor")
    assert result.code == 1
    assert "FAIL" in result.out and "dockerd" in result.out


@pytest.mark.podman
def test_doctor_with_podman_alone_is_no_failure(cli, tmp_path, monkeypatch):
    """No Docker engine but a working podman (a cluster): the engine line warns, images are podman's."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    result = cli("doctor", "--json")
    checks = {c["name"]: c for c in json.loads(result.out)}
    assert result.code == 0, result.out
    engine = checks["container engine"]
    assert engine["status"] == "WARN" and "podman runs the images in its own storage" in engine["detail"]
    assert checks["images"]["detail"].startswith("present (podman's storage): ")
    if checks["images"]["fix"]:
        assert "runner images import FILE --engine podman" in checks["images"]["fix"]


@pytest.mark.podman
def test_doctor_reports_podman(cli, tmp_path, monkeypatch):
    import subprocess

    monkeypatch.chdir(tmp_path)
    version = subprocess.run(["podman", "version", "--format", "{{.Client.Version}}"], capture_output=True,
                             text=True, check=True).stdout.strip()
    checks = {c["name"]: c for c in json.loads(cli("doctor", "--json").out)}
    assert checks["podman"]["status"] == "OK" and f"Podman {version}" in checks["podman"]["detail"]


def test_doctor_warns_of_limits_rootless_podman_cannot_enforce(monkeypatch):
    from runner.doctor import check_podman
    from runner.engine.podman_engine import PodmanEngine

    class Rootless:
        def describe(self) -> dict:
            return {"version": "4.3.1", "rootless": True, "oci_runtime": "crun", "storage_driver": "vfs",
                    "cgroup_version": "v1", "limits_enforced": {"memory": False, "cpus": False, "pids": False}}

    monkeypatch.setattr(PodmanEngine, "connect", classmethod(lambda cls, *a, **k: Rootless()))
    check = check_podman()
    assert check.status == "WARN" and "rootless" in check.detail
    assert check.detail.endswith("cannot enforce: memory, cpus, pids") and "Delegate=yes" in check.fix


def test_doctor_without_podman_warns_with_the_fix(cli, tmp_path, monkeypatch):
    from runner.doctor import check_podman

    monkeypatch.setenv("PATH", str(tmp_path))  # no podman on PATH
    check = check_podman()
    assert check.status == "WARN" and "not installed" in check.detail and "apt-get install -y podman" in check.fix


def test_models_equal_across_frameworks(cli):
    pytest.importorskip("torch")
    pytest.importorskip("tensorflow")
    mxnet_python()  # MXNet's counts come from its own venv
    result = cli("models", "--json", "--classes", "100")
    assert result.code == 0, result.err
    rows = json.loads(result.out)
    assert {r["model"] for r in rows} == {"resnet50", "alexnet", "vgg16", "simple_cnn"}
    assert all(r["equal"] for r in rows)
    resnet = [r for r in rows if r["model"] == "resnet50"]
    assert {r["trainable"] for r in resnet} == {23_712_932}  # ResNet-50 v1.5, ImageNet stem, 100 classes
    assert {r["framework"] for r in resnet} == {"pytorch", "tensorflow", "mxnet"}


def test_models_rejects_unknown_framework(cli):
    result = cli("models", "--framework", "jax")
    assert result.code == 2 and "--framework" in result.err
