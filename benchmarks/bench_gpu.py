"""GPU speed (issue 10, item 5): runner's harness vs a bare PyTorch training loop of the same model (not a test).

    python benchmarks/bench_gpu.py [--steps 50] [--warmup 10] [--rounds 1] [--json OUT.json] [--keep DIR]
    python benchmarks/bench_gpu.py --device cpu --batches 8 --steps 6 --warmup 2 --imagenet-batch 2   # a check here

The model: ResNet-50 with the ImageNet stem on 32x32 inputs, CIFAR-100's 100 classes, SGD with
momentum, built by runner's own model code (build_arch + torch_impl.build + init_weights). Every
configuration is planned from a spec by the real planner and each run's run.json comes from
`runner.spec.workload_config`; the bare loop reads the SAME run.json (model, optimizer,
precision, batch) so both sides train the same network.

- harness: `python -m runner.workload run --config run.json` (a fresh process per run), one epoch
  of `warmup + steps` steps; its figure is result.json's `images_per_s` (timed steps only, host
  clock from the first timed step to the read after the last one, so it covers the device work).
  Two modes: compute-only (`measurement.synthetic_compute: true`: one device-resident batch)
  and real data (synthetic CIFAR-100 in the official format, prepared, read and augmented with
  random crop + flip by the harness's own data path, plus an evaluation after the timed epoch);
- bare: the loop a user would write (zero_grad, autocast forward, loss, backward, step) on a
  device-resident random batch, no per-step synchronisation, timed by the host clock around all
  timed steps with one synchronisation at each end; all bare configurations in one process.

Rows: {compute-only, real data} x {fp32, amp_bf16} x batch {128, 512}, plus the ImageNet-size
row: ResNet-50 at 224x224 (a `resize` op in the spec; never applied in compute-only mode),
amp_bf16, `recipe.channels_last: true`, batch 256, compute-only. The bare figure of a
(precision, batch) is the reference for both modes (the issue's table: the real data path has to
hide the data entirely). The ImageNet row's bare loop uses the memory layout the harness reports
in `settings.layout` (channels_last when it says so, else NCHW); the bare figure in the other
layout is printed beside it. With `--rounds R` the sides
alternate (bare first in even rounds) and a row's ratio is the median of its per-round ratios.

Targets: harness / bare >= 0.97 compute-only, >= 0.95 real data; exit 1 if one is missed (or not
measured within `--budget-s`), 0 otherwise. fp32 means fp32 on both sides (TF32 off), cuDNN
benchmark on, as the harness sets them. Without a CUDA device it prints one line and exits 0,
unless `--device cpu`: the same comparison on CPU with the sizes given by the flags (`--threads`
intra-op threads on both sides), so the script itself can be checked on any machine.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

TARGETS = {"compute": 0.97, "real": 0.95}
MODE_NAMES = {"compute": "compute-only", "real": "real data"}
REAL_OPS = [{"op": "random_crop", "padding": 4}, {"op": "horizontal_flip", "p": 0.5}]
GPU_DEFAULTS = {"batches": [128, 512], "steps": 50, "warmup": 10, "imagenet_batch": 256}
CPU_DEFAULTS = {"batches": [8], "steps": 6, "warmup": 2, "imagenet_batch": 2}
TEST_IMAGES = 256


@dataclass
class Row:
    key: str
    mode: str  # compute | real
    precision: str
    batch: int
    size: int
    config: dict[str, Any]
    harness: list[dict[str, Any]] = field(default_factory=list)  # one per round
    failures: list[str] = field(default_factory=list)

    @property
    def bare_key(self) -> str:
        return f"{self.precision}-b{self.batch}-{self.size}px"


# -- planning: specs -> the planner -> run.json ------------------------------------------------------
def spec(args: argparse.Namespace, mode: str, size: int, precisions: list[str], batches: list[int],
         train_images: int, channels_last: bool = False) -> dict[str, Any]:
    ops = list(REAL_OPS) + ([{"op": "resize", "size": size, "method": "bilinear"}] if size != 32 else [])
    cuda = args.device == "cuda"
    return {
        "name": f"bench-gpu-{mode}-{size}px",
        "dataset": {"name": "cifar100", "synthetic": {"train_size": train_images, "test_size": TEST_IMAGES,
                                                      "seed": 0}},
        "model": {"name": args.model, **({"stem": "imagenet"} if args.model == "resnet50" else {}),
                  "input_size": size},
        "frameworks": ["pytorch"],
        "variant": "cuda" if cuda else "cpu",
        "recipe": {"epochs": 1, "batch_size": batches[0], "optimizer": "sgd", "lr": 0.01,
                   "optimizer_params": {"momentum": 0.9}, "weight_decay": 5e-4, "precision": precisions[0],
                   "augmentation": ops, "drop_last": True, "steps_per_epoch": args.warmup + args.steps,
                   **({"channels_last": True} if channels_last else {})},
        "sweeps": [{"name": "grid", "grid": {"precision": precisions, "batch_size": batches}}],
        "measurement": {"warmup_steps": args.warmup, "synthetic_compute": mode == "compute"},
        "resources": {"gpus": 1} if cuda else {"threads": args.threads},
    }


def plan_rows(args: argparse.Namespace, tmp: Path, train_images: int) -> list[Row]:
    import yaml

    from runner.spec.plan import plan_file
    from runner.spec.workload_config import workload_config

    groups = [(mode, 32, args.precisions, args.batches, False) for mode in args.modes]
    if args.imagenet_batch:  # the ImageNet-size figure: bf16, channels_last, compute-only
        groups.append(("compute", args.imagenet_size, ["amp_bf16"], [args.imagenet_batch], True))
    rows = []
    for mode, size, precisions, batches, channels_last in groups:
        path = tmp / f"spec-{mode}-{size}.yaml"
        path.write_text(yaml.safe_dump(spec(args, mode, size, precisions, batches, train_images, channels_last)))
        for run in plan_file(path).runs:
            cfg = workload_config(run)
            precision, batch = cfg["train"]["precision"], cfg["train"]["batch_size"]
            label = "ImageNet-size " if size != 32 else ""
            rows.append(Row(f"{label}{MODE_NAMES[mode]} {precision} b{batch} {size}px", mode, precision, batch,
                            size, cfg))
    return rows


def prepared_data(root: Path, train: int) -> Path:
    from runner.data import prepare, write_synthetic

    synth = write_synthetic("cifar100", root / "synth", train=train, test=TEST_IMAGES, seed=0)
    prepare(synth.folder, root / "prepared")
    shutil.rmtree(root / "synth")
    return root / "prepared"


# -- the harness side ------------------------------------------------------------------------------
def run_harness(row: Row, data: Path, work: Path) -> dict[str, Any]:
    from runner.workload.events import read_events

    work.mkdir(parents=True)
    (work / "run.json").write_text(json.dumps(row.config, indent=1))
    (work / "out").mkdir()
    cmd = [sys.executable, "-m", "runner.workload", "run", "--config", str(work / "run.json"),
           "--data", str(data), "--out", str(work / "out")]
    path = [str(REPO)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    wall = time.perf_counter() - started
    (work / "stderr.txt").write_text(proc.stderr)
    result_path = work / "out" / "result.json"
    result = json.loads(result_path.read_text()) if result_path.exists() else {}
    if proc.returncode != 0 or result.get("status") != "ok":
        tail = (result.get("error") or result.get("reason") or proc.stderr[-1500:] or "no result")
        raise RuntimeError(f"harness run '{row.key}' exited {proc.returncode}: {tail}")
    steps = [e for e in read_events(work / "out" / "events.jsonl") if e["type"] == "step" and not e["warmup"]]
    settings = result.get("settings") or {}
    memory = result.get("memory") or {}
    return {"images_per_s": result["images_per_s"], "wall_s": wall,
            "data_ms": 1000 * statistics.median(e["data_time_s"] for e in steps),
            "compute_ms": 1000 * statistics.median(e["compute_time_s"] for e in steps),
            "peak_device_bytes": memory.get("peak_device_bytes"),
            "warmup_peak_device_bytes": memory.get("warmup_peak_device_bytes"),
            "layout": settings.get("layout"), "execution": settings.get("execution"),
            "step_timing": settings.get("step_timing"), "read_every_steps": settings.get("read_every_steps")}


# -- the bare side (a subprocess: --part bare) -----------------------------------------------------
def bare_loop(cfg: dict[str, Any], device: str, warmup: int, steps: int, channels_last: bool) -> dict[str, Any]:
    """The user's own loop on the run's model, optimizer, precision and batch; device-resident data."""
    import torch
    import torch.nn.functional as F

    from runner.workload.models import ModelConfig, build_arch, init_weights, torch_impl
    from runner.workload.optim import OptimConfig, torch_optim

    cuda = device == "cuda"
    dev = torch.device("cuda:0" if cuda else "cpu")
    arch = build_arch(ModelConfig.from_dict(cfg["model"]))
    model = torch_impl.build(arch, weights=init_weights(arch, cfg["seed"])).to(dev)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=layout)
    model.train()
    opt = torch_optim.build([p for p in model.parameters() if p.requires_grad],
                            OptimConfig.from_dict(cfg["optimizer"]))
    b, s = cfg["train"]["batch_size"], cfg["model"]["input_size"]
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(b, 3, s, s, generator=gen).to(dev).contiguous(memory_format=layout)
    y = torch.randint(0, cfg["model"]["num_classes"], (b,), generator=gen).to(dev)
    amp = {"amp_bf16": torch.bfloat16, "fp32": None}[cfg["train"]["precision"]]

    def step() -> torch.Tensor:
        opt.zero_grad(set_to_none=True)
        with torch.autocast(dev.type, dtype=amp, enabled=amp is not None):
            loss = F.cross_entropy(model(x).float(), y)
        loss.backward()
        opt.step()
        return loss

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize(dev)

    for _ in range(warmup):
        step()
    sync()
    if cuda:
        torch.cuda.reset_peak_memory_stats(dev)
    t0 = time.perf_counter()
    for _ in range(steps):
        loss = step()
    sync()
    elapsed = time.perf_counter() - t0
    out = {"images_per_s": steps * b / elapsed, "step_ms": 1000 * elapsed / steps, "loss": float(loss.item()),
           "peak_device_bytes": int(torch.cuda.max_memory_allocated(dev)) if cuda else None}
    return out  # the model and its optimizer are freed with this frame


def part_bare(jobs_path: Path, device: str, warmup: int, steps: int, threads: int | None) -> list[dict[str, Any]]:
    import torch

    if device == "cuda":
        torch.cuda.set_device(0)
        torch.backends.cudnn.benchmark = True  # the harness's setting for deterministic: false
        torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32, as in the harness
        torch.backends.cudnn.allow_tf32 = False
    elif threads is not None:
        torch.set_num_threads(threads)
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:
            pass
    torch.manual_seed(0)
    out = []
    for job in json.loads(jobs_path.read_text()):
        r = bare_loop(job["config"], device, warmup, steps, job["channels_last"])
        out.append({"bare_key": job["bare_key"], "channels_last": job["channels_last"], **r})
        gc.collect()
        if device == "cuda":
            torch.cuda.empty_cache()  # the next configuration starts from an empty cache, as a run does
    return out


def run_bare(jobs: list[dict[str, Any]], args: argparse.Namespace, work: Path) -> dict[tuple[str, bool], dict]:
    work.mkdir(parents=True)
    (work / "jobs.json").write_text(json.dumps(jobs))
    cmd = [sys.executable, __file__, "--part", "bare", "--jobs", str(work / "jobs.json"), "--device", args.device,
           "--warmup", str(args.warmup), "--steps", str(args.steps), "--threads", str(args.threads)]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=1800)
    (work / "stderr.txt").write_text(proc.stderr)
    if proc.returncode != 0:
        raise RuntimeError(f"bare loop exited {proc.returncode}: {proc.stderr[-1500:]}")
    return {(r["bare_key"], r["channels_last"]): r for r in json.loads(proc.stdout.strip().splitlines()[-1])}


# -- driver ----------------------------------------------------------------------------------------
def cuda_device() -> str | None:
    """The CUDA device's name, or None where PyTorch is missing or sees none."""
    try:
        import torch
    except ImportError:
        return None
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


