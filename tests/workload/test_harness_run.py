"""`python -m runner.workload run` end to end, in a subprocess, on tiny synthetic CIFAR-10 data.

Per framework: two deterministic runs of the small CNN with the same seed write every event
type and bit-identical losses; both frameworks start from the same point (same weights, same
first batch, same loss: equal first-step losses); a diverging run and a SIGTERM'd run end
with run_end failed and their earlier events intact; bad input exits 2 and writes nothing.
"""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runner.workload.events import EVENT_TYPES, read_events
from tests.helpers import REPO

FRAMEWORK_MODULE = {"pytorch": "torch", "tensorflow": "tensorflow"}
TIMEOUT_S = 300

BASE_CONFIG = {
    "schema": 1, "run_id": "t-run", "experiment": "harness-test", "sweep": "default",
    "framework": "pytorch", "variant": "cpu", "seed": 3, "repeat": 0,
    "model": {"name": "simple_cnn", "num_classes": 10, "input_size": 32, "stem": None, "layout": None,
              "bn_momentum": 0.1, "bn_epsilon": 1e-5, "dropout": 0.0, "init": "he_normal_fan_out",
              "zero_init_residual": False, "classifier": None, "freeze": []},
    "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9, "nesterov": False, "dampening": 0.0,
                  "beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8, "rho": 0.9, "centered": False,
                  "amsgrad": False, "weight_decay": 5e-4, "weight_decay_mode": "l2"},
    "schedule": {"name": "cosine", "step_size": None, "gamma": 0.1, "milestones": [], "warmup_epochs": 0,
                 "min_lr": 0.0},
    "train": {"epochs": 2, "batch_size": 16, "precision": "fp32", "compile": False, "deterministic": True,
              "label_smoothing": 0.1, "drop_last": True, "steps_per_epoch": 4, "threads": 1},
    "data": {"name": "cifar10", "num_classes": 10,
             "augmentation": [{"op": "random_crop", "padding": 4}, {"op": "horizontal_flip", "p": 0.5}],
             "mean": [0.4914, 0.4822, 0.4465], "std": [0.247, 0.2435, 0.2616]},
    "measurement": {"warmup_steps": 2, "eval_every_epochs": 1, "latency_batch_sizes": [1, 4],
                    "latency_iterations": 5, "target_accuracy": 0.0, "synthetic_compute": False},
}


def config(framework: str, **sections: dict) -> dict:
    cfg = copy.deepcopy(BASE_CONFIG)
    cfg["framework"] = framework
    cfg["run_id"] = f"t-{framework}"
    for name, values in sections.items():
        cfg[name].update(values)
    return cfg


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    from runner.data import prepare, write_synthetic

    root = tmp_path_factory.mktemp("data")
    synth = write_synthetic("cifar10", root / "synth", train=160, test=48, seed=0)
    prepare(synth.folder, root / "prepared")
    return root / "prepared"


def start(cfg: dict, data: Path, work: Path) -> tuple[subprocess.Popen, Path]:
    work.mkdir(parents=True)
    (work / "run.json").write_text(json.dumps(cfg))
    out = work / "out"
    out.mkdir()
    cmd = [sys.executable, "-m", "runner.workload", "run", "--config", str(work / "run.json"),
           "--data", str(data), "--out", str(out)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True), out


def run_workload(cfg: dict, data: Path, work: Path) -> tuple[int, str, Path]:
    proc, out = start(cfg, data, work)
    _, err = proc.communicate(timeout=TIMEOUT_S)
    return proc.returncode, err, out


@pytest.fixture(scope="module")
def pair(prepared, tmp_path_factory):
    """Two identical deterministic runs per framework, made once: several tests read them."""
    made: dict[str, tuple[tuple[int, str, Path], tuple[int, str, Path]]] = {}

    def get(framework: str) -> tuple[tuple[int, str, Path], tuple[int, str, Path]]:
        pytest.importorskip(FRAMEWORK_MODULE[framework])
        if framework not in made:
            cfg, work = config(framework), tmp_path_factory.mktemp(framework)
            made[framework] = (run_workload(cfg, prepared, work / "a"), run_workload(cfg, prepared, work / "b"))
        return made[framework]
    return get


def step_losses(events: list[dict]) -> list[float]:
    return [e["loss"] for e in events if e["type"] == "step"]


