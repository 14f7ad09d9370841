"""ImageNet-path figures: decode + random-resized-crop per core, and the manifest of many files.

1. Loader, one process (so images per CPU-second = images per second per core): the runner's
   path (`image_loader.render`: read the file, sniff, Pillow decode, `rrc_box` from pre-drawn
   uniforms, one BILINEAR crop+resize to 224 with reducing_gap=None, flip) side by side with a
   bare Pillow loop doing the same work (open, convert RGB, the same box, the same resize,
   transpose for the flip, np.asarray). Images: synthetic JPEGs of ImageNet's typical size
   (mean side 430 px: 322..572 x 322..572, as ILSVRC's ~500 x 375), quality 90.
   Targets: >= 400 images/s per core, and >= 0.9 of the bare loop.
2. Manifest of N small files (default 100,000 of 1 KiB in 1,000 folders): cold (no manifest
   cache: every file hashed, by the thread pool) and cached (size, mtime_ns and inode all
   unchanged). "Cold" is cold for the manifest cache; the files themselves are in the page
   cache (dropping it needs root on the host). Targets: < 20 s cold, < 2 s cached.

CPU time is printed beside wall time: the development machine is shared.

Run: .venv/bin/python benchmarks/bench_imagenet_loader.py [--images 300] [--files 100000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from runner.data import decode  # noqa: E402
from runner.data.image_loader import FileSource, render  # noqa: E402
from runner.data.imagenet import scan  # noqa: E402
from runner.data.manifest import dataset_manifest  # noqa: E402
from runner.data.synth_imagenet import write_synthetic_imagenet  # noqa: E402

SIZE, SCALE, RATIO = 224, (0.08, 1.0), (3 / 4, 4 / 3)


def bare_pillow(paths: list[str], uniforms: np.ndarray, flips: np.ndarray) -> int:
    """The same work written directly against Pillow (what a hand-written loader would do)."""
    from PIL import Image

    for k, path in enumerate(paths):
        with open(path, "rb") as f:
            img = Image.open(f)
            img = img.convert("RGB")
        box = decode.rrc_box(uniforms[k], img.width, img.height, SCALE, RATIO)
        out = img.resize((SIZE, SIZE), Image.Resampling.BILINEAR, box=box, reducing_gap=None)
        if flips[k]:
            out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        np.asarray(out)
    return len(paths)


def runner_path(source: FileSource, uniforms: np.ndarray, flips: np.ndarray) -> int:
    for k in range(len(source.files)):
        render(source, k, ("rrc", uniforms[k], SCALE, RATIO, SIZE, bool(flips[k])))
    return len(source.files)


def cpu_rate(fn, rounds: int) -> tuple[float, float]:
    """(images per CPU-second, images per wall-second), best of `rounds`."""
    best_cpu = best_wall = 0.0
    for _ in range(rounds):
        w, c = time.perf_counter(), time.process_time()
        n = fn()
        w, c = time.perf_counter() - w, time.process_time() - c
        best_cpu, best_wall = max(best_cpu, n / c), max(best_wall, n / w)
    return best_cpu, best_wall


def loader_figures(tmp: Path, images: int, rounds: int) -> bool:
    classes = 10
    ds = write_synthetic_imagenet(tmp / "imagenet", classes=classes, per_class=max(1, images // classes),
                                  val_per_class=0, side=430, seed=0).out
    index = scan(ds)
    source = FileSource(str(index.root), tuple(r for r, _ in index.train))
    paths = [os.path.join(source.root, r) for r in source.files]
    rng = np.random.default_rng(0)
    uniforms, flips = rng.random((len(paths), 10, 4)), rng.random(len(paths)) < 0.5
    mean_px = np.mean([np.prod(decode.open_rgb(open(p, "rb").read()).size) for p in paths[:50]])
    bare_cpu, bare_wall = cpu_rate(lambda: bare_pillow(paths, uniforms, flips), rounds)
    ours_cpu, ours_wall = cpu_rate(lambda: runner_path(source, uniforms, flips), rounds)
    ratio = ours_cpu / bare_cpu
    print(f"loader: {len(paths)} JPEGs, mean {mean_px / 1e3:.0f} k pixels, decode + random-resized-crop to "
          f"{SIZE} + flip, one process, best of {rounds}")
    print(f"  bare Pillow loop     {bare_cpu:>7.0f} images per CPU-s   ({bare_wall:.0f} images/s wall)")
    print(f"  runner decode path   {ours_cpu:>7.0f} images per CPU-s   ({ours_wall:.0f} images/s wall)")
    ok_rate, ok_ratio = ours_cpu >= 400, ratio >= 0.9
    print(f"  per core: {ours_cpu:.0f} images/s (target >= 400: {'met' if ok_rate else 'MISSED'}); "
          f"runner / bare = {ratio:.2f} (target >= 0.9: {'met' if ok_ratio else 'MISSED'})")
    return ok_rate and ok_ratio


def manifest_figures(tmp: Path, files: int) -> bool:
    root = tmp / "many"
    payload = os.urandom(1024)
    per_folder = 100
    t = time.perf_counter()
    for i in range(files):
        if i % per_folder == 0:
            folder = root / f"d{i // per_folder:05d}"
            folder.mkdir(parents=True)
        (folder / f"f{i:07d}.bin").write_bytes(payload[: 512 + i % 512] + i.to_bytes(4, "little"))
    print(f"\nmanifest: {files:,} files of 0.5-1 KiB in {files // per_folder:,} folders "
          f"(written in {time.perf_counter() - t:.1f} s)")
    cache = tmp / "manifest-cache"
    rows = []
    for label in ("cold (no cache: every file hashed)", "cached (size, mtime_ns, inode unchanged)"):
        w, c = time.perf_counter(), time.process_time()
        _, root_hash = dataset_manifest(root, cache_dir=cache)
        rows.append((label, time.perf_counter() - w, time.process_time() - c, root_hash))
    for label, w, c, _ in rows:
        print(f"  {label:<42} {w:>6.2f} s wall  {c:>6.2f} s CPU")
    assert rows[0][3] == rows[1][3], "cached root hash differs from the cold one"
    ok_cold, ok_cached = rows[0][1] < 20, rows[1][1] < 2
    print(f"  cold {rows[0][1]:.1f} s (target < 20 s: {'met' if ok_cold else 'MISSED'}); cached {rows[1][1]:.2f} s "
          f"(target < 2 s: {'met' if ok_cached else 'MISSED'}); root hashes equal")
    return ok_cold and ok_cached


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=300, help="ImageNet-size JPEGs for the loader figure")
    ap.add_argument("--files", type=int, default=100_000, help="small files for the manifest figure")
    ap.add_argument("--rounds", type=int, default=3, help="loader passes (the best is reported)")
    args = ap.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory(prefix="bench-imagenet-") as tmp:
        ok = loader_figures(Path(tmp), args.images, args.rounds)
        ok = manifest_figures(Path(tmp), args.files) and ok
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
