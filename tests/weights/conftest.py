"""Shared fixtures: canonical simple_cnn weights, and the tiny pretrained spec written around a pin."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from runner.workload.models import ModelConfig, build_arch, init_weights
from tests.workload.conftest import tf_mod, torch_mod  # noqa: F401 - the frameworks, one thread each


def simple_cnn(num_classes: int = 10, **kw):
    return build_arch(ModelConfig(name="simple_cnn", num_classes=num_classes, **kw))


@pytest.fixture
def canonical() -> dict[str, np.ndarray]:
    """simple_cnn (10 classes) weights, seed 7: stand-ins for a trained checkpoint."""
    return init_weights(simple_cnn(), 7)


def tiny_spec(folder: Path, sha256: str, *, frameworks: str = "[pytorch, tensorflow]", extra: str = "") -> Path:
    spec = folder / "pre.yaml"
    spec.write_text(f"""\
name: tiny-pretrained
dataset:
  name: cifar10
  synthetic: {{train_size: 128, test_size: 64, seed: 1}}
model:
  name: simple_cnn
  pretrained: {{sha256: {sha256}, skip: [fc3]{extra}}}
  freeze: [conv1, bn1]
frameworks: {frameworks}
recipe: {{epochs: 1, batch_size: 32, optimizer: sgd, lr: 0.01, deterministic: true}}
measurement: {{warmup_steps: 1, latency_batch_sizes: [1], latency_iterations: 3}}
resources: {{threads: 1, time_limit_s: 300}}
""")
    return spec
