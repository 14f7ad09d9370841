"""Hostile dataset input through the real CLI: every case is one line, exit 2, nothing written,
in under 2 s (and a gzip bomb in under 200 MB of memory, measured on a child process).

The corpus: FIFOs, devices and links in place of dataset files (each used to hang, or read
/dev/zero), checksum and manifest files that are not plain files or are huge, compression bombs
(a 3 GiB member, many entries, a header claiming more than any batch), labels no int64 holds.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import pickle
import signal
import stat
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from runner.data.manifest import MANIFEST_NAME, dataset_manifest, format_manifest_file
from runner.data.pickles import dumps_official
from runner.data.synth import SynthResult
from tests.helpers import REPO

FOLDER = "cifar-10-batches-py"
GIB = 1 << 30


@contextmanager
def _hang_guard(seconds: int = 20) -> Iterator[None]:
    """A FIFO opened for reading blocks for ever: SIGALRM turns such a hang into a failure (the
    entry point reports it as an internal error, exit 1) instead of a test run that never ends."""
    def ring(signum, frame):
        raise TimeoutError(f"still blocked after {seconds} s")

    old = signal.signal(signal.SIGALRM, ring)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _snapshot(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.lstat().st_size for p in root.rglob("*")}


def _fifo(path: Path) -> None:
    path.unlink()
    os.mkfifo(path)


def _device(path: Path) -> None:
    path.unlink()
    try:
        os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(1, 5))  # what /dev/zero is
    except PermissionError:
        pytest.skip("creating a device node needs CAP_MKNOD")


def _link(target: str) -> Callable[[Path], None]:
    def make(path: Path) -> None:
        path.unlink()
        path.symlink_to(target)
    return make


def _resign(folder: Path) -> None:
    entries, _ = dataset_manifest(folder, exclude=frozenset({MANIFEST_NAME}))
    (folder / MANIFEST_NAME).write_bytes(format_manifest_file(entries))


def _write_archive(s: SynthResult, data: bytes) -> Path:
    """Replace the synthetic archive with `data` and sign it (a checksum file that matches)."""
    s.archive.write_bytes(data)
    s.checksum_file.write_text(f"{hashlib.sha256(data).hexdigest()}  {s.archive.name}\n")
    return s.archive


def _zeros_gz(n: int) -> bytes:
    """`n` zero bytes through gzip: one member of 64 MiB of zeros, repeated (gzip members concatenate),
    so a 3 GiB bomb is built in a fraction of a second and never exists uncompressed."""
    block = 64 << 20
    assert n % block == 0
    one = gzip.compress(bytes(block), compresslevel=9, mtime=0)
    return one * (n // block)


def _tar_header(name: str, size: int, kind: bytes = tarfile.REGTYPE) -> bytes:
    info = tarfile.TarInfo(name)
    info.size, info.type, info.mode = size, kind, 0o644
    return info.tobuf(format=tarfile.GNU_FORMAT)


def gzip_bomb(s: SynthResult) -> Path:
    """The defect's bomb: a small .tar.gz whose data_batch_1 is 3 GiB of zeros."""
    header = gzip.compress(_tar_header(f"{FOLDER}/data_batch_1", 3 * GIB), mtime=0)
    return _write_archive(s, header + _zeros_gz(3 * GIB))


def pax_bomb(s: SynthResult) -> Path:
    """A pax extended header claiming 3 GiB (tarfile reads a pax header whole, whatever it claims)."""
    header = gzip.compress(_tar_header("././@PaxHeader", 3 * GIB, tarfile.XHDTYPE), mtime=0)
    return _write_archive(s, header + _zeros_gz(GIB))


def many_entries(s: SynthResult) -> Path:
    one = _tar_header(FOLDER, 0, tarfile.DIRTYPE)
    return _write_archive(s, gzip.compress(one * 10_000 + bytes(1024), mtime=0))


def oversized_member(s: SynthResult) -> Path:
    """A header claiming 600 MiB for one batch, with none of the bytes behind it."""
    return _write_archive(s, gzip.compress(_tar_header(f"{FOLDER}/data_batch_1", 600 << 20) + bytes(4096), mtime=0))


def in_folder(make: Callable[[Path], None], name: str = "data_batch_1", manifest: bool = True):
    def case(s: SynthResult) -> Path:
        if not manifest:
            (s.folder / MANIFEST_NAME).unlink()
        make(s.folder / name)
        return s.folder
    return case


def as_archive(make: Callable[[Path], None]):
    def case(s: SynthResult) -> Path:
        make(s.archive)
        return s.archive
    return case


