"""Resolve a spec's dataset to a verified, prepared folder the workload can mount read-only.

Synthetic data is generated in the official on-disk format, then goes through exactly the same
verify-and-prepare path as a real download. Prepared folders are cached by the source's content
hash, so a second reproduction reuses them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from runner.errors import DatasetError
from runner.spec.model import Dataset


@dataclass(frozen=True)
class ResolvedDataset:
    name: str
    source: Path  # the official-format folder or archive that was verified
    prepared: Path  # the .npy folder mounted into runs
    source_root_hash: str  # root hash of the source's per-file manifest
    synthetic: bool

    def fingerprint(self) -> dict:
        from runner.data.manifest import dataset_manifest

        entries, root = dataset_manifest(self.prepared)
        return {"name": self.name, "synthetic": self.synthetic, "source_root_sha256": self.source_root_hash,
                "prepared_root_sha256": root,
                "prepared_files": {rel: {"size": size, "sha256": sha} for rel, (size, sha) in entries.items()}}


def _make_readable(path: Path) -> None:
    """Prepared data is read by the container's unprivileged user: world-readable, not writable."""
    for p in [path, *path.rglob("*")]:
        os.chmod(p, 0o755 if p.is_dir() else 0o644)


def _synthetic_source(ds: Dataset, cache: Path) -> Path:
    from runner.data.synth import GENERATOR_VERSION, write_synthetic

    syn = ds.synthetic
    assert syn is not None
    folder = cache / "synthetic" / f"{ds.name.value}-{syn.train_size}-{syn.test_size}-{syn.seed}-g{GENERATOR_VERSION}"
    if not folder.exists():
        folder.parent.mkdir(parents=True, exist_ok=True)
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
    record = reader.verify()  # checksums BEFORE anything is unpickled
    root_hash = record.root_sha256
    if ds.sha256 is not None and ds.sha256 != root_hash:
        raise DatasetError(f"dataset root hash is {root_hash}, the spec pins {ds.sha256}", file=spec_path,
                           field="dataset.sha256",
                           fix="use the dataset the spec was written for, or update the pin if you changed it")
    prepared_dir = cache / "prepared" / f"{ds.name.value}-{root_hash[:16]}"
    if prepared_dir.exists():
        load_prepared(prepared_dir)  # re-checks every file's sha256
    else:
        prepared_dir.parent.mkdir(parents=True, exist_ok=True)
        prepare(source, prepared_dir, name=ds.name.value)
    _make_readable(prepared_dir)
    return ResolvedDataset(ds.name.value, source, prepared_dir, root_hash, synthetic)