BareRounds = dict[int, dict[tuple[str, bool], dict[str, Any]]]  # round -> (bare_key, channels_last) -> figures


class Stopped(Exception):
    """SIGTERM (the check script's hard time limit): report what was measured so far."""


def _stop(signum: int, frame: Any) -> None:
    raise Stopped(signal.Signals(signum).name)


def measure(rows: list[Row], args: argparse.Namespace, data: Path, tmp: Path, say: Any,
            started: float) -> BareRounds:
    """Alternate the sides for args.rounds rounds. A run that fails is recorded (a harness run on
    its row; both count as missed) and the others carry on; SIGTERM stops measuring (the running
    subprocess is killed) and what was measured is reported."""
    bare_rounds: BareRounds = {}
    try:
        _measure(rows, args, data, tmp, say, started, bare_rounds)
    except Stopped as exc:
        say(f"  stopped by {exc}: reporting what was measured")
    return bare_rounds


def _measure(rows: list[Row], args: argparse.Namespace, data: Path, tmp: Path, say: Any, started: float,
             bare_rounds: BareRounds) -> None:
    jobs, seen = [], set()
    for row in rows:
        for channels_last in ((False, True) if row.size != 32 else (False,)):
            if (row.bare_key, channels_last) not in seen:
                seen.add((row.bare_key, channels_last))
                jobs.append({"bare_key": row.bare_key, "channels_last": channels_last, "config": row.config})
    for r in range(args.rounds):
        for side in (("bare", "harness") if r % 2 == 0 else ("harness", "bare")):
            if side == "bare":
                if time.perf_counter() - started > args.budget_s:
                    say(f"  round {r}: bare loop skipped (time budget {args.budget_s:.0f} s spent)")
                    continue
                t = time.perf_counter()
                try:
                    bare_rounds[r] = run_bare(jobs, args, tmp / f"bare-{r}")
                except (RuntimeError, subprocess.TimeoutExpired) as exc:
                    say(f"  round {r}: bare loop FAILED: {exc}")
                    continue
                say(f"  round {r}: bare loop, {len(jobs)} configurations, {time.perf_counter() - t:.0f} s")
                continue
            for i, row in enumerate(rows):
                if time.perf_counter() - started > args.budget_s:
                    say(f"  round {r}: '{row.key}' not run (time budget {args.budget_s:.0f} s spent)")
                    continue
                try:
                    got = run_harness(row, data, tmp / f"harness-{r}-{i}")
                except (RuntimeError, subprocess.TimeoutExpired) as exc:
                    row.failures.append(str(exc))
                    say(f"  round {r}: harness {row.key}: FAILED: {exc}")
                    continue
                got["round"] = r
                row.harness.append(got)
                say(f"  round {r}: harness {row.key}: {got['images_per_s']:.0f} img/s "
                    f"(process {got['wall_s']:.0f} s)")


