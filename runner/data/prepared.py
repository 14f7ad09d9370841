"""The prepared, framework-neutral form every workload reads.

A prepared folder holds plain .npy arrays and a meta.json:

    train_x.npy  uint8 (N, 32, 32, 3) NHWC      test_x.npy  uint8 (M, 32, 32, 3)
    train_y.npy  int64 (N,)                      test_y.npy  int64 (M,)
    train_y_coarse.npy / test_y_coarse.npy        (CIFAR-100 only: superclass labels)
    meta.json    dataset, classes, counts, source hashes, sha256 + size of every file, format version

`prepare` writes into a hidden staging folder beside the destination and renames it into place
only when everything is written and fsynced, so the destination is either absent or complete.
`load_prepared` checks meta.json and every file's sha256 (the host's default) or only sizes and
shapes (`verify="sizes"`, for a workload reading a folder the host already verified and mounted
read-only). The arrays are memory-mapped read-only by default.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from runner.data.files import read_regular_file, sha256_bytes, staged_dir, write_bytes_durable
from runner.data.manifest import dataset_manifest
from runner.data.reader import RawDataset
from runner.data.sources import open_source
from runner.errors import DatasetError, DatasetRefused

FORMAT = "runner-prepared-dataset"
FORMAT_VERSION = 1
META = "meta.json"
_MAX_META_BYTES = 1 << 20


class MetaFacts:
    """What a dataset's meta document says about its classes and counts (prepared folders and
    JPEG indexes alike; the class has a `meta` dict)."""

    meta: dict[str, Any]

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(self.meta["classes"])

    @property
    def num_classes(self) -> int:
        return len(self.meta["classes"])

    @property
    def counts(self) -> dict[str, int]:
        return dict(self.meta["counts"])


@dataclass(frozen=True)
class PreparedDataset(MetaFacts):
    path: Path
    meta: dict[str, Any]
    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    train_y_coarse: np.ndarray | None = None
    test_y_coarse: np.ndarray | None = None
    content_id: str = field(default="")  # sha256 of meta.json, which pins every file's sha256

    @property
    def name(self) -> str:
        return self.meta["dataset"]

    def split(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        if split == "train":
            return self.train_x, self.train_y
        if split == "test":
            return self.test_x, self.test_y
        raise DatasetError(f"unknown split {split!r}", field="split", fix="use 'train' or 'test'")


def prepare(source_path: str | Path, out_dir: str | Path, name: str | None = None,
            size: int | None = None) -> PreparedDataset:
    """Verify and decode a source, then write the prepared folder atomically; return it loaded.

    `size`: the side ImageNet images are decoded to (160 or 224; default 224); CIFAR has none.
    """
    reader = open_source(source_path, name)
    if size is not None:
        from runner.data.imagenet import ImagenetReader

        if not isinstance(reader, ImagenetReader):
            raise DatasetError(f"--size applies to ImageNet folders, not {reader.name}", field="--size",
                               fix="drop --size (CIFAR images keep their 32 x 32)")
        reader.size = size
    out_dir = Path(out_dir)
    from runner.data.imagenet import ImagenetReader

    if isinstance(reader, ImagenetReader):  # decoded rows streamed into the staging folder's .npy files
        with staged_dir(out_dir) as tmp:
            reader.write_prepared(tmp)
        return load_prepared(out_dir)
    raw = reader.read()
    with staged_dir(out_dir) as tmp:
        write_prepared(raw, tmp)
    return load_prepared(out_dir)


def write_prepared(raw: RawDataset, folder: Path) -> dict[str, Any]:
    """Write the arrays and meta.json into an (empty, staging) folder."""
    arrays: dict[str, np.ndarray] = {
        "train_x.npy": raw.train_x, "train_y.npy": raw.train_y,
        "test_x.npy": raw.test_x, "test_y.npy": raw.test_y,
    }
    if raw.train_y_coarse is not None and raw.test_y_coarse is not None:
        arrays["train_y_coarse.npy"] = raw.train_y_coarse
        arrays["test_y_coarse.npy"] = raw.test_y_coarse
    files = {fname: write_array(folder, fname, arr) for fname, arr in arrays.items()}
    mean, std = channel_stats(raw.train_x)
    return write_meta(folder, raw, files, mean, std)


def write_array(folder: Path, fname: str, arr: np.ndarray) -> dict[str, Any]:
    """One small array saved as `np.save` does (in memory first); its meta.json entry."""
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(arr), allow_pickle=False)
    data = buf.getvalue()
    write_bytes_durable(folder / fname, data)
    return {"size": len(data), "sha256": sha256_bytes(data), "dtype": str(arr.dtype), "shape": list(arr.shape)}


def write_meta(folder: Path, raw: RawDataset, files: dict[str, dict[str, Any]], mean: list[float],
               std: list[float]) -> dict[str, Any]:
    """meta.json for arrays already written (`files`: each one's size, sha256, dtype, shape).

    Counts and the image shape are taken from `files` (the streamed ImageNet path hands a
    RawDataset without pixel arrays)."""
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "dataset": raw.name,
        "classes": list(raw.classes),
        "coarse_classes": list(raw.coarse_classes) if raw.coarse_classes is not None else None,
        "counts": {"train": files["train_y.npy"]["shape"][0], "test": files["test_y.npy"]["shape"][0]},
        "image_shape": list(files["train_x.npy"]["shape"][1:]),
        "layout": "NHWC",
        "train_channel_mean": mean,
        "train_channel_std": std,
        "source": raw.source.to_json(),
        "files": files,
        **raw.extra,
    }
    write_bytes_durable(folder / META, (json.dumps(meta, indent=2, sort_keys=True) + "\n").encode())
    return meta


def channel_stats(x: np.ndarray, chunk: int = 4096) -> tuple[list[float], list[float]]:
    """Per-channel mean/std of uint8 NHWC images on the [0, 1] scale (float64 accumulation)."""
    sums = _ChannelSums(x.shape[-1])
    for i in range(0, len(x), chunk):
        sums.add(x[i:i + chunk])
    return sums.result(x.shape[0] * x.shape[1] * x.shape[2])


def channel_stats_file(npy: Path, max_chunk_bytes: int = 4 << 20) -> tuple[list[float], list[float]]:
    """channel_stats of a uint8 NHWC .npy file, read in chunks through a reused buffer (not mapped).

    The same float64 arithmetic as `channel_stats`; chunks of 4096 images unless that is more
    than `max_chunk_bytes` of float64 (at 224 x 224 that would be 4.9 GB: 3 images then). The
    chunking changes only float rounding far below the 6 decimals recorded."""
    with open(npy, "rb") as fh:
        version = np.lib.format.read_magic(fh)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read_header(fh)
        if dtype != np.uint8 or fortran or len(shape) != 4:
            raise DatasetError(f"holds {dtype}{list(shape)}, expected uint8 NHWC", file=npy)
        n, row_shape = shape[0], shape[1:]
        row_bytes = int(np.prod(row_shape))
        rows = max(1, min(4096, max_chunk_bytes // (8 * row_bytes)))
        buf = np.empty((rows, *row_shape), np.uint8)
        sums = _ChannelSums(row_shape[-1])
        for start in range(0, n, rows):
            part = buf[: min(rows, n - start)]
            if fh.readinto(memoryview(part).cast("B")) != part.nbytes:
                raise DatasetError("is shorter than its header says", file=npy)
            sums.add(part)
    return sums.result(n * row_shape[0] * row_shape[1])


class _ChannelSums:
    def __init__(self, channels: int) -> None:
        self.total = np.zeros(channels, np.float64)
        self.total_sq = np.zeros(channels, np.float64)

    def add(self, x: np.ndarray) -> None:
        part = np.asarray(x, dtype=np.float64) / 255.0
        self.total += part.sum(axis=(0, 1, 2))
        self.total_sq += np.square(part).sum(axis=(0, 1, 2))

    def result(self, pixels: int) -> tuple[list[float], list[float]]:
        n = max(1, pixels)
        mean = self.total / n
        std = np.sqrt(np.maximum(self.total_sq / n - mean**2, 0.0))
        return [round(float(v), 6) for v in mean], [round(float(v), 6) for v in std]


def load_prepared(path: str | Path, mmap: bool = True,
                  verify: Literal["hashes", "sizes"] = "hashes") -> PreparedDataset:
    """Open a prepared folder after checking meta.json and its files (see module docstring)."""
    path = Path(path)
    if not path.is_dir():
        raise DatasetError("is not a prepared dataset folder", file=path,
                           fix="create it with `runner data prepare SOURCE --out DIR`")
    meta_bytes = read_regular_file(path / META, _MAX_META_BYTES, "prepared meta.json",
                                   fix="prepare the folder again: runner data prepare SOURCE --out DIR")
    meta = _parse_meta(meta_bytes, path / META)
    files: dict[str, dict[str, Any]] = meta["files"]
    if verify == "hashes":
        manifest, _ = dataset_manifest(path)  # also refuses symlinks and special files
        for rel in sorted(set(manifest) - {META}):
            if rel not in files:
                raise DatasetError("is not listed in meta.json", file=path / rel,
                                   fix="a prepared folder must hold only what prepare wrote")
        for fname, info in files.items():
            if fname not in manifest:
                raise DatasetError("is missing", file=path / fname, fix="re-run runner data prepare")
            size, sha = manifest[fname]
            if size != info["size"] or sha != info["sha256"]:
                raise DatasetError("does not match the sha256 recorded in meta.json", file=path / fname,
                                   fix="the prepared data was modified or is corrupt; re-run runner data prepare")
    elif verify == "sizes":
        for fname, info in files.items():
            try:
                st = os.lstat(path / fname)
            except FileNotFoundError:
                raise DatasetError("is missing", file=path / fname, fix="re-run runner data prepare") from None
            if not stat.S_ISREG(st.st_mode) or st.st_size != info["size"]:
                raise DatasetError("does not have the size recorded in meta.json", file=path / fname)
    else:
        raise DatasetError(f"unknown verify mode {verify!r}", field="verify", fix="use 'hashes' or 'sizes'")

    def load(fname: str) -> np.ndarray:
        info = files[fname]
        try:
            arr = np.load(path / fname, mmap_mode="r" if mmap else None, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise DatasetError(f"is not a readable .npy file ({exc})", file=path / fname) from None
        if str(arr.dtype) != info["dtype"] or list(arr.shape) != info["shape"]:
            raise DatasetError(f"holds {arr.dtype}{list(arr.shape)}, meta.json says "
                               f"{info['dtype']}{info['shape']}", file=path / fname)
        return arr

    arrays = {fname: load(fname) for fname in files}
    _check_consistent(meta, arrays, path)
    return PreparedDataset(
        path=path, meta=meta,
        train_x=arrays["train_x.npy"], train_y=arrays["train_y.npy"],
        test_x=arrays["test_x.npy"], test_y=arrays["test_y.npy"],
        train_y_coarse=arrays.get("train_y_coarse.npy"), test_y_coarse=arrays.get("test_y_coarse.npy"),
        content_id=hashlib.sha256(meta_bytes).hexdigest(),
    )


def _parse_meta(data: bytes, where: Path) -> dict[str, Any]:
    try:
        meta = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(f"is not valid JSON ({exc})", file=where) from None
    except RecursionError:
        raise DatasetRefused("nests too deeply to be a prepared meta.json", file=where) from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise DatasetError(f"is not a {FORMAT} meta.json", file=where, field="format")
    if meta.get("format_version") != FORMAT_VERSION:
        raise DatasetError(f"has format_version {meta.get('format_version')!r}, this runner reads "
                           f"{FORMAT_VERSION}", file=where, field="format_version",
                           fix="re-run runner data prepare with this version")
    required = {"dataset", "classes", "counts", "files", "image_shape", "source"}
    missing = sorted(required - set(meta))
    if missing:
        raise DatasetError(f"lacks {', '.join(missing)}", file=where)
    files = meta["files"]
    needed = {"train_x.npy", "train_y.npy", "test_x.npy", "test_y.npy"}
    if not isinstance(files, dict) or not needed <= set(files):
        raise DatasetError("files must list train_x/train_y/test_x/test_y .npy", file=where, field="files")
    allowed = needed | {"train_y_coarse.npy", "test_y_coarse.npy"}
    for fname, info in files.items():
        if fname not in allowed:
            raise DatasetError(f"lists an unexpected file {fname!r}", file=where, field="files")
        if not (isinstance(info, dict) and _count(info.get("size")) and _sha256(info.get("sha256"))
                and info.get("dtype") in _DTYPES and isinstance(info.get("shape"), list)
                and 1 <= len(info["shape"]) <= 4 and all(_count(v) for v in info["shape"])):
            raise DatasetError("needs size, sha256 (64 hex digits), dtype (uint8 or int64) and shape (counts)",
                               file=where, field=f"files.{fname}", fix=_REPREPARE)
    _check_meta_fields(meta, where)
    return meta


_DTYPES = ("uint8", "int64")
_REPREPARE = "prepare the folder again: runner data prepare SOURCE --out DIR"


def _count(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**40


def _sha256(v: object) -> bool:
    return isinstance(v, str) and len(v) == 64 and all(c in "0123456789abcdef" for c in v)


def _names(v: object, most: int) -> bool:
    return isinstance(v, list) and 0 < len(v) <= most and all(isinstance(n, str) for n in v)


def _check_meta_fields(meta: dict[str, Any], where: Path) -> None:
    """The types and ranges of meta.json's facts (a hand-edited file gets one line, not a crash)."""
    def numbers(v: object) -> bool:
        return isinstance(v, list) and len(v) == 3 and all(
            isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x) for x in v)

    checks = {
        "dataset": (isinstance(meta["dataset"], str), "a dataset name"),
        "classes": (_names(meta["classes"], 100_000), "a list of class names"),
        "coarse_classes": (meta.get("coarse_classes") is None or _names(meta["coarse_classes"], 100_000),
                           "null or a list of names"),
        "counts": (isinstance(meta["counts"], dict) and all(_count(meta["counts"].get(k)) for k in ("train", "test")),
                   "{train: N, test: M} image counts"),
        "image_shape": (isinstance(meta["image_shape"], list) and len(meta["image_shape"]) == 3
                        and all(_count(v) and v > 0 for v in meta["image_shape"]), "[height, width, channels]"),
        "train_channel_mean": ("train_channel_mean" not in meta or numbers(meta["train_channel_mean"]),
                               "three finite numbers"),
        "train_channel_std": ("train_channel_std" not in meta or numbers(meta["train_channel_std"]),
                              "three finite numbers"),
    }
    for field_name, (ok, what) in checks.items():
        if not ok:
            raise DatasetError(f"must be {what}", file=where, field=field_name, fix=_REPREPARE)


def _check_consistent(meta: dict[str, Any], arrays: dict[str, np.ndarray], path: Path) -> None:
    k = len(meta["classes"])
    for split in ("train", "test"):
        x, y = arrays[f"{split}_x.npy"], arrays[f"{split}_y.npy"]
        n = meta["counts"][split]
        if x.dtype != np.uint8 or x.ndim != 4 or list(x.shape[1:]) != list(meta["image_shape"]) or len(x) != n:
            raise DatasetError(f"{split}_x must be uint8 (N={n}, {meta['image_shape']})", file=path / f"{split}_x.npy")
        if y.dtype != np.int64 or y.shape != (n,):
            raise DatasetError(f"{split}_y must be int64 of length {n}", file=path / f"{split}_y.npy")
        if n and (int(y.min()) < 0 or int(y.max()) >= k):
            raise DatasetError(f"holds labels outside 0..{k - 1}", file=path / f"{split}_y.npy")
