"""`python -m runner.workload info` and `models`: JSON from the real framework, one-line errors."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from tests.helpers import REPO

FRAMEWORKS = [pytest.param("pytorch", marks=pytest.mark.torch),
              pytest.param("tensorflow", marks=pytest.mark.tensorflow)]
MODULE = {"pytorch": "torch", "tensorflow": "tensorflow"}


def workload(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "runner.workload", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_info_reports_build_devices_threads_and_packages(framework):
    module = pytest.importorskip(MODULE[framework])
    proc = workload("info", "--framework", framework)
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["framework"] == framework and info["framework_version"] == module.__version__
    assert info["python"].count(".") == 2 and info["numpy"]
    assert {"cuda", "cudnn", "xla"} <= set(info["build"])
    assert any(d["type"] == "CPU" for d in info["devices"])
    assert set(info["threads"]) == {"intra_op", "inter_op"}
    dist = {"pytorch": "torch", "tensorflow": "tensorflow"}[framework]
    names = {re.sub(r"[-_.]+", "-", p.split("==")[0]).lower() for p in info["packages"]}
    assert dist in names or f"{dist}-cpu" in names, sorted(names)
    # sorted by distribution name, like pip freeze (requests before requests-cache)
    assert info["packages"] == sorted(info["packages"], key=lambda p: p.split("==")[0].lower())


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_models_counts_come_from_the_framework_model(framework):
    pytest.importorskip(MODULE[framework])
    proc = workload("models", "--framework", framework, "--json", "--model", "simple_cnn", "--classes", "100")
    assert proc.returncode == 0, proc.stderr
    (row,) = json.loads(proc.stdout)
    # conv 3-32-64-128 (3x3, no bias): 93,024; dense 2048-120-84-100 with biases: 264,544;
    # BatchNorm gamma and beta: 448 (trainable); running mean and variance: 448 more (total).
    assert row["model"] == "simple_cnn" and row["framework"] == framework
    assert row["trainable"] == 93_024 + 264_544 + 448 and row["total"] == row["trainable"] + 448
    assert row["matches_arch"] and row["flops_per_image"] > 0


def test_bad_flags_are_one_line_exit_2():
    proc = workload("models", "--framework", "pytorch", "--json", "--model", "vgg16", "--input-size", "224")
    if "not installed" in proc.stderr:
        pytest.skip("pytorch not installed")
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "model.input_size" in proc.stderr
