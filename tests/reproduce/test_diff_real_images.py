"""`runner bundle diff` of two real bundles whose runs ran in different images: the same tiny
PyTorch run on the CPU image (torch 2.13.0) and on the ppc64le image (Debian's torch 1.13.1,
under qemu). The diff names the image first, then the framework version."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO
from tests.reproduce.conftest import LOCAL_BASE

pytestmark = [pytest.mark.docker, pytest.mark.emulated, pytest.mark.slow]

LOCAL_BASE_PPC64LE = "local/debian:bookworm-ppc64le"


def _bundle(tmp: Path, variant: str, base: str) -> Path:
    text = (REPO / "tests" / "specs" / "tiny.yaml").read_text()
    text = text.replace("frameworks: [pytorch, tensorflow]", f"frameworks: [pytorch]\nvariant: {variant}")
    text = text.replace("train_size: 256, test_size: 64", "train_size: 64, test_size: 32")
    work = tmp / variant
    work.mkdir()
    (work / "spec.yaml").write_text(text)
    proc = subprocess.run([sys.executable, "-m", "runner.cli", "reproduce", "spec.yaml", "--engine", "docker",
                           "--base", base], cwd=work, capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (bundle,) = (work / "results" / "tiny").iterdir()
    return bundle


def test_diff_names_the_image_and_the_framework_version(docker_client, cpu_images, tmp_path, cli):
    import docker.errors

    try:
        docker_client.images.get(LOCAL_BASE_PPC64LE)
    except docker.errors.ImageNotFound:
        pytest.skip(f"{LOCAL_BASE_PPC64LE} is missing: run images/ppc64le/setup-emulation.sh as root")
    a = _bundle(tmp_path, "cpu", LOCAL_BASE)
    b = _bundle(tmp_path, "ppc64le", LOCAL_BASE_PPC64LE)
    manifest = json.loads((b / "manifest.json").read_text())
    assert [r["status"] for r in manifest["runs"]] == ["ok"]  # the workload runs on torch 1.13, ppc64le
    result = cli("bundle", "diff", str(a), str(b), "--json")
    assert result.code == 0, result.err
    rows = {row["field"]: row for row in json.loads(result.out)["provenance"]}
    assert rows["pytorch.image_id"]["group"] == "image"
    assert rows["pytorch.image.architecture"]["b"] == "ppc64le"
    version = rows["pytorch.framework_version"]
    assert (version["group"], version["a"], version["b"]) == ("framework", "2.13.0+cpu", "1.13.0a0")
    ranks = [row["rank"] for row in json.loads(result.out)["provenance"]]
    assert ranks == sorted(ranks) and ranks[0] == rows["pytorch.image_id"]["rank"]
