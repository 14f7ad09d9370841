"""Synthetic CIFAR-10/100 look-alikes: learnable, deterministic, in the exact official format.

Class k has a spatial frequency (kx, ky) (distinct lattice points with kx, ky >= 0, lowest
first, at most 25) and a colour axis (one of the cube's four body diagonals): class k is
(frequency k % F, axis k // F), so CIFAR-10 uses 10 frequencies on one axis and CIFAR-100 25
frequencies x 4 axes. An image of class k is

    base + a * d * (sin(2 pi (kx x + ky y) / 32 + phi1) + sin(2 pi (-kx x + ky y) / 32 + phi2)) / sqrt(2)
         + noise

with, drawn per image: base colour uniform in [60, 195]^3, amplitude a uniform in [40, 90],
direction d = the class axis + N(0, 0.15^2) (renormalised), phases phi1, phi2 uniform in
[0, 2 pi), pixel noise N(0, 20^2); rounded and clipped to uint8. The grating and its mirror
image are both present, so a horizontal flip maps a class onto itself; random phases make it
translation-invariant: crop + flip augmentation preserves labels.

Learnable but not trivial: classes differ only in oriented texture and the colour axis it
modulates. Random phases average each class's mean image to a flat colour and the random base
colour makes the mean colour uninformative, so template matching against class-mean images or
mean-colour rules sit near chance, while the small CNN learns the oriented filters in a few
epochs (tests/data/test_data_synth.py).

Everything comes from numpy Generators seeded with [seed, stream] (train 1, test 2; the class
patterns are fixed), so the same seed gives byte-identical files, archive included (fixed tar
metadata, gzip mtime 0). The train and test streams are independent of each other's size.
"""

from __future__ import annotations

import gzip
import io
import json
import math
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from runner.data.cifar import (
    CIFAR10,
    IMAGE_SIDE,
    LAYOUTS,
    MAX_EXTRACTED_BYTES,
    MAX_FILE_BYTES,
    PIXELS,
    CifarLayout,
    checksum_file_for,
)
from runner.data.files import sha256_bytes, staged_dir, write_bytes_durable
from runner.data.manifest import MANIFEST_NAME, dataset_manifest, format_manifest_file
from runner.errors import DatasetError

GENERATOR_VERSION = 2  # bump whenever the bytes written change: caches are keyed by it
_CHUNK = 4096
_NOISE_SIGMA = 20.0
_AMPLITUDE = (40.0, 90.0)
_BASE = (60.0, 195.0)
_DIRECTION_JITTER = 0.15

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CIFAR100_CLASSES = (
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle", "bottle",
    "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle", "caterpillar", "cattle",
    "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch", "crab", "crocodile", "cup", "dinosaur",
    "dolphin", "elephant", "flatfish", "forest", "fox", "girl", "hamster", "house", "kangaroo", "keyboard",
    "lamp", "lawn_mower", "leopard", "lion", "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain",
    "mouse", "mushroom", "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear", "pickup_truck", "pine_tree",
    "plain", "plate", "poppy", "porcupine", "possum", "rabbit", "raccoon", "ray", "road", "rocket",
    "rose", "sea", "seal", "shark", "shrew", "skunk", "skyscraper", "snail", "snake", "spider",
    "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank", "telephone", "television", "tiger",
    "tractor", "train", "trout", "tulip", "turtle", "wardrobe", "whale", "willow_tree", "wolf", "woman", "worm",
)
CIFAR100_COARSE_CLASSES = (
    "aquatic_mammals", "fish", "flowers", "food_containers", "fruit_and_vegetables",
    "household_electrical_devices", "household_furniture", "insects", "large_carnivores",
    "large_man-made_outdoor_things", "large_natural_outdoor_scenes", "large_omnivores_and_herbivores",
    "medium_mammals", "non-insect_invertebrates", "people", "reptiles", "small_mammals", "trees",
    "vehicles_1", "vehicles_2",
)
# The official superclass of each fine class (index = fine label), as in the CIFAR-100 files.
CIFAR100_FINE_TO_COARSE = (
    4, 1, 14, 8, 0, 6, 7, 7, 18, 3, 3, 14, 9, 18, 7, 11, 3, 9, 7, 11,
    6, 11, 5, 10, 7, 6, 13, 15, 3, 15, 0, 11, 1, 10, 12, 14, 16, 9, 11, 5,
    5, 19, 8, 8, 15, 13, 14, 17, 18, 10, 16, 4, 17, 4, 2, 0, 17, 4, 18, 17,
    10, 3, 2, 12, 12, 16, 12, 1, 9, 19, 2, 10, 0, 1, 16, 12, 9, 13, 15, 13,
    16, 19, 2, 4, 6, 19, 5, 5, 8, 19, 18, 1, 2, 15, 6, 0, 17, 8, 14, 13,
)