def huge_checksum_file(s: SynthResult) -> Path:
    with open(s.checksum_file, "wb") as f:
        f.truncate(10 << 20)  # sparse: 10 MiB that cost no disk
    return s.archive


VERIFY_CASES = {
    "fifo batch": (in_folder(_fifo), "is a FIFO"),
    "fifo batch, no manifest": (in_folder(_fifo, manifest=False), "is a FIFO"),
    "device batch": (in_folder(_device), "is a device"),
    "batch linked to /dev/zero": (in_folder(_link("/dev/zero")), "symlinks are refused"),
    "batch linked outside": (in_folder(_link("/etc/hostname")), "symlink escaping the folder"),
    "fifo manifest": (in_folder(_fifo, MANIFEST_NAME), "SHA256SUMS: is a FIFO"),
    "manifest linked to /dev/zero": (in_folder(_link("/dev/zero"), MANIFEST_NAME), "SHA256SUMS: is a symbolic link"),
    "fifo archive": (as_archive(_fifo), "is a FIFO, not a dataset archive"),
    "archive linked to /dev/zero": (as_archive(_link("/dev/zero")), "is a device, not a dataset archive"),
    "fifo checksum file": (lambda s: (_fifo(s.checksum_file), s.archive)[1], "sha256: is a FIFO"),
    "huge checksum file": (huge_checksum_file, "limit for a checksum file"),
    "gzip bomb": (gzip_bomb, "expands to more than 16777216 bytes"),
    "pax header bomb": (pax_bomb, "expands to more than 16777216 bytes"),
    "many entries": (many_entries, "holds more than 32 entries"),
    "oversized member": (oversized_member, "claims 629145600 bytes"),
}


@pytest.mark.parametrize("case", VERIFY_CASES, ids=list(VERIFY_CASES))
@pytest.mark.parametrize("command", ["verify", "prepare"])
def test_refused_in_one_line_exit_2_nothing_written(cli, synth10, tmp_path, case, command):
    make, needle = VERIFY_CASES[case]
    target = make(synth10)
    before = _snapshot(tmp_path)
    args = ["data", command, target, "--name", "cifar10"]
    if command == "prepare":
        args += ["--out", tmp_path / "prepared"]
    t0 = time.process_time()
    with _hang_guard():
        res = cli(*args)
    elapsed = time.process_time() - t0  # CPU time: five test suites share two cores
    assert res.code == 2, res
    assert res.err.startswith("error: ") and res.err.count("\n") == 1 and needle in res.err, res.err
    assert elapsed < 2, f"{case}: {elapsed:.2f} s"
    assert _snapshot(tmp_path) == before  # nothing written (prepare: no folder, no staging left)


# Runs argv[1:] and prints its peak RSS (KiB) last on stdout. The child's ru_maxrss counts the
# memory of whatever process forked it until it exec'd, so the fork must come from this small
# process, not from the test run (hundreds of MB by then).
PEAK_RSS = """
import resource, subprocess, sys
code = subprocess.run(sys.argv[1:]).returncode
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
sys.exit(code)
"""


