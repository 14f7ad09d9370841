"""The load rule: every model tensor from the file except under `skip`; anything else refused."""

from __future__ import annotations

import numpy as np
import pytest

from runner.errors import ModelError
from runner.workload.models import init_weights
from runner.workload.models.pretrained import apply_pretrained, plan_load
from tests.weights.conftest import simple_cnn


def _index(w):
    return {k: (v.dtype, v.shape) for k, v in w.items()}


def test_a_new_head_keeps_the_seeded_init(canonical):
    arch = simple_cnn(num_classes=100)  # the file's fc3 is for 10 classes
    seeded = init_weights(arch, 0)
    weights, plan = apply_pretrained(arch, seeded, canonical, ["fc3"])
    assert plan.kept_init == ("fc3.weight", "fc3.bias") and plan.ignored == ("fc3.bias", "fc3.weight")
    assert np.array_equal(weights["fc3.weight"], seeded["fc3.weight"])
    assert all(np.array_equal(weights[k], canonical[k]) for k in plan.loaded)
    assert len(plan.loaded) == len(canonical) - 2


@pytest.mark.parametrize("skip, files, match", [
    ((), "shape", r"tensor fc3.weight: the weights hold float32 \(10, 84\), simple_cnn needs float32 \(100, 84\)"),
    ((), "missing", "tensor conv1.weight of simple_cnn is missing"),
    (("fc3",), "extra", "the weights hold tensor head.weight, which simple_cnn has no place for"),
    (("fc9",), "ok", "skip prefix 'fc9' names no tensor"),
    (("conv1", "bn1", "conv2", "bn2", "conv3", "bn3", "fc1", "fc2", "fc3"), "ok", "no tensor of simple_cnn"),
    (("fc3",), "float64", r"conv1.weight: the weights hold float64"),
])
def test_what_does_not_fit_is_named(canonical, skip, files, match):
    arch = simple_cnn(num_classes=100)
    w = dict(canonical)
    if files == "missing":
        del w["conv1.weight"]
    elif files == "extra":
        w["head.weight"] = np.zeros((2, 2), np.float32)
    elif files == "float64":
        w["conv1.weight"] = w["conv1.weight"].astype(np.float64)
    with pytest.raises(ModelError, match=match) as info:
        plan_load(arch, _index(w), skip)
    assert "\n" not in info.value.describe()
