"""Resolve a spec's dataset to a verified, prepared folder the workload can mount read-only.

Synthetic data is generated in the official on-disk format, then goes through exactly the same
verify-and-prepare path as a real download. Prepared folders are cached by the source's content
hash, so a second reproduction reuses them.

The cache is safe for runners started together: each entry (a synthetic source, a prepared
folder) is created under its own lock file (`filelock`, an fcntl lock the kernel releases when a
process dies) in a staging folder renamed into place when complete, so a second runner waits for
the first (at most CACHE_WAIT_S) and then reuses its entry, and an entry is never half there.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from runner.errors import DatasetError, DatasetRefused
from runner.spec.model import Dataset

T = TypeVar("T")

CACHE_WAIT_S = 900.0  # generating and preparing the full synthetic CIFAR-100 takes minutes on 2 cores


@dataclass(frozen=True)
class ResolvedDataset:
    name: str
    source: Path  # the official-format folder or archive that was verified
    prepared: Path  # the folder mounted into runs at the data path: the .npy folder, or (decode: jpeg) the index
    source_root_hash: str  # root hash of the source's per-file manifest
    synthetic: bool
    images: Path | None = None  # decode: jpeg: the verified ImageNet folder itself, mounted read-only beside it
    decode: str = "shards"

    def fingerprint(self) -> dict:
        """environment/dataset.json: the source's root hash, what was mounted, and how images are decoded
        (`decode.mode`: `shards` pre-decoded on the host, `jpeg` decoded by the runs)."""
        from runner.data.manifest import dataset_manifest

        entries, root = dataset_manifest(self.prepared)
        if self.decode == "jpeg":
            from runner.data.jpeg_index import read_index

            doc, _ = read_index(self.prepared)
            decoded = {"decode": doc["decode"], "skipped": doc["skipped"], "counts": doc["counts"]}
        else:
            meta = json.loads((self.prepared / "meta.json").read_bytes())
            decoded = {"decode": {"mode": "shards", **meta["decode"]}, "skipped": meta.get("skipped", [])} \
                if "decode" in meta else {}
        return {"name": self.name, "synthetic": self.synthetic, "source_root_sha256": self.source_root_hash,
                "prepared_root_sha256": root, **decoded,
                "prepared_files": {rel: {"size": size, "sha256": sha} for rel, (size, sha) in entries.items()}}


def _make_readable(path: Path) -> None:
    """Prepared data is read by the container's unprivileged user: world-readable, not writable."""
    for p in [path, *path.rglob("*")]:
        os.chmod(p, 0o755 if p.is_dir() else 0o644)


@contextmanager
def cache_entry(folder: Path, wait_s: float | None = None) -> Iterator[Path]:
    """Hold the lock of one cache entry while it is checked or created.

    Another runner creating the same entry is waited for, at most `wait_s` seconds (default
    CACHE_WAIT_S). Staging folders a killed runner left beside the entry are removed (nobody
    else holds the lock).
    """
    from filelock import FileLock, Timeout

    wait_s = CACHE_WAIT_S if wait_s is None else wait_s
    folder.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(folder.parent / f".{folder.name}.lock")
    try:
        lock.acquire(timeout=wait_s)
    except Timeout:
        raise DatasetError(f"another runner has been creating this cache entry for {wait_s:g} s", file=folder,
                           fix="let it finish (or stop it) and run again, or give this run its own --cache") from None
    try:
        for stale in folder.parent.glob(f".{folder.name}.*.tmp"):
            shutil.rmtree(stale, ignore_errors=True)
        yield folder
    finally:
        lock.release()


def _cached(folder: Path, check: Callable[[Path], T]) -> T:
    """check(folder) on an existing cache entry; a failure names the entry and how to renew it."""
    try:
        return check(folder)
    except DatasetRefused:
        raise
    except DatasetError as e:
        raise DatasetError(f"cached entry is damaged: {e.describe()}", file=folder,
                           fix=f"remove {folder} and run again (runner recreates it)") from None


IMAGENET_PREPARED_SIZE = 224  # ImageNet shards: the side images are pre-decoded to (train: RRC from it)
SYNTHETIC_IMAGENET_SIDE = 128  # mean side of synthetic ImageNet JPEGs a spec generates


