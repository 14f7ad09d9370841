"""Dataset-layer figures: loader-only throughput, plus the cost of synth / prepare / load.

The headline is the loader alone (no model): images per second delivered by BatchIterator
(gather from the memory-mapped prepared arrays, random crop (pad 4) + horizontal flip +
brightness, normalisation to float32 NHWC) at batch 64, with and without the prefetch thread.
The harness engineer compares it with the small CNN's training throughput: the loader must
deliver many times what training consumes, so data time never bounds a step. Reuse it as

    from runner.data.loader import measure_loader_throughput
    measure_loader_throughput(prepared, 64, ops, seconds=5.0)   # -> images/s

CPU time is printed beside wall time and the load average is shown: on a shared machine wall
figures shrink with other people's work. Everything is written under a temporary folder.

Run: .venv/bin/python benchmarks/bench_data.py [--train 50000] [--seconds 5] [--prepared DIR]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from runner.data.loader import measure_loader_throughput  # noqa: E402
from runner.data.prepared import load_prepared, prepare  # noqa: E402
from runner.data.synth import write_synthetic  # noqa: E402

AUGMENT = [{"op": "random_crop", "padding": 4}, {"op": "horizontal_flip", "p": 0.5},
           {"op": "brightness", "max_delta": 0.2}]


def timed(fn):
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w, time.process_time() - c


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", type=int, default=50_000, help="synthetic training images (default: official)")
    ap.add_argument("--seconds", type=float, default=5.0, help="seconds per loader measurement")
    ap.add_argument("--prepared", type=Path, help="measure an existing prepared folder instead")
    args = ap.parse_args()

    print(f"bench_data: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory(prefix="bench-data-") as tmp:
        if args.prepared is None:
            src, w, c = timed(lambda: write_synthetic("cifar10", Path(tmp) / "s", train=args.train, test=10_000))
            mb = src.archive.stat().st_size / 1e6
            print(f"synth cifar10 {args.train}+10000 images (archive {mb:.0f} MB): {w:.1f} s wall, {c:.1f} s CPU")
            prepared, w, c = timed(lambda: prepare(src.archive, Path(tmp) / "p"))
            print(f"prepare (verify archive, safe unpickle, validate, write .npy): {w:.1f} s wall, {c:.1f} s CPU")
            path = prepared.path
        else:
            path = args.prepared
        _, w, c = timed(lambda: load_prepared(path))
        print(f"load_prepared with every sha256 checked: {w:.2f} s wall, {c:.2f} s CPU")
        data = load_prepared(path)
        n = len(data.train_y)

        rows = [
            ("batch 64, crop+flip+brightness", 64, AUGMENT, 0),
            ("batch 64, crop+flip+brightness, prefetch 2", 64, AUGMENT, 2),
            ("batch 256, crop+flip+brightness", 256, AUGMENT, 0),
            ("batch 64, no augmentation", 64, [], 0),
            ("batch 64, crop+flip+brightness+resize 224", 64, [*AUGMENT, {"op": "resize", "size": 224}], 0),
        ]
        print(f"\nloader only ({data.name}, {n} training images, {args.seconds:g} s each):")
        for label, bs, ops, prefetch in rows:
            c0 = time.process_time()
            rate = measure_loader_throughput(data, bs, ops, args.seconds, prefetch=prefetch)
            cpu = (time.process_time() - c0) / args.seconds
            per_cpu = rate / cpu if cpu > 0 else float("nan")
            print(f"  {label:<46} {rate:>9,.0f} images/s  {cpu:.2f} CPU-s per wall-s  "
                  f"{per_cpu:>9,.0f} images per CPU-s")
        print("\nheadline: loader_images_per_s(batch=64, crop+flip+brightness) = "
              f"{measure_loader_throughput(data, 64, AUGMENT, args.seconds):.0f}")


if __name__ == "__main__":
    main()
