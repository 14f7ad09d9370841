"""Figures for the inference comparison (issue 13, study 000's next step), side by side (not a test).

    python benchmarks/bench_quantize.py [--models simple_cnn resnet50] [--threads 1] [--train 2000]

Per model: one spec (synthetic CIFAR-10 in the official format, both frameworks), planned by the
real planner, each run's run.json from it (runner.spec.workload_config), and the real workload
(`python -m runner.workload run`) trains a few epochs, then measures `measurement.inference`:
fp32, bf16 and post-training int8 (torch.ao FX, x86 backend / TFLite full-integer), calibrated on
the same first N training images and timed on the same test inputs in both frameworks (the hashes
are checked here). Printed per framework and precision: ms per image (p50) at batch 1 and 32, the
speedup against fp32, the process CPU time per image of one call (p50; wall time far above it: the
process waited for a core), the serialized size and test accuracy, and the int8 accuracy drop.
Target: the int8 drop within 1 point of fp32 (issue 13's figure), and equal calibration / input
hashes across the frameworks.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

MODELS = {"simple_cnn": {"name": "simple_cnn"},
          "resnet50": {"name": "resnet50", "stem": "imagenet", "input_size": 32}}  # study 000's model
EPOCHS = {"simple_cnn": 6, "resnet50": 6}
# SGD at lr 0.05 left ResNet-50 (ImageNet stem at 32 px: 1x1 maps from layer4) at chance after 4 epochs
OPTIMIZER = {"simple_cnn": {"optimizer": "sgd", "lr": 0.05, "optimizer_params": {"momentum": 0.9}},
             "resnet50": {"optimizer": "adam", "lr": 0.001}}
TARGET_DROP = 0.01  # one point of accuracy


def spec(model: str, threads: int, train: int, test: int) -> dict[str, Any]:
    return {
        "name": f"bench-quantize-{model.replace('_', '-')}",
        "dataset": {"name": "cifar10", "synthetic": {"train_size": train, "test_size": test, "seed": 0}},
        "model": MODELS[model], "frameworks": ["pytorch", "tensorflow"],
        "recipe": {"epochs": EPOCHS[model], "batch_size": 64, **OPTIMIZER[model], "schedule": {"name": "cosine"},
                   "weight_decay": 5e-4, "augmentation": [{"op": "horizontal_flip", "p": 0.5}]},
        "measurement": {"warmup_steps": 3, "latency_iterations": 30,
                        "inference": {"precisions": ["fp32", "bf16", "int8"], "batch_sizes": [1, 32],
                                      "calibration_images": 256}},
        "resources": {"threads": threads},
    }


def run_model(model: str, args: argparse.Namespace, tmp: Path) -> dict[str, list[dict[str, Any]]]:
    import yaml

    from runner.data import prepare, write_synthetic
    from runner.spec.plan import plan_file
    from runner.spec.workload_config import workload_config

    path = tmp / f"{model}.yaml"
    path.write_text(yaml.safe_dump(spec(model, args.threads, args.train, args.test)))
    plan = plan_file(path)
    data = tmp / "prepared"
    if not data.exists():
        synth = write_synthetic("cifar10", tmp / "synth", train=args.train, test=args.test, seed=0)
        prepare(synth.folder, data)
    rows = {}
    for run in plan.runs:
        work = tmp / model / run.framework
        (work / "out").mkdir(parents=True)
        (work / "run.json").write_text(json.dumps(workload_config(run)))
        cmd = [sys.executable, "-m", "runner.workload", "run", "--config", str(work / "run.json"),
               "--data", str(data), "--out", str(work / "out")]
        proc = subprocess.run(cmd, cwd=REPO, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"{model} {run.framework}: exit {proc.returncode}\n{proc.stderr[-2000:]}")
        events = [json.loads(line) for line in (work / "out" / "events.jsonl").read_text().splitlines()]
        rows[run.framework] = [e for e in events if e["type"] == "inference"]
    return rows


def report(model: str, rows: dict[str, list[dict[str, Any]]]) -> list[str]:
    missed = []
    print(f"\n{model}: ms/image p50 at batch 1 and 32, speedup vs fp32, size, test accuracy")
    print(f"  {'framework':<11} {'precision':<9} {'b1 ms':>8} {'b32 ms':>8} {'x b1':>6} {'x b32':>6} "
          f"{'b1 cpu':>7} {'b32 cpu':>7} {'bytes':>11} {'test acc':>8} {'drop':>7}  runtime")
    for fw, events in rows.items():
        by = {(e["precision"], e["batch_size"]): e for e in events}
        for precision in ("fp32", "bf16", "int8"):
            b1, b32 = by[(precision, 1)], by[(precision, 32)]
            if b1.get("error"):
                print(f"  {fw:<11} {precision:<9} failed: {b1['error']}")
                missed.append(f"{model} {fw} {precision} failed")
                continue
            print(f"  {fw:<11} {precision:<9} {b1['per_image_p50_ms']:8.3f} {b32['per_image_p50_ms']:8.3f} "
                  f"{b1['speedup']:6.2f} {b32['speedup']:6.2f} {b1['cpu_p50_ms']:7.3f} "
                  f"{b32['cpu_p50_ms'] / 32:7.3f} {b1['model_bytes']:11,d} "
                  f"{100 * b1['test_accuracy']:7.2f}% {100 * b1['accuracy_drop']:+6.2f}  {b1['runtime']}")
            if precision == "int8" and b1["accuracy_drop"] > TARGET_DROP:
                missed.append(f"{model} {fw} int8 drop {100 * b1['accuracy_drop']:.2f} points > 1")
    for key in ("calibration_sha256", "inputs_sha256"):
        values = {e[key] for events in rows.values() for e in events if e["precision"] == "int8"
                  and e["batch_size"] == 32}
        same = len(values) == 1
        print(f"  {key}: {'equal in both frameworks' if same else 'DIFFERENT'} ({next(iter(values))[:16]}...)")
        if not same:
            missed.append(f"{model} {key} differs")
    return missed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--train", type=int, default=2000)
    parser.add_argument("--test", type=int, default=500)
    args = parser.parse_args()
    missed = []
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models:
            missed += report(model, run_model(model, args, Path(tmp)))
    print(f"\ntarget: int8 accuracy drop <= {100 * TARGET_DROP:.0f} point; calibration and inputs equal across "
          "frameworks")
    print("missed: " + "; ".join(missed) if missed else "all targets met")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
