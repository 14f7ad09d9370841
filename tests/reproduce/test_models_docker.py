"""`runner models --engine docker`: the parameter table measured inside the real framework images."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.docker


def test_models_in_images_equal_across_frameworks(cli, cpu_images, mxnet_cpu_image):
    result = cli("models", "--engine", "docker", "--json", "--classes", "100")
    assert result.code == 0, result.err
    rows = json.loads(result.out)
    assert {r["framework"] for r in rows} == {"pytorch", "tensorflow", "mxnet"}
    assert all(r["equal"] for r in rows), rows
    resnet = {r["framework"]: r["trainable"] for r in rows if r["model"] == "resnet50"}
    assert resnet == {"pytorch": 23_712_932, "tensorflow": 23_712_932, "mxnet": 23_712_932}
