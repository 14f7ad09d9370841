"""The dataset layer, shared by the host CLI and the in-container workloads.

Imports only the standard library and numpy (rich only lazily, for fetch's progress bar).

    open_source(path, name=None) -> DatasetReader       detect + open a CIFAR archive/folder
    prepare(source, out_dir, name=None) -> PreparedDataset
    load_prepared(dir, mmap=True, verify="hashes"|"sizes") -> PreparedDataset
    dataset_manifest(path) -> (dict[relpath, (size, sha256)], root_hash)
    plan_epoch(seed, epoch, n, ops) -> EpochPlan;  apply_batch(x, plan, positions, ops, mean, std)
    BatchIterator(prepared, split, batch_size, seed, epoch, ops, mean, std, drop_last, prefetch)
    measure_loader_throughput(prepared, batch_size, ops, seconds) -> images/s
    write_synthetic(like, out, train, test, seed) -> SynthResult
    fetch(name, dest, url=None, sha256=None) -> Path
    REGISTRY / get_dataset(name) -> DatasetInfo
"""

from runner.data.augment import EpochPlan, apply_batch, normalize_ops, plan_epoch
from runner.data.fetch import fetch
from runner.data.loader import BatchIterator, measure_loader_throughput
from runner.data.manifest import dataset_manifest
from runner.data.prepared import PreparedDataset, load_prepared, prepare
from runner.data.reader import DatasetReader, RawDataset, SourceRecord
from runner.data.registry import REGISTRY, DatasetInfo, get_dataset
from runner.data.sources import open_source
from runner.data.synth import SynthResult, write_synthetic

__all__ = [
    "REGISTRY", "BatchIterator", "DatasetInfo", "DatasetReader", "EpochPlan", "PreparedDataset",
    "RawDataset", "SourceRecord", "SynthResult", "apply_batch", "dataset_manifest", "fetch", "get_dataset",
    "load_prepared", "measure_loader_throughput", "normalize_ops", "open_source", "plan_epoch", "prepare",
    "write_synthetic",
]
