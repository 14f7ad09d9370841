"""Through the real harness (prepare_run -> backend.build -> train_step), both frameworks: imported
weights give equal logits, a skipped head keeps the seeded init, frozen layers (BatchNorm
statistics included) do not change over training steps while the others do."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from runner.workload.models import init_weights
from runner.workload.models.npz import save_npz
from tests.weights.conftest import simple_cnn

pytestmark = [pytest.mark.torch, pytest.mark.tensorflow]

FROZEN = ("conv1.weight", "bn1.weight", "bn1.bias", "bn1.running_mean", "bn1.running_var")
TRAINED = ("conv2.weight", "bn2.weight", "bn2.running_mean", "fc1.weight", "fc3.weight")


def _doc(framework: str, sha: str) -> dict:
    from tests.workload.test_harness_run import BASE_CONFIG

    doc = copy.deepcopy(BASE_CONFIG)
    doc["framework"], doc["run_id"] = framework, f"w-{framework}"
    doc["model"] |= {"freeze": ["conv1", "bn1"], "pretrained": {"sha256": sha, "skip": ["fc3"]}}
    doc["train"] |= {"threads": None, "deterministic": False}
    doc["optimizer"] |= {"weight_decay_mode": "decoupled"}  # decay must not touch frozen weights either
    return doc


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from runner.data import prepare, write_synthetic

    root = tmp_path_factory.mktemp("w")
    synth = write_synthetic("cifar10", root / "synth", train=64, test=16, seed=0)
    prepare(synth.folder, root / "prepared")
    pretrained = init_weights(simple_cnn(), 11)  # stands in for a trained checkpoint
    sha = save_npz(root / "w.npz", pretrained)
    return root, sha, pretrained


def _backend(framework: str, setup, torch_mod, tf_mod):
    from runner.workload.harness.run import initial_weights, make_backend, prepare_run

    root, sha, _ = setup
    work = root / framework
    (work / "out").mkdir(parents=True)
    (work / "run.json").write_text(json.dumps(_doc(framework, sha)))
    p = prepare_run(work / "run.json", root / "prepared", work / "out", root / "w.npz")
    backend = make_backend(p)
    backend.setup()
    initial, record = initial_weights(p)
    backend.build(p.arch, initial)
    return backend, initial, record


def _export(backend) -> dict[str, np.ndarray]:
    if backend.framework == "pytorch":
        from runner.workload.models import torch_impl

        return torch_impl.export_weights(backend.model)
    from runner.workload.models import tf_impl

    return tf_impl.export_weights(backend.model)


def _logits(backend, x: np.ndarray) -> np.ndarray:
    if backend.framework == "pytorch":
        import torch

        backend.model.eval()
        with torch.no_grad():
            return backend.model(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy()
    return backend.model(x, training=False).numpy()


def test_imported_weights_load_equally_and_frozen_layers_stay(setup, torch_mod, tf_mod):
    _, _, pretrained = setup
    seeded = init_weights(simple_cnn(), 3)  # run.json seed 3
    x = np.random.default_rng(0).standard_normal((4, 32, 32, 3)).astype(np.float32)
    y = np.arange(4, dtype=np.int64)
    logits = {}
    for fw in ("pytorch", "tensorflow"):
        backend, initial, record = _backend(fw, setup, torch_mod, tf_mod)
        assert record["kept_init"] == ["fc3.weight", "fc3.bias"] and record["loaded"] == 19
        start = _export(backend)
        for key in start:  # the model starts exactly at the file's tensors, the head at the seeded draw
            expected = seeded[key] if key.startswith("fc3.") else pretrained[key]
            assert np.array_equal(start[key], expected), (fw, key)
        logits[fw] = _logits(backend, x)
        for _step in range(3):
            backend.train_step(backend.to_device(x, y), 0.05)
        after = _export(backend)
        for key in FROZEN:
            assert np.array_equal(after[key], start[key]), (fw, key, "frozen but changed")
        for key in TRAINED:
            assert not np.array_equal(after[key], start[key]), (fw, key, "trainable but unchanged")
    diff = np.abs(logits["pytorch"] - logits["tensorflow"]).max()
    assert diff <= 1e-4 and np.abs(logits["pytorch"]).max() > 1e-3, diff  # test_models_parity's tolerance
