"""Small synthetic CIFAR sources (official layout) shared by the dataset tests."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from runner.data.synth import SynthResult, write_synthetic


@pytest.fixture(scope="session")
def synth10_master(tmp_path_factory) -> SynthResult:
    return write_synthetic("cifar10", tmp_path_factory.mktemp("s10") / "out", train=60, test=20, seed=7)


@pytest.fixture(scope="session")
def synth100_master(tmp_path_factory) -> SynthResult:
    return write_synthetic("cifar100", tmp_path_factory.mktemp("s100") / "out", train=200, test=40, seed=7)


def _copy(result: SynthResult, dest: Path) -> SynthResult:
    out = dest / "synth"
    shutil.copytree(result.out, out)
    return SynthResult(out=out, folder=out / result.folder.name, archive=out / result.archive.name,
                       checksum_file=out / result.checksum_file.name, archive_sha256=result.archive_sha256,
                       manifest_root=result.manifest_root, counts=result.counts)


@pytest.fixture
def synth10(synth10_master, tmp_path) -> SynthResult:
    """A private, writable copy (tests corrupt it)."""
    return _copy(synth10_master, tmp_path)


@pytest.fixture
def synth100(synth100_master, tmp_path) -> SynthResult:
    return _copy(synth100_master, tmp_path)


@pytest.fixture(scope="session")
def prepared10(synth10_master, tmp_path_factory):
    from runner.data.prepared import prepare

    return prepare(synth10_master.archive, tmp_path_factory.mktemp("p10") / "prepared")
