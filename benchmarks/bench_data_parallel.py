"""Data-parallel on CPU, 2 replicas: throughput per replica vs one process at the same per-replica batch.

    python benchmarks/bench_data_parallel.py [--batch 64] [--steps 30] [--rounds 3] [--frameworks pytorch tensorflow]

Both sides are the real workload (`python -m runner.workload run`, events and synchronised clocks
included) on the small CNN, synthetic CIFAR-10, one intra-op thread per replica, compute only
(`synthetic_compute`: one device-resident batch; `--real-data` reads and augments batches):

- single: one process, batch B;
- data parallel: 2 replicas, global batch 2B (B per replica). PyTorch: torchrun + DDP over gloo
  (two processes, one thread each); TensorFlow: MirroredStrategy over two logical CPU devices in
  one process (2 intra-op threads: one per replica).

Per-replica throughput = B / the leader's median step wall time (the gap between consecutive
step events: data, compute, gradient all-reduce and the harness's own work). The sides alternate,
order flipped each round; the ratio is the median of the per-round ratios. Target >= 0.9.

Beside it, what the machine itself allows: two INDEPENDENT single processes at once (no
communication) vs one alone, and data parallel vs those two: the first is the hardware's share
(cores, memory bandwidth, a VM's vCPUs), the second what data parallelism itself costs. Needs two
free cores: on a shared machine the replicas compete with the neighbours, and that shows in the
figure (the host's load average is printed beside it).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

TARGET = 0.9
MODULES = {"pytorch": "torch", "tensorflow": "tensorflow"}
CONFIG = {
    "schema": 1, "run_id": "bench-dp", "experiment": "bench", "sweep": "data-parallel", "framework": "pytorch",
    "variant": "cpu", "seed": 0, "repeat": 0,
    "model": {"name": "simple_cnn", "num_classes": 10, "input_size": 32, "stem": None, "layout": None,
              "bn_momentum": 0.1, "bn_epsilon": 1e-5, "dropout": 0.0, "init": "he_normal_fan_out",
              "zero_init_residual": False, "classifier": None, "freeze": []},
    "optimizer": {"name": "sgd", "lr": 0.01, "momentum": 0.9, "nesterov": False, "dampening": 0.0,
                  "beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8, "rho": 0.9, "centered": False,
                  "amsgrad": False, "weight_decay": 0.0, "weight_decay_mode": "l2"},
    "schedule": {"name": "constant", "step_size": None, "gamma": 0.1, "milestones": [], "warmup_epochs": 0,
                 "min_lr": 0.0},
    "train": {"epochs": 1, "batch_size": 64, "precision": "fp32", "compile": False, "deterministic": False,
              "label_smoothing": 0.0, "drop_last": True, "steps_per_epoch": 30, "threads": 1},
    "data": {"name": "cifar10", "num_classes": 10,
             "augmentation": [{"op": "random_crop", "padding": 4}, {"op": "horizontal_flip", "p": 0.5}],
             "mean": [0.4914, 0.4822, 0.4465], "std": [0.247, 0.2435, 0.2616]},
    "measurement": {"warmup_steps": 5, "eval_every_epochs": 1, "latency_batch_sizes": [], "latency_iterations": 1,
                    "target_accuracy": None, "synthetic_compute": True},
}


def config(framework: str, replicas: int, batch: int, steps: int, real_data: bool = False) -> dict:
    cfg = copy.deepcopy(CONFIG)
    cfg["measurement"]["synthetic_compute"] = not real_data
    glob = batch * replicas
    cfg["framework"], cfg["run_id"] = framework, f"bench-{framework}-{replicas}"
    cfg["train"].update(batch_size=glob, steps_per_epoch=steps)
    if framework == "tensorflow" and replicas > 1:
        cfg["train"]["threads"] = replicas  # one process: its intra-op pool serves every replica
    cfg["parallel"] = {"mode": "data" if replicas > 1 else "none", "replicas": replicas, "global_batch": glob,
                       "per_replica_batch": batch, "lr_scaling": "none", "sync_batch_norm": False}
    return cfg


def measure(cfg: dict, data: Path, work: Path, copies: int = 1) -> float:
    """Per-replica images/s: per-replica batch / median gap between the leader's timed step events.
    `copies` > 1: that many independent runs at once (no communication), their mean."""
    from runner.engine.launcher import workload_module

    procs = []
    for i in range(copies):
        w = work / str(i)
        w.mkdir(parents=True)
        (w / "run.json").write_text(json.dumps(cfg))
        (w / "out").mkdir()
        argv = [sys.executable, *workload_module(cfg["framework"], cfg["parallel"]["replicas"]), "run",
                "--config", str(w / "run.json"), "--data", str(data), "--out", str(w / "out")]
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(REPO)}
        procs.append(subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                      text=True))
    rates = []
    for i, proc in enumerate(procs):
        _, err = proc.communicate(timeout=900)
        if proc.returncode != 0:
            raise RuntimeError(f"{cfg['run_id']} exited {proc.returncode}: {err[-2000:]}")
        rates.append(_rate(cfg, work / str(i)))
    return float(np.mean(rates))


def _rate(cfg: dict, work: Path) -> float:
    from runner.workload.events import read_events

    steps = [e for e in read_events(work / "out" / "events.jsonl") if e["type"] == "step"]
    times = np.diff([e["t"] for e in steps])[cfg["measurement"]["warmup_steps"]:]
    if len(times) < 3:
        raise RuntimeError(f"{cfg['run_id']}: only {len(steps)} steps, too few to time")
    return cfg["parallel"]["per_replica_batch"] / float(np.median(times))


def prepared_data(root: Path, train: int) -> Path:
    from runner.data import prepare, write_synthetic

    synth = write_synthetic("cifar10", root / "synth", train=train, test=64, seed=0)
    prepare(synth.folder, root / "prepared")
    return root / "prepared"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, default=64, help="per-replica batch (the single process's batch)")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--real-data", action="store_true", help="read and augment batches (default: compute only)")
    p.add_argument("--frameworks", nargs="+", default=["pytorch", "tensorflow"], choices=sorted(MODULES))
    args = p.parse_args()
    rows, missed = [], False
    with tempfile.TemporaryDirectory(prefix="bench-dp-") as tmp:
        data = prepared_data(Path(tmp), train=2 * args.batch * args.steps)  # every step a full global batch
        for fw in args.frameworks:
            ratios, single, dp, pair = [], [], [], []
            for r in range(args.rounds):
                sides = [("single", 1, 1), ("dp", 2, 1), ("pair", 1, 2)]
                got = {}
                for name, replicas, copies in (sides if r % 2 == 0 else sides[::-1]):
                    cfg = config(fw, replicas, args.batch, args.steps, args.real_data)
                    got[name] = measure(cfg, data, Path(tmp) / f"{fw}-{r}-{name}", copies)
                single.append(got["single"])
                dp.append(got["dp"])
                pair.append(got["pair"])
                ratios.append(got["dp"] / got["single"])
            ratio = statistics.median(ratios)
            missed |= ratio < TARGET
            rows.append((fw, statistics.median(single), statistics.median(dp), ratio,
                         statistics.median(pair) / statistics.median(single),
                         statistics.median(dp) / statistics.median(pair), " ".join(f"{x:.2f}" for x in ratios)))
    print(f"data parallel on CPU, 2 replicas, small CNN, {args.batch} images per replica, "
          f"{'real data' if args.real_data else 'synthetic compute'}, "
          f"{args.steps} steps x {args.rounds} rounds, load average {os.getloadavg()[0]:.1f}, "
          f"{os.cpu_count()} CPUs")
    print(f"{'framework':<11} {'single img/s':>13} {'per replica img/s':>18} {'ratio':>6}  target   "
          f"{'2 independent / single':>23} {'dp / 2 independent':>19}  rounds")
    for fw, s, d, ratio, hw, own, each in rows:
        print(f"{fw:<11} {s:>13.1f} {d:>18.1f} {ratio:>6.3f}  >= {TARGET}  {hw:>23.3f} {own:>19.3f}  {each}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