def report(rows: list[Row], bare_rounds: BareRounds, say: Any) -> tuple[list[dict], list[str]]:
    med = statistics.median
    table, missed = [], []
    say(f"{'configuration':<42} {'harness img/s':>13} {'bare img/s':>11} {'ratio':>6}  target  verdict  "
        f"{'data ms':>7} {'compute ms':>10} {'peak GB h/b':>12}  note")
    for row in rows:
        target = TARGETS[row.mode]
        layout_cl = any("channels_last" in str(h.get("layout") or "").lower() for h in row.harness)
        by_round = {r: b[(row.bare_key, layout_cl)] for r, b in bare_rounds.items() if (row.bare_key, layout_cl) in b}
        bares = list(by_round.values())
        if not row.harness or not bares:
            why = f"FAILED: {row.failures[-1]}" if row.failures else "not measured"
            missed.append(f"{row.key}: {why}")
            say(f"{row.key:<42} {why} (harness rounds {len(row.harness)}, bare rounds {len(bares)})")
            table.append({"row": row.key, "measured": False, "failures": row.failures})
            continue
        # round r's harness against round r's bare where both ran, else against the bare median
        bare_med = med(b["images_per_s"] for b in bares)
        ratios = [h["images_per_s"] / by_round[h["round"]]["images_per_s"] if h["round"] in by_round else
                  h["images_per_s"] / bare_med for h in row.harness]
        ratio = med(ratios)
        ok = ratio >= target
        if not ok:
            missed.append(f"{row.key}: {ratio:.3f} < {target}")
        if row.failures:
            missed.append(f"{row.key}: {len(row.failures)} harness run(s) failed: {row.failures[-1]}")
        h_med = med(h["images_per_s"] for h in row.harness)
        peak_h = row.harness[-1].get("peak_device_bytes")
        peak_b = bares[-1].get("peak_device_bytes")
        peak = "-" if peak_h is None or peak_b is None else f"{peak_h / 1e9:.2f}/{peak_b / 1e9:.2f}"
        note = ""
        if row.size != 32:
            other = [b[(row.bare_key, not layout_cl)]["images_per_s"] for b in bare_rounds.values()
                     if (row.bare_key, not layout_cl) in b]
            if other:
                note = f"bare {'NCHW' if layout_cl else 'channels_last'} {med(other):.0f} img/s; "
            note += f"harness layout {row.harness[-1].get('layout')}"
        shown = math.floor(ratio * 1000) / 1000  # rounded down: a FAIL never reads as the target itself
        say(f"{row.key:<42} {h_med:>13.0f} {bare_med:>11.0f} {shown:>6.3f}  >= {target:<4} "
            f"{'PASS' if ok else 'FAIL':<7}  {med(h['data_ms'] for h in row.harness):>7.2f} "
            f"{med(h['compute_ms'] for h in row.harness):>10.2f} {peak:>12}  {note}")
        table.append({"row": row.key, "measured": True, "mode": row.mode, "precision": row.precision,
                      "batch": row.batch, "size": row.size, "target": target, "ratio": ratio,
                      "ratios": ratios, "harness": row.harness, "bare": bares, "pass": ok,
                      "failures": row.failures})
    return table, missed


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda",
                   help="cpu: run the same comparison on CPU (small sizes) to check the script")
    p.add_argument("--model", default="resnet50", choices=("resnet50", "simple_cnn", "vgg16"))
    p.add_argument("--batches", type=int, nargs="+", help="GPU default 128 512; CPU default 8")
    p.add_argument("--precisions", nargs="+", default=["fp32", "amp_bf16"], choices=("fp32", "amp_bf16"))
    p.add_argument("--modes", nargs="+", default=["compute", "real"], choices=("compute", "real"))
    p.add_argument("--steps", type=int, help="timed steps per run (GPU default 50, CPU 6)")
    p.add_argument("--warmup", type=int, help="warm-up steps, not timed (GPU default 10, CPU 2)")
    p.add_argument("--imagenet-batch", type=int, help="the ImageNet-size row's batch (GPU 256, CPU 2); 0: no row")
    p.add_argument("--imagenet-size", type=int, default=224)
    p.add_argument("--rounds", type=int, default=1, help="alternating rounds (bare first in even rounds)")
    p.add_argument("--threads", type=int, default=1, help="CPU only: intra-op threads on both sides")
    p.add_argument("--budget-s", type=float, default=float("inf"),
                   help="start no new measurement this many seconds after the start (rows left unmeasured "
                        "count as missed); SIGTERM stops at once and reports what was measured")
    p.add_argument("--json", type=Path, help="write every figure here")
    p.add_argument("--keep", type=Path, help="copy each harness run's run.json, events and result here")
    p.add_argument("--part", choices=("bare",), help=argparse.SUPPRESS)
    p.add_argument("--jobs", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args()
    defaults = GPU_DEFAULTS if args.device == "cuda" else CPU_DEFAULTS
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.part == "bare":
        print(json.dumps(part_bare(args.jobs, args.device, args.warmup, args.steps,
                                   args.threads if args.device == "cpu" else None)))
        return 0

    if args.device == "cuda":
        name = cuda_device()
        if name is None:
            print("bench_gpu: skipped, no CUDA device visible to PyTorch (use --device cpu to run the same "
                  "comparison on CPU with small sizes)")
            return 0
        where = f"{name}, PyTorch {__import__('torch').__version__}"
    else:
        import torch

        where = f"CPU ({os.cpu_count()} CPUs, {args.threads} thread(s) per side), PyTorch {torch.__version__}"

    def say(line: str) -> None:
        print(line, flush=True)

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-gpu-") as tmp_name:
        tmp = Path(tmp_name)
        train = max(args.batches + [args.imagenet_batch]) * (args.warmup + args.steps)
        data = prepared_data(tmp, train)
        rows = plan_rows(args, tmp, train)
        say(f"bench_gpu: {where}; {args.model}, {len(rows)} configurations, {args.warmup} warm-up + "
            f"{args.steps} timed steps, {args.rounds} round(s); data {train} synthetic CIFAR-100 images "
            f"prepared in {time.perf_counter() - started:.0f} s")
        signal.signal(signal.SIGTERM, _stop)
        bare_rounds = measure(rows, args, data, tmp, say, started)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the report and the JSON are written whatever comes
        say("")
        say("harness = `python -m runner.workload run` (result.json images_per_s); bare = the user's loop on a "
            "device-resident batch, same run.json; ratio = harness / bare (median over rounds)")
        table, missed = report(rows, bare_rounds, say)
        if args.keep is not None:
            for d in sorted(tmp.glob("harness-*")):
                dest = args.keep / d.name
                dest.mkdir(parents=True, exist_ok=True)
                for f in ("run.json", "stderr.txt", "out/events.jsonl", "out/result.json"):
                    if (d / f).exists():
                        shutil.copy2(d / f, dest / Path(f).name)
    say(f"\ntargets: >= {TARGETS['compute']} compute-only, >= {TARGETS['real']} real data; "
        f"{time.perf_counter() - started:.0f} s in all")
    say("missed: " + "; ".join(missed) if missed else "all targets met")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"where": where, "args": {k: str(v) for k, v in vars(args).items()},
                                         "rows": table,
                                         "bare_rounds": {r: list(b.values()) for r, b in bare_rounds.items()},
                                         "missed": missed}, indent=1))
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
