"""`runner reproduce BUNDLE`: rerun exactly; deterministic CPU losses bit-identical; a swapped image
is reported with its cause."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers import REPO
from tests.reproduce.conftest import LOCAL_BASE

TINY = REPO / "tests" / "specs" / "tiny.yaml"
EXACT = ("final_train_loss", "final_test_loss", "step_losses", "final_test_accuracy", "status")


def _one_framework_spec(tmp: Path, framework: str) -> Path:
    spec = tmp / "one.yaml"
    spec.write_text(TINY.read_text().replace("frameworks: [pytorch, tensorflow]", f"frameworks: [{framework}]"))
    return spec


def _bundles(results: Path) -> list[Path]:
    return sorted(p for p in (results / "tiny").iterdir() if p.is_dir() and not p.name.endswith(".partial"))


def _run(cli, *args):
    return cli("reproduce", *[str(a) for a in args])


def test_local_rerun_is_bit_identical(cli, tmp_path, monkeypatch):
    pytest.importorskip("torch")
    from runner.audit.reproduction import compare_runs

    monkeypatch.chdir(tmp_path)
    assert _run(cli, _one_framework_spec(tmp_path, "pytorch"), "--engine", "local").code == 0
    (original,) = _bundles(tmp_path / "results")
    result = _run(cli, original)
    assert result.code in (0, 1), result.err  # 1 only if a timing moved beyond its band on a busy machine
    new = [b for b in _bundles(tmp_path / "results") if b != original][0]
    report = compare_runs(original, new)
    exact = [c for c in report.checks if c.metric in EXACT]
    assert {c.metric for c in exact} >= {"step_losses", "final_train_loss"}
    assert all(c.verdict == "pass" for c in exact), [c for c in exact if c.verdict != "pass"]
    assert (new / "code" / "runner" / "workload" / "__main__.py").read_bytes() == (
        original / "code" / "runner" / "workload" / "__main__.py").read_bytes()
    if result.code == 1:
        timing = ("mean_images_per_s", "latency_per_image_ms")
        misses = [(c.metric, c.original, c.new) for c in report.misses]
        assert all(c.metric.startswith(timing) for c in report.misses), misses


def test_unreadable_target_is_one_line(cli, tmp_path):
    (tmp_path / "manifest.json").write_text("{not json")
    result = _run(cli, tmp_path)
    assert result.code == 2 and len(result.err.strip().splitlines()) == 1


@pytest.mark.docker
def test_swapped_image_is_reported_with_its_cause(cli, cpu_images, docker_client, tmp_path, monkeypatch):
    """Same torch, other CPU kernels (vector ISA capped): the losses move, the diff names the image."""
    import io

    from runner.audit.reproduction import compare_runs

    monkeypatch.chdir(tmp_path)
    assert _run(cli, _one_framework_spec(tmp_path, "pytorch"), "--engine", "docker", "--base", LOCAL_BASE).code == 0
    (original,) = _bundles(tmp_path / "results")
    dockerfile = (f"FROM {cpu_images['pytorch']}\nENV ATEN_CPU_CAPABILITY=default ONEDNN_MAX_CPU_ISA=SSE41\n"
                  "LABEL io.runner.test=swapped\n").encode()
    swapped, _ = docker_client.images.build(fileobj=io.BytesIO(dockerfile), rm=True, network_mode="none")
    try:
        result = _run(cli, original, "--image", f"pytorch={swapped.id}")
        assert result.code == 1, result.out + result.err
        new = [b for b in _bundles(tmp_path / "results") if b != original][0]
        report = compare_runs(original, new)
        assert any(c.metric == "step_losses" and c.verdict == "miss" for c in report.checks)
        fields = " ".join(f"{d.group} {d.field}" for d in report.provenance)
        assert "image" in fields
        assert swapped.id[:19] in result.out or "image" in result.out
    finally:
        docker_client.images.remove(swapped.id, force=True)
        os.chdir(REPO)
