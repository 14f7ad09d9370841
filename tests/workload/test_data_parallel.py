"""Data-parallel runs on CPU with 2 replicas (no GPU here: gloo stands in for NCCL, logical CPU
devices for GPUs; the cuda paths, NCCL and torch.nn.SyncBatchNorm, are not exercised).

What is proved: the shards of a global batch are exactly that batch; one data-parallel step (and
the next two, and the evaluation) equals one single-process step over the whole global batch, in
PyTorch (DistributedDataParallel under torchrun, gloo) and TensorFlow (MirroredStrategy over two
logical CPU devices), to 1e-5 relative, while half a batch in one process is far off (the check
can fail); with BatchNorm, PyTorch's synchronised BatchNorm (GlobalBatchNorm2d) equals one
process and per-replica BatchNorm does not; only the leader writes events; a replica that dies or
is stopped fails the run without a hang, and replicas do not outlive a killed launcher; a PyTorch
run.json asking for replicas outside torchrun is bad input; the engine's argv puts torchrun in
front of PyTorch's data-parallel runs, end to end through the local and the docker engine.
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

import numpy as np
import pytest

from runner.engine.launcher import workload_module
from runner.workload.events import read_events
from tests.helpers import REPO
from tests.reproduce.conftest import cpu_images, docker_client  # noqa: F401 - fixtures of the docker test
from tests.workload.test_harness_run import BASE_CONFIG

TIMEOUT_S = 300
REL_TOL = 1e-5  # float32 sums in another order (two halves then averaged): measured ~1e-7
GLOBAL_BATCH = 16


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    from runner.data import prepare, write_synthetic

    root = tmp_path_factory.mktemp("data")
    synth = write_synthetic("cifar10", root / "synth", train=160, test=40, seed=0)
    prepare(synth.folder, root / "prepared")
    return root / "prepared"


def dp_config(framework: str, replicas: int, batch: int = GLOBAL_BATCH, steps: int = 3, **train: object) -> dict:
    """AlexNet (CIFAR layout, small classifier, no BatchNorm, dropout 0): the replicas' math is exact."""
    cfg = copy.deepcopy(BASE_CONFIG)
    cfg.update(framework=framework, run_id=f"dp-{framework}-{replicas}")
    cfg["model"].update(name="alexnet", layout="cifar", classifier=[64, 64], dropout=0.0)
    cfg["train"].update(epochs=1, batch_size=batch, steps_per_epoch=steps, **train)
    cfg["measurement"].update(warmup_steps=1, latency_batch_sizes=[])
    cfg["parallel"] = {"mode": "data" if replicas > 1 else "none", "replicas": replicas, "global_batch": batch,
                       "per_replica_batch": batch // replicas, "lr_scaling": "none", "sync_batch_norm": False}
    return cfg


def start(cfg: dict, data: Path, work: Path) -> tuple[subprocess.Popen, Path]:
    work.mkdir(parents=True)
    (work / "run.json").write_text(json.dumps(cfg))
    out = work / "out"
    out.mkdir()
    argv = [sys.executable, *workload_module(cfg["framework"], cfg["parallel"]["replicas"]), "run",
            "--config", str(work / "run.json"), "--data", str(data), "--out", str(out)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True), out


def run(cfg: dict, data: Path, work: Path) -> tuple[int, str, Path]:
    proc, out = start(cfg, data, work)
    try:
        _, err = proc.communicate(timeout=TIMEOUT_S)
    finally:
        _kill_tree(proc)
    return proc.returncode, err, out


def events_of(out: Path) -> dict[str, list[dict]]:
    by: dict[str, list[dict]] = {}
    for e in read_events(out / "events.jsonl"):
        by.setdefault(e["type"], []).append(e)
    return by


def test_shards_concatenate_to_the_global_batch(prepared: Path):
    from runner.data.loader import BatchIterator
    from runner.data.prepared import load_prepared

    ds = load_prepared(prepared, verify="sizes")
    ops = [{"op": "random_crop", "padding": 4}, {"op": "horizontal_flip", "p": 0.5}]
    mean, std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
    for split, batch, replicas in (("train", 16, 2), ("train", 15, 3), ("test", 16, 3)):  # test: partial last
        whole = list(BatchIterator(ds, split, batch, 7, 1, ops, mean, std))
        shards = [list(BatchIterator(ds, split, batch, 7, 1, ops, mean, std, shard=(r, replicas), prefetch=1))
                  for r in range(replicas)]
        assert all(len(s) == len(whole) for s in shards)
        for b, (x, y) in enumerate(whole):
            assert np.array_equal(np.concatenate([s[b][0] for s in shards]), x)
            assert np.array_equal(np.concatenate([s[b][1] for s in shards]), y)
        sizes = {len(s[0][1]) for s in shards}
        assert sizes == ({batch // replicas} if batch % replicas == 0 else {batch // replicas, batch // replicas + 1})
    with pytest.raises(Exception, match="shard"):
        BatchIterator(ds, "train", 16, 0, 0, [], mean, std, shard=(2, 2))


@pytest.mark.parametrize("framework", ["pytorch", "tensorflow"])
def test_two_replicas_equal_one_process_over_the_global_batch(framework: str, prepared: Path, tmp_path: Path):
    pytest.importorskip({"pytorch": "torch", "tensorflow": "tensorflow"}[framework])
    results = {}
    for name, cfg in (("dp", dp_config(framework, 2)), ("single", dp_config(framework, 1)),
                      ("half", dp_config(framework, 1, batch=GLOBAL_BATCH // 2))):
        code, err, out = run(cfg, prepared, tmp_path / name)
        assert code == 0, err[-3000:]
        results[name] = (events_of(out), out)
    (dp, dp_out), (single, _), (half, _) = results["dp"], results["single"], results["half"]
    assert sorted(p.name for p in dp_out.iterdir()) == ["events.jsonl", "result.json"]  # the leader's only
    dp_loss = np.array([s["loss"] for s in dp["step"]])
    one_loss = np.array([s["loss"] for s in single["step"]])
    assert len(dp_loss) == 3 and np.ptp(one_loss) > 1e-3  # the steps change the model
    # step 1's loss is the same images' loss; steps 2 and 3 follow the updates: equal updates
    np.testing.assert_allclose(dp_loss, one_loss, rtol=REL_TOL, atol=0)
    assert not np.allclose(np.array([s["loss"] for s in half["step"]]), one_loss, rtol=REL_TOL * 100)
    assert [s["batch_size"] for s in dp["step"]] == [GLOBAL_BATCH] * 3  # global images per step
    (dp_eval,), (one_eval,) = dp["eval"], single["eval"]
    assert dp_eval["images"] == one_eval["images"] == 40
    assert dp_eval["test_accuracy"] == one_eval["test_accuracy"]
    assert dp_eval["test_loss"] == pytest.approx(one_eval["test_loss"], rel=REL_TOL)
    parallel = dp["run_start"][0]["settings"]["parallel"]
    assert parallel["replicas"] == 2 and parallel["per_replica_batch"] == GLOBAL_BATCH // 2
    settings = dp["run_start"][0]["settings"]
    threads = dp["run_start"][0]["settings"]["intra_op_threads"]
    if framework == "pytorch":
        assert (parallel["launcher"], parallel["wrapper"], parallel["backend"]) == (
            "torchrun", "DistributedDataParallel", "gloo")
        # no per-forward buffer broadcast: one blocking collective per step fewer (torch_harness.DDP_OPTIONS)
        assert parallel["ddp"] == {"broadcast_buffers": False, "gradient_as_bucket_view": True}
        assert threads == single["run_start"][0]["settings"]["intra_op_threads"]  # per replica process
    else:
        assert parallel["wrapper"] == "tf.distribute.MirroredStrategy"
        assert [d.split("/")[-1] for d in parallel["devices"]] == ["device:CPU:0", "device:CPU:1"]
        # one process for both replicas: an inter-op thread each (they run side by side), which
        # runs its replica's kernels; at one thread per replica no intra-op pool beside them
        assert single["run_start"][0]["settings"]["intra_op_threads"] == 1
        assert (settings["inter_op_threads"], threads) == (2, 1)
    assert "parallel" not in single["run_start"][0]["settings"]


def test_linear_lr_scaling_takes_effect(prepared: Path, tmp_path: Path):
    pytest.importorskip("tensorflow")
    cfg = dp_config("tensorflow", 2, steps=2)
    cfg["parallel"]["lr_scaling"] = "linear"
    code, err, out = run(cfg, prepared, tmp_path / "linear")
    assert code == 0, err[-3000:]
    events = events_of(out)
    assert [s["lr"] for s in events["step"]] == pytest.approx([2 * cfg["optimizer"]["lr"]] * 2)
    assert events["run_start"][0]["settings"]["parallel"]["lr_factor"] == 2.0


def _rank_pid(launcher_pid: int, rank: int, timeout_s: float = 60) -> int:
    """The pid of torchrun's worker with RANK=rank (torchrun starts each in its own session)."""
    import psutil

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for child in psutil.Process(launcher_pid).children(recursive=True):
            try:
                if child.environ().get("RANK") == str(rank):
                    return child.pid
            except psutil.Error:
                continue
        time.sleep(0.2)
    raise AssertionError(f"no rank {rank} worker appeared")


def _kill_tree(proc: subprocess.Popen) -> None:
    import psutil

    try:
        family = [*psutil.Process(proc.pid).children(recursive=True), psutil.Process(proc.pid)]
    except psutil.Error:
        return
    for p in family:
        try:
            p.kill()
        except psutil.Error:
            pass


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_a_failing_replica_fails_the_run(sig: signal.Signals, prepared: Path, tmp_path: Path):
    """Replica 1 dies (SIGKILL: nothing recorded) or is stopped (SIGTERM: it reports) while training."""
    pytest.importorskip("torch")
    cfg = dp_config("pytorch", 2, steps=10_000)
    cfg["train"]["epochs"] = 50
    proc, out = start(cfg, prepared, tmp_path / "w")
    try:
        worker = _rank_pid(proc.pid, 1)
        deadline = time.monotonic() + 120
        while not (out / "events.jsonl").exists() or b'"type":"step"' not in (out / "events.jsonl").read_bytes():
            assert time.monotonic() < deadline and proc.poll() is None, "no step before the deadline"
            time.sleep(0.2)
        os.kill(worker, sig)
        t0 = time.monotonic()
        _, err = proc.communicate(timeout=90)  # never a hang: torchrun stops the other replica
        took = time.monotonic() - t0
    finally:
        _kill_tree(proc)
    assert proc.returncode != 0, err[-2000:]
    assert took < 60
    end = events_of(out)["run_end"][-1]
    assert end["status"] == "failed"
    result = json.loads((out / "result.json").read_text())
    assert result["status"] == "failed" and result["reason"] == end["reason"]
    if sig is signal.SIGTERM:  # the replica reported: the leader's record names it
        assert proc.returncode == 3
        assert end["reason"] == "interrupted" and end["error"].startswith("replica 1 failed"), end
    else:
        assert end["reason"] in ("interrupted", "error"), end


def test_replicas_die_with_a_killed_launcher(prepared: Path, tmp_path: Path):
    """The engine SIGKILLs a launcher that ignores SIGTERM too long: its replicas (each in its own
    session, out of reach of the engine's process-group signal) must not keep running."""
    import psutil

    pytest.importorskip("torch")
    cfg = dp_config("pytorch", 2, steps=10_000)
    cfg["train"]["epochs"] = 50
    proc, out = start(cfg, prepared, tmp_path / "w")
    workers: list = []
    try:
        workers = [psutil.Process(_rank_pid(proc.pid, r)) for r in (0, 1)]
        deadline = time.monotonic() + 120
        while not (out / "events.jsonl").exists() or b'"type":"step"' not in (out / "events.jsonl").read_bytes():
            assert time.monotonic() < deadline and proc.poll() is None, "no step before the deadline"
            time.sleep(0.2)
        proc.kill()
        proc.wait(timeout=10)
        gone, alive = psutil.wait_procs(workers, timeout=30)
    finally:
        _kill_tree(proc)
        for w in workers:
            try:
                w.kill()
            except psutil.Error:
                pass
    assert alive == [], f"replicas outlived their launcher: {alive}"


def test_pytorch_replicas_outside_torchrun_are_bad_input(prepared: Path, tmp_path: Path):
    pytest.importorskip("torch")
    cfg = dp_config("pytorch", 2)
    work = tmp_path / "w"
    work.mkdir()
    (work / "run.json").write_text(json.dumps(cfg))
    (work / "out").mkdir()
    proc = subprocess.run([sys.executable, "-m", "runner.workload", "run", "--config", str(work / "run.json"),
                           "--data", str(prepared), "--out", str(work / "out")], cwd=REPO, capture_output=True,
                          text=True, timeout=TIMEOUT_S)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "parallel.replicas" in proc.stderr
    assert "torchrun" in proc.stderr
    assert list((work / "out").iterdir()) == []


def test_engine_argv_puts_torchrun_in_front_for_pytorch_only():
    from runner.engine.base import RunRequest

    def argv(framework: str, replicas: int) -> list[str]:
        request = RunRequest("r", "b", framework, "cpu", Path("c"), Path("d"), Path("o"), Path("k"), replicas=replicas)
        return request.argv("C", "D", "O")

    tail = ["-m", "runner.workload", "run", "--config", "C", "--data", "D", "--out", "O"]
    assert argv("pytorch", 1) == tail
    assert argv("tensorflow", 2) == tail  # MirroredStrategy: one process
    torch_argv = argv("pytorch", 4)
    assert torch_argv[:2] == ["-m", "runner.workload.torchrun"] and torch_argv[-len(tail):] == tail
    assert torch_argv[torch_argv.index("--nproc-per-node") + 1] == "4"


def test_launcher_exit_code_is_the_workloads():
    from runner.workload.torchrun import exit_code

    assert exit_code([0, 3]) == 3
    assert exit_code([2, 3]) == 2
    assert exit_code([-9]) == 137
    assert exit_code([1]) == 1


SPEC = """\
name: dp-e2e
dataset: {name: cifar10, synthetic: {train_size: 128, test_size: 32}}
model: {name: simple_cnn}
frameworks: FRAMEWORKS
recipe: {epochs: 1, batch_size: 16, optimizer: sgd, lr: 0.05, steps_per_epoch: 3,
         data_parallel: {lr_scaling: linear}}
measurement: {warmup_steps: 1}
resources: {parallel: data, replicas: 2, threads: 1}
"""


def reproduce(tmp_path: Path, engine: str, frameworks: list[str]) -> Path:
    spec = tmp_path / "dp.yaml"
    spec.write_text(SPEC.replace("FRAMEWORKS", json.dumps(frameworks)))
    argv = [sys.executable, "-m", "runner.cli", "reproduce", str(spec), "--engine", engine, "--build", "never"]
    proc = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (bundle,) = [p for p in (tmp_path / "results" / "dp-e2e").iterdir() if not p.name.endswith(".partial")]
    return bundle


def check_bundle(bundle: Path, frameworks: list[str]) -> None:
    import pyarrow.parquet as pq

    runs = pq.read_table(bundle / "tables" / "runs.parquet").to_pylist()
    assert sorted(r["framework"] for r in runs) == sorted(frameworks)
    assert {r["status"] for r in runs} == {"ok"}, runs
    for run_dir in (bundle / "runs").iterdir():
        parallel = json.loads((run_dir / "run.json").read_text())["parallel"]
        assert parallel == {"mode": "data", "replicas": 2, "global_batch": 16, "per_replica_batch": 8,
                            "lr_scaling": "linear", "sync_batch_norm": False}
        events = read_events(run_dir / "events.jsonl")
        settings = next(e for e in events if e["type"] == "run_start")["settings"]["parallel"]
        assert settings["replicas"] == 2 and settings["lr_factor"] == 2.0
        steps = [e for e in events if e["type"] == "step"]
        assert [s["batch_size"] for s in steps] == [16, 16, 16] and steps[0]["lr"] == pytest.approx(0.1)


def test_reproduce_local_engine_end_to_end(tmp_path: Path):
    """`parallel: data, replicas: 2` on CPU through the local engine: both frameworks, one row each."""
    frameworks = ["pytorch", "tensorflow"]
    check_bundle(reproduce(tmp_path, "local", frameworks), frameworks)


@pytest.mark.docker
@pytest.mark.usefixtures("cpu_images")
def test_reproduce_docker_engine_torchrun_in_the_locked_down_container(tmp_path: Path):
    """torchrun's rendezvous and gloo on loopback in a container without network, read-only, non-root."""
    check_bundle(reproduce(tmp_path, "docker", ["pytorch"]), ["pytorch"])


def test_pytorch_synchronised_batch_norm_equals_one_process(prepared: Path, tmp_path: Path):
    """The small CNN (BatchNorm after every conv) with sync_batch_norm on 2 CPU replicas
    (GlobalBatchNorm2d over gloo) equals one process over the global batch; per-replica
    BatchNorm (each slice's statistics) does not."""
    pytest.importorskip("torch")
    losses = {}
    for name, replicas, sync in (("sync", 2, True), ("per-replica", 2, False), ("single", 1, False)):
        cfg = dp_config("pytorch", replicas)
        cfg["model"].update(name="simple_cnn", layout=None, classifier=None)
        cfg["parallel"]["sync_batch_norm"] = sync
        code, err, out = run(cfg, prepared, tmp_path / name)
        assert code == 0, err[-3000:]
        events = events_of(out)
        losses[name] = np.array([s["loss"] for s in events["step"]] + [events["eval"][0]["test_loss"]])
        if sync:
            assert events["run_start"][0]["settings"]["parallel"]["sync_batch_norm"] is True
    # E[x^2] - E[x]^2 in float32 against PyTorch's own variance: measured 2.5e-7 relative
    np.testing.assert_allclose(losses["sync"], losses["single"], rtol=1e-4, atol=0)
    assert not np.allclose(losses["per-replica"], losses["single"], rtol=1e-3, atol=0)


def test_plan_cuda_replicas_follow_gpus(tmp_path: Path):
    """On cuda a replica per GPU: gpus 2 -> 2 replicas in run.json; replicas that disagree, or gpus 2
    without parallel: data, are refused at plan time naming the field (nothing runs: no GPU here)."""
    import yaml

    from runner.errors import SpecError
    from runner.spec.plan import plan_file
    from runner.spec.workload_config import workload_config

    def plan(resources: dict) -> list[dict]:
        spec = {"name": "dp", "dataset": {"name": "cifar10", "synthetic": {"train_size": 64, "test_size": 32}},
                "model": {"name": "simple_cnn"}, "frameworks": ["pytorch", "tensorflow"], "variant": "cuda",
                "recipe": {"epochs": 1, "batch_size": 8, "optimizer": "sgd", "lr": 0.01}, "resources": resources}
        (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
        return [workload_config(r) for r in plan_file(tmp_path / "spec.yaml").runs]

    docs = plan({"gpus": 2, "parallel": "data"})
    assert {(d["parallel"]["replicas"], d["parallel"]["per_replica_batch"]) for d in docs} == {(2, 4)}
    assert plan({"gpus": 1})[0]["parallel"]["mode"] == "none"
    for resources, field in (({"gpus": 2, "parallel": "data", "replicas": 3}, "resources.replicas"),
                             ({"gpus": 2}, "resources.gpus"), ({"gpus": 3, "parallel": "data"}, "recipe.batch_size")):
        with pytest.raises(SpecError) as e:
            plan(resources)
        assert e.value.field == field, e.value.describe()


def test_tensorflow_cpu_replicas_get_as_many_threads_as_pytorch_replica_processes():
    """An inter-op thread per replica runs its kernels; the intra-op pool holds the rest."""
    pytest.importorskip("tensorflow")
    from runner.workload.harness.tf_harness import cpu_replica_threads

    assert cpu_replica_threads(1, 2) == (1, 2)  # kernels inline in each replica's thread
    assert cpu_replica_threads(1, 4) == (1, 4)
    assert cpu_replica_threads(2, 2) == (2, 2)  # 2 callers + a pool of 2 = 2 processes x 2 threads
    assert cpu_replica_threads(4, 2) == (6, 2)