def _synthetic_imagenet(ds: Dataset, cache: Path) -> Path:
    from runner.data.synth_imagenet import GENERATOR_VERSION, write_synthetic_imagenet

    syn = ds.synthetic
    assert syn is not None
    k = ds.own_classes
    folder = (cache / "synthetic" / f"imagenet-{k}x{syn.train_size // k}-{syn.test_size // k}-{syn.seed}"
              f"-s{SYNTHETIC_IMAGENET_SIDE}-g{GENERATOR_VERSION}")
    with cache_entry(folder):
        if not folder.exists():
            write_synthetic_imagenet(folder, classes=k, per_class=syn.train_size // k,
                                     val_per_class=syn.test_size // k, side=SYNTHETIC_IMAGENET_SIDE, seed=syn.seed)
    return folder


def _synthetic_source(ds: Dataset, cache: Path) -> Path:
    from runner.data.synth import GENERATOR_VERSION, write_synthetic

    syn = ds.synthetic
    assert syn is not None
    if ds.name.value == "imagenet":
        return _synthetic_imagenet(ds, cache)
    folder = cache / "synthetic" / f"{ds.name.value}-{syn.train_size}-{syn.test_size}-{syn.seed}-g{GENERATOR_VERSION}"
    with cache_entry(folder):
        if not folder.exists():
            write_synthetic(ds.name.value, folder, train=syn.train_size, test=syn.test_size, seed=syn.seed)
    return folder


def _source_path(ds: Dataset, data_root: Path, spec_path: Path) -> Path:
    assert ds.path is not None
    path = Path(ds.path)
    if not path.is_absolute():
        path = data_root / path
    if not path.exists():
        raise DatasetError(f"dataset {ds.name.value} not found at {path}", file=spec_path, field="dataset.path",
                           fix=f"`runner data fetch {ds.name.value} --dest {data_root}` or pass --data-root")
    return path


def resolve_dataset(ds: Dataset, data_root: Path, cache: Path, spec_path: Path) -> ResolvedDataset:
    from runner.data.prepared import load_prepared, prepare
    from runner.data.sources import open_source

    synthetic = ds.synthetic is not None
    source = _synthetic_source(ds, cache) if synthetic else _source_path(ds, data_root, spec_path)
    reader = open_source(source, ds.name.value)
    imagenet = ds.name.value == "imagenet"
    if imagenet:  # a million files: hashed in parallel, unchanged files taken from the manifest cache
        reader.cache_dir = cache / "manifests"  # type: ignore[attr-defined]
    # checksums BEFORE anything is unpickled
    record = _cached(source, lambda _: reader.verify()) if synthetic else reader.verify()
    root_hash = record.root_sha256
    if ds.sha256 is not None and ds.sha256 != root_hash:
        raise DatasetError(f"dataset root hash is {root_hash}, the spec pins {ds.sha256}", file=spec_path,
                           field="dataset.sha256",
                           fix="use the dataset the spec was written for, or update the pin if you changed it")
    if ds.decode == "jpeg":
        return _jpeg_index(ds, reader, record, source, cache, spec_path, synthetic)
    size = IMAGENET_PREPARED_SIZE if imagenet else None
    suffix = f"-s{size}" if size else ""
    prepared_dir = cache / "prepared" / f"{ds.name.value}-{root_hash[:16]}{suffix}"
    with cache_entry(prepared_dir):  # never inside the dataset folder, which may be read-only
        if prepared_dir.exists():
            _cached(prepared_dir, load_prepared)  # re-checks every file's sha256
        else:
            prepare(source, prepared_dir, name=ds.name.value, size=size)
        _make_readable(prepared_dir)
    return ResolvedDataset(ds.name.value, source, prepared_dir, root_hash, synthetic)


def _jpeg_index(ds: Dataset, reader, record, source: Path, cache: Path, spec_path: Path,
                synthetic: bool) -> ResolvedDataset:
    """decode: jpeg: nothing is pre-decoded. The index of the verified folder (every image
    decode-checked once, failures recorded as skips: runner/data/jpeg_index.py) is cached by the
    root hash; the runs mount it at the data path and the ImageNet folder itself read-only."""
    from runner.data.files import staged_dir
    from runner.data.imagenet import ImagenetReader
    from runner.data.jpeg_index import read_index, write_index

    if not isinstance(reader, ImagenetReader):  # the planner refuses this first (data.decode)
        raise DatasetError(f"decode: jpeg reads ImageNet JPEG folders, not {ds.name.value}", file=spec_path,
                           field="dataset.decode", fix="drop decode (or use decode: shards)")
    root_hash = record.root_sha256
    folder = cache / "prepared" / f"imagenet-{root_hash[:16]}-jpeg-s{IMAGENET_PREPARED_SIZE}"

    def check(path: Path) -> None:
        doc, _ = read_index(path)
        if doc["source"].get("root_sha256") != root_hash:
            raise DatasetError("indexes another version of the dataset", file=path / "index.json",
                               field="source.root_sha256")

    with cache_entry(folder):  # never inside the dataset folder, which may be read-only
        if folder.exists():
            _cached(folder, check)
        else:
            with staged_dir(folder) as tmp:
                write_index(reader.index(), record, tmp, IMAGENET_PREPARED_SIZE)
        _make_readable(folder)
    return ResolvedDataset(ds.name.value, source, folder, root_hash, synthetic, images=source.resolve(),
                           decode="jpeg")