@pytest.mark.parametrize("framework", ["pytorch", "tensorflow"])
def test_run_writes_every_event_and_a_result(pair, framework):
    (code, err, out), _ = pair(framework)
    assert code == 0, err
    events = read_events(out / "events.jsonl")
    types = [e["type"] for e in events]
    assert set(types) == set(EVENT_TYPES) - {"inference"}  # only with measurement.inference (test_quantize)
    assert types[0] == "run_start" and types[-1] == "run_end"
    assert all(e["run_id"] == f"t-{framework}" and isinstance(e["t"], float) for e in events)

    start_ev = events[0]
    assert start_ev["framework"] == framework and start_ev["framework_version"]
    assert start_ev["params"]["trainable"] == 350_366 and start_ev["params"]["total"] == 350_814
    assert start_ev["flops_per_image"] > 0 and len(start_ev["config_sha256"]) == 64
    assert start_ev["threads"]["intra_op"] == 1 and start_ev["devices"][0]["type"] == "CPU"
    assert {"python", "build", "settings"} <= set(start_ev)

    steps = [e for e in events if e["type"] == "step"]
    assert [s["global_step"] for s in steps] == list(range(8))  # 2 epochs x 4 capped steps
    assert [s["warmup"] for s in steps] == [True, True] + [False] * 6
    assert all(s["batch_size"] == 16 and s["data_time_s"] >= 0 and s["compute_time_s"] > 0 for s in steps)
    # Cosine over 2 epochs, per-epoch granularity: epoch 0 at lr, epoch 1 at (1 + cos(pi/2)) / 2 * lr.
    assert [s["lr"] for s in steps] == pytest.approx([0.05] * 4 + [0.025] * 4)

    (compile_ev,) = [e for e in events if e["type"] == "compile"]
    assert compile_ev["time_s"] == pytest.approx(steps[0]["compute_time_s"])
    assert compile_ev["warmup_steps"] == 2 and compile_ev["execution"]

    epochs = [e for e in events if e["type"] == "epoch"]
    assert [e["epoch"] for e in epochs] == [0, 1]
    assert epochs[0]["images"] == 64 and epochs[0]["timed_images"] == 32  # warm-up excluded
    assert epochs[1]["images_per_s"] > 0 and 0 <= epochs[1]["train_accuracy"] <= 1
    evals = [e for e in events if e["type"] == "eval"]
    assert [e["epoch"] for e in evals] == [0, 1] and all(e["images"] == 48 for e in evals)
    (target,) = [e for e in events if e["type"] == "target_reached"]
    assert target["epoch"] == 0 and target["time_s"] == pytest.approx(epochs[0]["time_s"])
    latency = [e for e in events if e["type"] == "latency"]
    assert [e["batch_size"] for e in latency] == [1, 4]
    assert all(e["iterations"] == 5 and e["p50_ms"] <= e["p90_ms"] <= e["p99_ms"] for e in latency)
    (memory,) = [e for e in events if e["type"] == "memory"]
    assert memory["peak_device_bytes"] is None and memory["peak_host_bytes"] > 0
    assert events[-1]["status"] == "ok" and events[-1]["reason"] is None

    result = json.loads((out / "result.json").read_text())
    assert result["status"] == "ok" and result["epochs_completed"] == 2
    assert result["final_test_accuracy"] == evals[-1]["test_accuracy"]
    assert result["final_train_loss"] == epochs[-1]["train_loss"]
    assert result["params"] == start_ev["params"] and result["time_to_target_s"] == target["time_s"]
    assert result["images_per_s"] > 0 and len(result["latency"]) == 2


@pytest.mark.parametrize("framework", ["pytorch", "tensorflow"])
def test_same_seed_gives_bit_identical_losses(pair, framework):
    (code_a, err_a, out_a), (code_b, err_b, out_b) = pair(framework)
    assert code_a == 0 and code_b == 0, err_a + err_b
    events_a, events_b = read_events(out_a / "events.jsonl"), read_events(out_b / "events.jsonl")
    losses_a = step_losses(events_a)
    assert len(losses_a) == 8 and losses_a == step_losses(events_b)  # exact float equality
    evals = [[e["test_loss"] for e in ev if e["type"] == "eval"] for ev in (events_a, events_b)]
    assert evals[0] == evals[1]


def test_frameworks_start_from_the_same_point(pair):
    """Same canonical weights, same first batch, same loss: the first step's loss agrees."""
    (code_pt, _, out_pt), _ = pair("pytorch")
    (code_tf, _, out_tf), _ = pair("tensorflow")
    assert code_pt == code_tf == 0
    first_pt = step_losses(read_events(out_pt / "events.jsonl"))[0]
    first_tf = step_losses(read_events(out_tf / "events.jsonl"))[0]
    assert first_pt == pytest.approx(first_tf, rel=1e-5)