_README = """<html><body><p>SYNTHETIC data written by <code>runner data synth</code> in the layout of the
CIFAR "python version" archive. It is not CIFAR; see https://www.cs.toronto.edu/~kriz/cifar.html
for the real dataset.</p></body></html>
"""


@dataclass(frozen=True)
class SynthResult:
    out: Path
    folder: Path
    archive: Path
    checksum_file: Path
    archive_sha256: str
    manifest_root: str
    counts: tuple[int, int]


def frequency_lattice(k: int) -> np.ndarray:
    """k distinct integer frequencies (kx, ky) with kx, ky >= 0 (not both 0), lowest radius first."""
    r = 1
    while True:
        pts = [(x, y) for x in range(0, r + 1) for y in range(0, r + 1) if (x, y) != (0, 0) and x * x + y * y <= r * r]
        if len(pts) >= k:
            break
        r += 1
    pts.sort(key=lambda p: (p[0] ** 2 + p[1] ** 2, p[1]))
    return np.asarray(pts[:k], dtype=np.float64)


# Colour axes a class modulates along: the cube's body diagonals (about 70 degrees apart; an axis
# and its negative are the same axis, as sin(t + pi) = -sin(t)).
_AXES = np.array([[1, 1, 1], [1, 1, -1], [1, -1, 1], [-1, 1, 1]], dtype=np.float64) / math.sqrt(3)
_MAX_FREQUENCIES = 25


