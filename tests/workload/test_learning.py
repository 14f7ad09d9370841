"""Both frameworks learn the synthetic CIFAR-10 look-alike to the same accuracy band.

Through the whole real path: `runner.data` writes synthetic data in the official format, it is
prepared, and `python -m runner.workload run` trains the small CNN in each framework (two
subprocesses side by side, one thread each) from the same canonical weights on the same
batches. About 300 Adam steps of batch 32 take the small CNN past 90% test accuracy on this
data (measured: 0.90-0.93 after 150-200 steps, 0.94-0.96 after 250-300). Deterministic, so the
outcome does not vary between runs of the test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from runner.workload.events import read_events
from tests.helpers import REPO

TRAIN, TEST, EPOCHS, BATCH = 2400, 500, 4, 32  # 75 steps per epoch, 300 steps in all

CONFIG = {
    "schema": 1, "run_id": "learn", "experiment": "learning-test", "sweep": "default",
    "framework": "pytorch", "variant": "cpu", "seed": 0, "repeat": 0,
    "model": {"name": "simple_cnn", "num_classes": 10, "input_size": 32, "stem": None, "layout": None,
              "bn_momentum": 0.1, "bn_epsilon": 1e-5, "dropout": 0.0, "init": "he_normal_fan_out",
              "zero_init_residual": False, "classifier": None, "freeze": []},
    "optimizer": {"name": "adam", "lr": 1e-3, "momentum": 0.0, "nesterov": False, "dampening": 0.0,
                  "beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8, "rho": 0.9, "centered": False,
                  "amsgrad": False, "weight_decay": 0.0, "weight_decay_mode": "l2"},
    "schedule": {"name": "constant", "step_size": None, "gamma": 0.1, "milestones": [], "warmup_epochs": 0,
                 "min_lr": 0.0},
    "train": {"epochs": EPOCHS, "batch_size": BATCH, "precision": "fp32", "compile": False,
              "deterministic": True, "label_smoothing": 0.0, "drop_last": True, "steps_per_epoch": None,
              "threads": 1},
    # No flips: a mirrored oriented texture is another class's texture in this data.
    "data": {"name": "cifar10", "num_classes": 10, "augmentation": [],
             "mean": [0.4914, 0.4822, 0.4465], "std": [0.247, 0.2435, 0.2616]},
    "measurement": {"warmup_steps": 2, "eval_every_epochs": 2, "latency_batch_sizes": [],
                    "latency_iterations": 1, "target_accuracy": 0.9, "synthetic_compute": False},
}


@pytest.mark.slow
@pytest.mark.torch
@pytest.mark.tensorflow
def test_both_frameworks_reach_the_same_accuracy_band(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("tensorflow")
    from runner.data import prepare, write_synthetic

    synth = write_synthetic("cifar10", tmp_path / "synth", train=TRAIN, test=TEST, seed=0)
    data = tmp_path / "prepared"
    prepare(synth.folder, data)
    procs = {}
    for framework in ("pytorch", "tensorflow"):
        work = tmp_path / framework
        (work / "out").mkdir(parents=True)
        (work / "run.json").write_text(json.dumps({**CONFIG, "framework": framework, "run_id": framework}))
        procs[framework] = subprocess.Popen(
            [sys.executable, "-m", "runner.workload", "run", "--config", str(work / "run.json"),
             "--data", str(data), "--out", str(work / "out")],
            cwd=REPO, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)
    final = {}
    for framework, proc in procs.items():
        _, err = proc.communicate(timeout=900)
        assert proc.returncode == 0, err
        events = read_events(tmp_path / framework / "out" / "events.jsonl")
        evals = [e for e in events if e["type"] == "eval"]
        assert [e["epoch"] for e in evals] == [1, 3]
        assert any(e["type"] == "target_reached" for e in events)
        steps = [e for e in events if e["type"] == "step"]
        assert len(steps) == EPOCHS * (TRAIN // BATCH)
        final[framework] = evals[-1]["test_accuracy"]
    assert min(final.values()) >= 0.9, final
    assert abs(final["pytorch"] - final["tensorflow"]) <= 0.05, final