@pytest.mark.torch
def test_diverging_run_ends_failed_with_its_steps_intact(prepared, tmp_path):
    pytest.importorskip("torch")
    cfg = config("pytorch", optimizer={"lr": 1e12}, schedule={"name": "constant"})
    code, err, out = run_workload(cfg, prepared, tmp_path / "div")
    assert code == 3
    assert "diverged" in err
    events = read_events(out / "events.jsonl")
    assert events[-1]["type"] == "run_end"
    assert events[-1]["status"] == "failed" and events[-1]["reason"] == "diverged"
    steps = [e for e in events if e["type"] == "step"]
    assert steps[0]["loss"] is not None and steps[-1]["loss"] is None  # NaN written as null
    assert [s["global_step"] for s in steps] == list(range(len(steps)))
    result = json.loads((out / "result.json").read_text())
    assert result["status"] == "failed" and result["reason"] == "diverged"


@pytest.mark.tensorflow
def test_sigterm_mid_run_ends_interrupted_with_events_intact(prepared, tmp_path):
    pytest.importorskip("tensorflow")
    cfg = config("tensorflow", train={"epochs": 500, "steps_per_epoch": None})
    proc, out = start(cfg, prepared, tmp_path / "term")
    events_file = out / "events.jsonl"
    deadline = time.monotonic() + TIMEOUT_S
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if events_file.exists() and '"type":"epoch"' in events_file.read_text():
                break
            time.sleep(0.2)
        assert proc.poll() is None, proc.communicate()[1]
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 3, err
    events = read_events(events_file)
    assert events[-1]["type"] == "run_end" and events[-1]["reason"] == "interrupted", events[-1]
    assert events[-2]["type"] == "memory"
    steps = [e for e in events if e["type"] == "step"]
    assert len(steps) >= 10 and [s["global_step"] for s in steps] == list(range(len(steps)))
    assert json.loads((out / "result.json").read_text())["reason"] == "interrupted"


def test_bad_config_exits_2_with_one_line_and_writes_nothing(prepared, tmp_path):
    cfg = config("pytorch")
    cfg["train"]["batch_sise"] = 8
    code, err, out = run_workload(cfg, prepared, tmp_path / "bad")
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "train" in err and "batch_sise" in err
    assert list(out.iterdir()) == []


def test_model_that_does_not_fit_the_data_exits_2(prepared, tmp_path):
    cfg = config("pytorch", model={"name": "alexnet", "layout": "imagenet", "input_size": 224})
    code, err, _ = run_workload(cfg, prepared, tmp_path / "size")
    assert code == 2 and "model.input_size" in err and "resize" in err


def test_results_are_never_overwritten(prepared, tmp_path):
    work = tmp_path / "again"
    work.mkdir()
    (work / "out").mkdir()
    (work / "out" / "events.jsonl").write_text("{}\n")
    (work / "run.json").write_text(json.dumps(config("pytorch")))
    proc = subprocess.run(
        [sys.executable, "-m", "runner.workload", "run", "--config", str(work / "run.json"),
         "--data", str(prepared), "--out", str(work / "out")],
        cwd=REPO, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert proc.returncode == 2 and "never overwritten" in proc.stderr
    assert (work / "out" / "events.jsonl").read_text() == "{}\n"


def test_the_config_the_host_writes_is_accepted():
    """runner.spec's planner output for the smoke experiment passes the workload's own reader."""
    from runner.spec.plan import plan_file
    from runner.spec.workload_config import workload_config
    from runner.workload.harness.config import parse_config
    from runner.workload.models import ModelConfig
    from runner.workload.optim import OptimConfig
    from runner.workload.schedule import ScheduleConfig

    plan = plan_file(REPO / "experiments" / "smoke.yaml")
    for run in plan.runs:
        doc = json.loads(json.dumps(workload_config(run)))
        cfg = parse_config(doc, Path("run.json"))
        assert cfg.run_id == run.id and cfg.framework == run.framework
        ModelConfig.from_dict(cfg.model)
        OptimConfig.from_dict(cfg.optimizer)
        ScheduleConfig.from_dict(cfg.schedule, total_epochs=cfg.train.epochs)


def test_an_exception_after_a_stop_signal_is_an_interruption():
    """A framework may re-raise the signal handler's exception as its own error type (TensorFlow
    does when the signal lands inside its C++ runtime): a stop signal decides the outcome."""
    from runner.workload.harness.run import Interrupted, StopRequest, classify

    assert classify(RuntimeError("cancelled"), None, StopRequest("SIGTERM")) == "interrupted"
    assert classify(RuntimeError("cancelled"), None, StopRequest()) == "error"
    assert classify(Interrupted("SIGTERM"), None, StopRequest()) == "interrupted"
    assert classify(KeyboardInterrupt(), None) == "interrupted"


def test_stop_signals_are_recorded_then_handlers_restored():
    from runner.workload.harness.run import Interrupted, stop_signals_raise

    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    with pytest.raises(Interrupted), stop_signals_raise() as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(1)  # the handler runs at the next bytecode boundary
    assert stop.signal_name == "SIGTERM"
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before