def class_patterns(num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(frequency (K, 2), colour axis (K, 3)) of each class: class k = (frequency k % F, axis k // F)."""
    axes = max(1, math.ceil(num_classes / _MAX_FREQUENCIES))
    f = math.ceil(num_classes / axes)
    freqs = frequency_lattice(f)
    k = np.arange(num_classes)
    return freqs[k % f], _AXES[k // f]


def generate_split(num_classes: int, n: int, seed: int, stream: int) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (n, 32, 32, 3), labels int64 (n,)) for one split; balanced classes."""
    freqs, axes = class_patterns(num_classes)
    rng = np.random.default_rng([seed, stream])
    labels = rng.permutation(np.arange(n, dtype=np.int64) % num_classes)
    grid = np.arange(IMAGE_SIDE, dtype=np.float64) / IMAGE_SIDE
    yy, xx = np.meshgrid(grid, grid, indexing="ij")
    images = np.empty((n, IMAGE_SIDE, IMAGE_SIDE, 3), dtype=np.uint8)
    for start in range(0, n, _CHUNK):
        y = labels[start:start + _CHUNK]
        m = len(y)
        phase = rng.uniform(0.0, 2 * math.pi, (m, 2))
        base = rng.uniform(*_BASE, (m, 3))
        amp = rng.uniform(*_AMPLITUDE, m)
        d = axes[y] + _DIRECTION_JITTER * rng.normal(size=(m, 3))
        d /= np.linalg.norm(d, axis=1, keepdims=True)
        noise = rng.standard_normal((m, IMAGE_SIDE, IMAGE_SIDE, 3), dtype=np.float32) * np.float32(_NOISE_SIGMA)
        kx, ky = freqs[y, 0, None, None], freqs[y, 1, None, None]
        # the grating and its mirror image: a horizontal flip maps a class onto itself
        wave = (np.sin(2 * math.pi * (kx * xx + ky * yy) + phase[:, 0, None, None])
                + np.sin(2 * math.pi * (-kx * xx + ky * yy) + phase[:, 1, None, None])) / math.sqrt(2)
        img = (base[:, None, None, :] + (amp[:, None] * d)[:, None, None, :] * wave[..., None]).astype(np.float32)
        img += noise
        images[start:start + m] = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    return images, labels


def _flat(images: np.ndarray) -> np.ndarray:
    """NHWC -> the official (N, 3072) rows: the red plane, then green, then blue."""
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2).reshape(len(images), -1))


def _batch(layout: CifarLayout, label: str, x: np.ndarray, y: np.ndarray, names: tuple[str, ...],
           first_index: int) -> dict:
    batch = {
        b"batch_label": label.encode(),
        layout.label_key: [int(v) for v in y],
        b"data": _flat(x),
        b"filenames": [f"{names[v]}_s_{first_index + i:06d}.png".encode() for i, v in enumerate(y)],
    }
    if layout.coarse_key is not None:
        batch[layout.coarse_key] = [CIFAR100_FINE_TO_COARSE[int(v)] for v in y]
    return batch


def synth_members(like: str, train: int, test: int, seed: int) -> dict[str, bytes]:
    """The files of the official folder (name -> bytes), without writing anything."""
    from runner.data.pickles import dumps_official

    layout = _layout(like)
    names = CIFAR10_CLASSES if layout is CIFAR10 else CIFAR100_CLASSES
    tx, ty = generate_split(layout.num_classes, train, seed, stream=1)
    vx, vy = generate_split(layout.num_classes, test, seed, stream=2)
    members: dict[str, bytes] = {}
    bounds = np.array_split(np.arange(train), len(layout.train_files))
    total = len(layout.train_files)
    for i, (fname, idx) in enumerate(zip(layout.train_files, bounds, strict=True), start=1):
        lo, hi = (int(idx[0]), int(idx[-1]) + 1)
        members[fname] = dumps_official(
            _batch(layout, f"training batch {i} of {total}", tx[lo:hi], ty[lo:hi], names, lo))
    members[layout.test_files[0]] = dumps_official(
        _batch(layout, "testing batch 1 of 1", vx, vy, names, 0))
    if layout is CIFAR10:
        members[layout.meta_file] = dumps_official({
            b"num_cases_per_batch": len(bounds[0]),
            b"label_names": [n.encode() for n in names],
            b"num_vis": 3072,
        })
        members["readme.html"] = _README.encode()
    else:
        members[layout.meta_file] = dumps_official({
            b"fine_label_names": [n.encode() for n in names],
            b"coarse_label_names": [n.encode() for n in CIFAR100_COARSE_CLASSES],
        })
    return members


def tar_gz(folder: str, members: dict[str, bytes]) -> bytes:
    """A byte-reproducible .tar.gz holding `folder/` and its members (fixed metadata, mtime 0)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
        d = tarfile.TarInfo(folder)
        d.type, d.mode, d.mtime = tarfile.DIRTYPE, 0o755, 0
        tar.addfile(d)
        for name in sorted(members):
            info = tarfile.TarInfo(f"{folder}/{name}")
            info.size, info.mode, info.mtime = len(members[name]), 0o644, 0
            tar.addfile(info, io.BytesIO(members[name]))
    out = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0, compresslevel=6) as gz:
        gz.write(raw.getvalue())
    return out.getvalue()


def write_synthetic(like: str, out: str | Path, train: int | None = None, test: int | None = None,
               seed: int = 0) -> SynthResult:
    """Write DIR/<official folder>/ (+SHA256SUMS), DIR/<archive>, DIR/<archive>.sha256, synthetic.json."""
    layout = _layout(like)
    train = layout.official_counts[0] if train is None else train
    test = layout.official_counts[1] if test is None else test
    if train < len(layout.train_files) or test < 1:
        raise DatasetError(f"needs at least {len(layout.train_files)} train and 1 test image",
                           field="--train/--test", fix="raise --train / --test")
    if seed < 0:
        raise DatasetError("seed must be >= 0", field="--seed")
    _check_readable_size(layout, train, test)
    out = Path(out)
    members = synth_members(like, train, test, seed)
    archive_bytes = tar_gz(layout.folder, members)
    archive_sha = sha256_bytes(archive_bytes)
    with staged_dir(out) as tmp:
        folder = tmp / layout.folder
        folder.mkdir()
        for name, data in members.items():
            write_bytes_durable(folder / name, data)
        entries, root = dataset_manifest(folder)
        write_bytes_durable(folder / MANIFEST_NAME, format_manifest_file(entries))
        write_bytes_durable(tmp / layout.archive, archive_bytes)
        write_bytes_durable(checksum_file_for(tmp / layout.archive), f"{archive_sha}  {layout.archive}\n".encode())
        record = {
            "synthetic": True, "like": layout.name, "seed": seed, "train": train, "test": test,
            "generator_version": GENERATOR_VERSION, "archive": layout.archive, "archive_sha256": archive_sha,
            "folder": layout.folder, "folder_manifest_root": root,
        }
        write_bytes_durable(tmp / "synthetic.json", (json.dumps(record, indent=2, sort_keys=True) + "\n").encode())
    return SynthResult(out=out, folder=out / layout.folder, archive=out / layout.archive,
                       checksum_file=checksum_file_for(out / layout.archive), archive_sha256=archive_sha,
                       manifest_root=root, counts=(train, test))


def _check_readable_size(layout: CifarLayout, train: int, test: int) -> None:
    """Refuse, before generating anything, data the reader's caps would refuse (runner/data/cifar.py)."""
    per_image = PIXELS + 128  # its pixels, file name and label in the pickle, with room to spare
    per_file = MAX_FILE_BYTES // per_image
    largest_file = max(math.ceil(train / len(layout.train_files)), test)
    if largest_file > per_file or (train + test) * per_image > MAX_EXTRACTED_BYTES:
        raise DatasetError(
            f"{train} train + {test} test images is more than a {layout.name} source may hold (a batch file "
            f"at most {MAX_FILE_BYTES} bytes, {MAX_EXTRACTED_BYTES} in all)", field="--train/--test",
            fix=f"at most {per_file} images per batch file: {per_file * len(layout.train_files)} train, "
                f"{per_file} test, {MAX_EXTRACTED_BYTES // per_image} in all")


def _layout(like: str) -> CifarLayout:
    try:
        return LAYOUTS[like]
    except KeyError:
        raise DatasetError(f"cannot synthesise {like!r}", field="--like",
                           fix=f"use one of: {', '.join(LAYOUTS)}") from None


