"""`runner data synth imagenet`: learnable synthetic JPEGs in the ILSVRC-2012 folder layout.

    OUT/train/<wnid>/<wnid>_<i>.JPEG
    OUT/val/<wnid>/ILSVRC2012_val_<8 digits>.JPEG            (default), or with flat_val:
    OUT/val/ILSVRC2012_val_<8 digits>.JPEG + OUT/LOC_val_solution.csv
    OUT/synthetic.json                                        generator parameters

Class k is (orientation k % A, colour axis k // A) with A = ceil(classes / 4) orientations
spread over [0, 90) degrees and the cube's four body diagonals as colour axes. An image of
class k (its width and height drawn from [0.75, 1.33] x `side`) is

    base + a * d * (sin(2 pi f (cos t x + sin t y) + phi1) + sin(2 pi f (-cos t x + sin t y) + phi2)) / sqrt(2)
         + noise

with, per image: base colour uniform in [60, 195]^3, amplitude a in [40, 90], direction d = the
class axis + N(0, 0.15^2), frequency f = U(4, 10) cycles per image side, phases uniform, pixel
noise N(0, 10^2); then JPEG quality 90. Orientation and colour axis survive random-resized
crops (scale changes f, which is random anyway) and flips (the +t/-t pair maps onto itself),
so the ImageNet recipe's augmentation preserves labels, while mean colour says nothing.

numpy generators seeded [seed, 3 (train) | 4 (val), class]; the same seed and Pillow version give
byte-identical files.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from runner.data import decode
from runner.data.files import staged_dir, write_bytes_durable
from runner.data.imagenet import LABEL_FILE
from runner.data.manifest import dataset_manifest
from runner.errors import DatasetError

GENERATOR_VERSION = 1  # bump whenever the bytes written change: caches are keyed by it
MAX_CLASSES = 1000
MAX_IMAGES = 200_000
_AXES = np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]], dtype=np.float64) / math.sqrt(3)


@dataclass(frozen=True)
class SyntheticImagenet:
    out: Path
    classes: int
    train: int
    val: int
    root_sha256: str


def wnid(k: int) -> str:
    return f"n{k:08d}"


def _image(rng: np.random.Generator, k: int, classes: int, side: int) -> np.ndarray:
    orientations = math.ceil(classes / 4)
    theta = math.pi / 2 * (k % orientations) / orientations
    axis = _AXES[k // orientations]
    w, h = (int(side * s) for s in rng.uniform(0.75, 1.33, size=2))
    base = rng.uniform(60, 195, size=3)
    amp = rng.uniform(40, 90)
    d = axis + rng.normal(0, 0.15, size=3)
    d /= np.linalg.norm(d)
    f = rng.uniform(4, 10) / side
    phi = rng.uniform(0, 2 * math.pi, size=2)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    c, s = math.cos(theta), math.sin(theta)
    wave = (np.sin(2 * math.pi * f * (c * xx + s * yy) + phi[0])
            + np.sin(2 * math.pi * f * (-c * xx + s * yy) + phi[1])) / math.sqrt(2)
    img = base + amp * wave[..., None] * d + rng.normal(0, 10, size=(h, w, 3))
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def write_synthetic_imagenet(out: str | Path, classes: int = 10, per_class: int = 50, val_per_class: int = 10,
                             side: int = 96, seed: int = 0, flat_val: bool = False) -> SyntheticImagenet:
    """Write the dataset into a new folder OUT atomically (see module docstring)."""
    for name, value, lo, hi in (("--classes", classes, 1, MAX_CLASSES), ("--per-class", per_class, 1, MAX_IMAGES),
                                ("--val-per-class", val_per_class, 0, MAX_IMAGES), ("--side", side, 16, 1024)):
        if not lo <= value <= hi:
            raise DatasetError(f"{name} must be in {lo}..{hi}, got {value}", field=name)
    if classes * (per_class + val_per_class) > MAX_IMAGES:
        raise DatasetError(f"classes x (per-class + val-per-class) is above {MAX_IMAGES} images", field="--per-class")
    out = Path(out)
    labels: list[str] = ["ImageId,PredictionString\n"]
    with staged_dir(out) as tmp:
        n_val = 0
        for k in range(classes):
            folder = tmp / "train" / wnid(k)
            folder.mkdir(parents=True)
            rng = np.random.default_rng([seed, 3, k])
            for i in range(per_class):
                write_bytes_durable(folder / f"{wnid(k)}_{i}.JPEG", decode.encode_jpeg(_image(rng, k, classes, side)))
        (tmp / "val").mkdir()
        for k in range(classes):
            rng = np.random.default_rng([seed, 4, k])
            if not flat_val:
                (tmp / "val" / wnid(k)).mkdir()
            for _ in range(val_per_class):
                n_val += 1
                image_id = f"ILSVRC2012_val_{n_val:08d}"
                rel = f"{image_id}.JPEG" if flat_val else f"{wnid(k)}/{image_id}.JPEG"
                write_bytes_durable(tmp / "val" / rel, decode.encode_jpeg(_image(rng, k, classes, side)))
                labels.append(f"{image_id},{wnid(k)} 0 0 {side} {side}\n")
        if flat_val:
            write_bytes_durable(tmp / LABEL_FILE, "".join(labels).encode())
        meta = {"like": "imagenet", "generator_version": GENERATOR_VERSION, "seed": seed, "classes": classes,
                "per_class": per_class, "val_per_class": val_per_class, "side": side, "flat_val": flat_val,
                "pillow": decode.pillow_version()}
        write_bytes_durable(tmp / "synthetic.json", (json.dumps(meta, indent=2, sort_keys=True) + "\n").encode())
        _, root = dataset_manifest(tmp)  # what `runner data verify OUT` prints and specs pin
    return SyntheticImagenet(out, classes, classes * per_class, classes * val_per_class, root)