def test_a_gzip_bomb_costs_under_200_mb(synth10):
    archive = gzip_bomb(synth10)
    proc = subprocess.run([sys.executable, "-c", PEAK_RSS, sys.executable, "-m", "runner.cli", "data", "verify",
                           str(archive)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "expands to more than" in proc.stderr
    peak_kib = int(proc.stdout.split()[-1])
    assert peak_kib * 1024 < 200e6, f"peak {peak_kib // 1024} MB"


def _edit_labels(s: SynthResult, edit) -> None:
    path = s.folder / "data_batch_2"
    batch = pickle.loads(path.read_bytes(), encoding="bytes")
    edit(batch[b"labels"])
    path.write_bytes(dumps_official(batch))
    _resign(s.folder)


@pytest.mark.parametrize("value,needle", [
    (2**70, "labels[3]: an integer of 71 bits is out of range 0..9"),
    (-(10**5000), "labels[3]: a negative integer of 16610 bits is out of range 0..9"),
    (-1, "labels[3]: -1 is out of range 0..9"),
    (10, "labels[3]: 10 is out of range 0..9"),
], ids=["2**70", "-10**5000", "-1", "10"])
def test_labels_out_of_range_name_file_and_field(cli, synth10, tmp_path, value, needle):
    _edit_labels(synth10, lambda labels: labels.__setitem__(3, value))
    before = _snapshot(tmp_path)
    res = cli("data", "prepare", synth10.folder, "--out", tmp_path / "prepared")
    assert res.code == 2, res
    assert res.err.count("\n") == 1 and f"{FOLDER}/data_batch_2: {needle}" in res.err, res.err
    assert _snapshot(tmp_path) == before


def test_reproduce_refuses_a_bomb_as_its_dataset(cli, synth10, tmp_path, monkeypatch):
    archive = gzip_bomb(synth10)
    spec = tmp_path / "bomb.yaml"
    text = (REPO / "tests" / "specs" / "tiny.yaml").read_text()
    spec.write_text(text.replace("  synthetic: {train_size: 256, test_size: 64, seed: 1}", f"  path: {archive}"))
    monkeypatch.chdir(tmp_path)
    before = _snapshot(tmp_path)
    res = cli("reproduce", spec, "--engine", "local")
    assert res.code == 2, res
    assert res.err.count("\n") == 1 and "expands to more than" in res.err, res.err
    assert _snapshot(tmp_path) == before  # no results, no cache


def test_bounded_gunzip_reads_every_gzip_member(synth10):
    """gzip allows concatenated members (the bombs above use it); a genuine archive split in two
    members still reads."""
    from runner.data.sources import open_source

    raw = gzip.decompress(synth10.archive.read_bytes())
    half = len(raw) // 2
    _write_archive(synth10, gzip.compress(raw[:half], mtime=0) + gzip.compress(raw[half:], mtime=0))
    assert open_source(synth10.archive).read().train_x.shape == (60, 32, 32, 3)


META_EDITS = {
    "classes not a list": (lambda m: m.__setitem__("classes", 5), "classes: must be a list of class names"),
    "classes not names": (lambda m: m.__setitem__("classes", list(range(10))), "classes: must be a list"),
    "counts a list": (lambda m: m.__setitem__("counts", [1, 2]), "counts: must be"),
    "count past int64": (lambda m: m["counts"].__setitem__("train", 2**70), "counts: must be"),
    "image_shape an int": (lambda m: m.__setitem__("image_shape", 3), "image_shape: must be"),
    "shape past int64": (lambda m: m["files"]["train_x.npy"].__setitem__("shape", [2**70, 32, 32, 3]),
                         "files.train_x.npy: needs"),
    "object dtype": (lambda m: m["files"]["train_x.npy"].__setitem__("dtype", "object"), "files.train_x.npy"),
    "dataset an int": (lambda m: m.__setitem__("dataset", 5), "dataset: must be a dataset name"),
    "mean a string": (lambda m: m.__setitem__("train_channel_mean", "x"), "train_channel_mean: must be"),
}


@pytest.mark.parametrize("case", META_EDITS, ids=list(META_EDITS))
def test_a_hand_edited_meta_json_is_one_line_not_a_crash(cli, prepared10, tmp_path, case):
    """meta.json pins every file's hash, so it is the one file a checksum cannot vouch for."""
    import json
    import shutil

    edit, needle = META_EDITS[case]
    folder = tmp_path / "prepared"
    shutil.copytree(prepared10.path, folder)
    meta = json.loads((folder / "meta.json").read_text())
    edit(meta)
    (folder / "meta.json").chmod(0o644)
    (folder / "meta.json").write_text(json.dumps(meta))
    res = cli("data", "verify", folder)
    assert res.code == 1 and res.err.count("\n") == 1 and needle in res.err, res.err  # a failed check


def test_a_deeply_nested_meta_json_is_refused(cli, prepared10, tmp_path):
    import shutil

    folder = tmp_path / "prepared"
    shutil.copytree(prepared10.path, folder)
    (folder / "meta.json").chmod(0o644)
    (folder / "meta.json").write_text("[" * 100_000 + "]" * 100_000)
    res = cli("data", "verify", folder)
    assert res.code == 2 and "nests too deeply" in res.err and res.err.count("\n") == 1, res.err


def test_synth_refuses_what_the_reader_would_refuse(cli, tmp_path):
    res = cli("data", "synth", "--like", "cifar100", "--out", tmp_path / "big", "--train", "200000", "--test", "10")
    assert res.code == 2 and "--train/--test" in res.err and res.err.count("\n") == 1, res.err
    assert not (tmp_path / "big").exists()


@pytest.mark.parametrize("which", ["cifar-10-python.tar.gz", "cifar-10-python.tar.gz.part"])
def test_fetch_refuses_a_fifo_where_the_download_goes(cli, tmp_path, which):
    os.mkfifo(tmp_path / which)
    with _hang_guard():
        res = cli("data", "fetch", "cifar10", "--dest", tmp_path, "--url", "http://127.0.0.1:9/x",
                  "--sha256", "0" * 64, "--quiet")
    assert res.code == 2 and f"{which}: is a special file or link" in res.err, res.err
