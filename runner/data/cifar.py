"""Readers for the official CIFAR-10 / CIFAR-100 "python version" archives and folders.

Sources accepted, each verified before anything is unpickled:

* the archive (`cifar-10-python.tar.gz`, `cifar-100-python.tar.gz`): its md5 must equal the one
  published on https://www.cs.toronto.edu/~kriz/cifar.html, or (synthetic data) the sha256 in the
  `<archive>.sha256` file written beside it. Members are read from the verified bytes in memory;
  nothing is extracted to disk.
* the extracted folder (`cifar-10-batches-py/`, `cifar-100-python/`): every file must match the
  `SHA256SUMS` manifest inside it, or, with no manifest, each batch must match its published md5.

The bytes that are hashed are the bytes that are decoded (no re-read in between).
"""

from __future__ import annotations

import mmap
import tarfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from runner.data.files import md5_bytes, read_regular_file, sha256_bytes
from runner.data.manifest import MANIFEST_NAME, dataset_manifest, root_hash, verify_folder_manifest
from runner.data.pickles import safe_loads
from runner.data.reader import RawDataset, SourceRecord
from runner.errors import DatasetError, DatasetRefused

IMAGE_SIDE = 32
PIXELS = IMAGE_SIDE * IMAGE_SIDE * 3  # 3072: 1024 red, then 1024 green, then 1024 blue, row-major

# What a CIFAR source may make us read or decompress: the official files with room to spare, so a
# hostile archive or file (a gzip bomb, /dev/zero behind a file name) is refused in bounded time
# and memory. The official archives are 163-170 MB and expand about 1.1:1 to 178-185 MB in 4-8
# entries; the largest file (CIFAR-100 `train`) is 155 MB.
MAX_ARCHIVE_BYTES = 1 << 30
MAX_FILE_BYTES = 512 << 20  # one batch file, in a folder or an archive
MAX_EXTRACTED_BYTES = 1 << 30  # an archive's decompressed tar stream, all members together
MAX_EXPANSION = 4  # decompressed / compressed: images compress ~1.1:1 (synthetic ones too), zeros ~1000:1
MIN_EXTRACTED_CAP = 16 << 20  # a small archive may always expand to this much
MAX_MEMBERS = 32
MAX_CHECKSUM_FILE_BYTES = 4096
_CHUNK = 1 << 20


@dataclass(frozen=True)
class CifarLayout:
    """Everything that differs between CIFAR-10 and CIFAR-100 on disk."""

    name: str
    folder: str
    archive: str
    url: str
    archive_md5: str  # published on the dataset page
    archive_sha256: str  # widely recorded (torchvision prototype, keras); not re-verified here
    archive_size: int
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    meta_file: str
    member_md5: Mapping[str, str]  # per-file md5 of the official extracted folder
    label_key: bytes
    class_names_key: bytes
    num_classes: int
    official_counts: tuple[int, int]  # (train, test)
    coarse_key: bytes | None = None
    coarse_names_key: bytes | None = None
    num_coarse: int = 0
    extra_archive_members: tuple[str, ...] = ()  # members the archive may hold and we ignore

    @property
    def required_files(self) -> tuple[str, ...]:
        return (*self.train_files, *self.test_files, self.meta_file)

    def batch_keys(self) -> frozenset[bytes]:
        keys = {b"batch_label", b"data", b"filenames", self.label_key}
        if self.coarse_key is not None:
            keys.add(self.coarse_key)
        return frozenset(keys)


CIFAR10 = CifarLayout(
    name="cifar10",
    folder="cifar-10-batches-py",
    archive="cifar-10-python.tar.gz",
    url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    archive_md5="c58f30108f718f92721af3b95e74349a",
    archive_sha256="6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
    archive_size=170_498_071,
    train_files=tuple(f"data_batch_{i}" for i in range(1, 6)),
    test_files=("test_batch",),
    meta_file="batches.meta",
    member_md5={
        "data_batch_1": "c99cafc152244af753f735de768cd75f",
        "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
        "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
        "data_batch_4": "634d18415352ddfa80567beed471001a",
        "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
        "test_batch": "40351d587109b95175f43aff81a1287e",
        "batches.meta": "5ff9c542aee3614f3951f8cda6e48888",
    },
    label_key=b"labels",
    class_names_key=b"label_names",
    num_classes=10,
    official_counts=(50_000, 10_000),
    extra_archive_members=("readme.html",),
)

CIFAR100 = CifarLayout(
    name="cifar100",
    folder="cifar-100-python",
    archive="cifar-100-python.tar.gz",
    url="https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
    archive_md5="eb9058c3a382ffc7106e4002c42a8d85",
    archive_sha256="85cd44d02ba6437773c5bbd22e183051d648de2e7d6b014e1ef29b855ba677a7",
    archive_size=169_001_437,
    train_files=("train",),
    test_files=("test",),
    meta_file="meta",
    member_md5={
        "train": "16019d7e3df5f24257cddd939b257f8d",
        "test": "f0ef6b0ae62326f3e7ffdfab6717acfc",
        "meta": "7973b15100ade9c7d40fb424638fde48",
    },
    label_key=b"fine_labels",
    class_names_key=b"fine_label_names",
    num_classes=100,
    official_counts=(50_000, 10_000),
    coarse_key=b"coarse_labels",
    coarse_names_key=b"coarse_label_names",
    num_coarse=20,
)

LAYOUTS: dict[str, CifarLayout] = {CIFAR10.name: CIFAR10, CIFAR100.name: CIFAR100}


def checksum_file_for(archive: Path) -> Path:
    """The `sha256sum`-format file written beside a (synthetic) archive."""
    return archive.with_name(archive.name + ".sha256")


def read_checksum_file(path: Path, expected_name: str) -> str:
    text = read_regular_file(path, MAX_CHECKSUM_FILE_BYTES, "checksum file").decode("utf-8", errors="replace").strip()
    sha, _, name = text.partition("  ")
    sha = sha.strip().lower()
    if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha) or "\n" in text:
        raise DatasetError("is not a one-line sha256sum file", file=path,
                           fix="it must read '<64 hex digits>  <archive name>'")
    if name.strip().lstrip("*") != expected_name:
        raise DatasetError(f"names {name.strip()!r}, not {expected_name!r}", file=path)
    return sha


class CifarReader:
    """A CIFAR source: the archive file or the extracted folder. Implements DatasetReader."""

    def __init__(self, layout: CifarLayout, path: str | Path) -> None:
        self.layout = layout
        self.name = layout.name
        self.path = Path(path)

    # -- DatasetReader -----------------------------------------------------------------------
    def verify(self) -> SourceRecord:
        return self._load_verified()[0]

    def read(self) -> RawDataset:
        record, members = self._load_verified()
        return decode(self.layout, members, record, self.path)

    # -- verification --------------------------------------------------------------------------
    def _load_verified(self) -> tuple[SourceRecord, Mapping[str, bytes | memoryview]]:
        # The path given may itself be a link (datasets/ pointing at a shared disk); nothing
        # inside the dataset may be.
        real = self.path.resolve()
        if real.is_dir():
            return self._verified_folder(real)
        if not real.exists():
            raise DatasetError("does not exist", file=self.path)
        return self._verified_archive(real)  # refuses a FIFO, device or socket by name

    def _verified_archive(self, path: Path) -> tuple[SourceRecord, dict[str, memoryview]]:
        layout = self.layout
        data = read_regular_file(path, MAX_ARCHIVE_BYTES, "dataset archive")
        md5, sha = md5_bytes(data), sha256_bytes(data)
        if md5 == layout.archive_md5:
            verified_by, official = "official-md5", True
        else:
            sidecar = checksum_file_for(path)
            if not sidecar.exists():
                raise DatasetError(
                    f"does not match the official {layout.name} checksum "
                    f"(md5 {md5}, expected {layout.archive_md5}; {len(data)} bytes, "
                    f"expected {layout.archive_size})",
                    file=path, fix="the download is truncated or corrupt: remove it and fetch it again")
            if read_checksum_file(sidecar, path.name) != sha:
                raise DatasetError(f"does not match the sha256 in {sidecar.name} (got {sha})", file=path,
                                   fix="the archive is truncated or corrupt: regenerate or re-copy it")
            verified_by, official = "checksum-file", False
        members = _archive_members(layout, data, path)
        files = {f"{layout.folder}/{k}": sha256_bytes(v) for k, v in members.items()}
        record = SourceRecord(kind="archive", name=path.name, verified_by=verified_by, official=official,
                              root_sha256=root_hash({path.name: (len(data), sha)}), sha256=sha, md5=md5,
                              files=files)
        return record, members

    def _verified_folder(self, folder: Path) -> tuple[SourceRecord, dict[str, bytes | memoryview]]:
        layout = self.layout
        members: dict[str, bytes | memoryview] = {}
        if (folder / MANIFEST_NAME).exists():
            manifest, root = verify_folder_manifest(folder)
            for rel in layout.required_files:
                if rel not in manifest:
                    raise DatasetError(f"is missing (a {layout.name} folder needs it)", file=folder / rel)
                members[rel] = read_regular_file(folder / rel, MAX_FILE_BYTES)
                if sha256_bytes(members[rel]) != manifest[rel][1]:
                    raise DatasetError("changed while it was being read", file=folder / rel)
            official = all(md5_bytes(members[r]) == layout.member_md5[r] for r in layout.required_files)
            verified_by, root_sha = "manifest", root
        else:
            # refuses symlinks and special files anywhere in the folder; gives the root hash
            manifest, root_sha = dataset_manifest(folder, exclude=frozenset({MANIFEST_NAME}))
            for rel in layout.required_files:
                if rel not in manifest:
                    raise DatasetError(f"is missing (a {layout.name} folder needs it)", file=folder / rel)
                members[rel] = read_regular_file(folder / rel, MAX_FILE_BYTES)
                if sha256_bytes(members[rel]) != manifest[rel][1]:
                    raise DatasetError("changed while it was being read", file=folder / rel)
                got = md5_bytes(members[rel])
                if got != layout.member_md5[rel]:
                    raise DatasetError(
                        f"does not match the official md5 (got {got}) and the folder has no {MANIFEST_NAME}",
                        file=folder / rel,
                        fix=f"prepare from the verified archive, or write {MANIFEST_NAME} with "
                            "`runner data manifest PATH --write` if you trust this copy")
            verified_by, official = "official-member-md5", True
        files = {rel: sha256_bytes(b) for rel, b in members.items()}
        record = SourceRecord(kind="folder", name=folder.name, verified_by=verified_by, official=official,
                              root_sha256=root_sha, files=files)
        return record, members


def _archive_members(layout: CifarLayout, data: bytes, path: Path) -> dict[str, memoryview]:
    """The expected regular-file members of verified archive bytes (nothing extracted to disk).

    The gzip stream is decompressed under a cap (MAX_EXPANSION x the archive, at least
    MIN_EXTRACTED_CAP, at most MAX_EXTRACTED_BYTES), so a bomb is refused after at most that many
    bytes whatever its headers claim; members past MAX_FILE_BYTES or MAX_MEMBERS are refused by
    their headers. Members are views into the decompressed bytes (no second copy).
    """
    allowed = set(layout.required_files) | set(layout.extra_archive_members)
    cap = min(MAX_EXTRACTED_BYTES, max(MIN_EXTRACTED_CAP, MAX_EXPANSION * len(data)))
    stream, size = _gunzip(data, cap, path)  # zeros after `size`: tarfile reads them as the end
    view = memoryview(stream)
    members: dict[str, memoryview] = {}
    try:
        with tarfile.open(fileobj=stream, mode="r:") as tar:  # type: ignore[arg-type]
            for count, info in enumerate(tar, start=1):
                if count > MAX_MEMBERS:
                    raise DatasetRefused(f"holds more than {MAX_MEMBERS} entries", file=path,
                                         fix=f"not a {layout.name} python-version archive")
                name = info.name.rstrip("/")
                if name == layout.folder and info.isdir():
                    continue
                top, _, rel = name.partition("/")
                if top != layout.folder or rel not in allowed or "/" in rel:
                    raise DatasetRefused(f"holds an unexpected member {info.name!r}", file=path,
                                         fix=f"not a {layout.name} python-version archive")
                if not info.isreg() or info.issparse():
                    raise DatasetRefused(f"member {info.name!r} is not a regular file", file=path)
                if rel in members:
                    raise DatasetRefused(f"holds member {info.name!r} twice", file=path)
                if info.size > MAX_FILE_BYTES:
                    raise DatasetRefused(f"member {info.name!r} claims {info.size} bytes, more than the "
                                         f"{MAX_FILE_BYTES}-byte limit for a batch file", file=path,
                                         fix=f"not a {layout.name} python-version archive")
                if info.offset_data + info.size > size:
                    raise DatasetError(f"member {info.name!r} is cut short", file=path,
                                       fix="the archive is truncated or corrupt: fetch or regenerate it")
                members[rel] = view[info.offset_data:info.offset_data + info.size]
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise DatasetError(f"is not a readable .tar.gz ({exc})", file=path,
                           fix="the archive is truncated or corrupt: fetch or regenerate it") from None
    for rel in layout.required_files:
        if rel not in members:
            raise DatasetError(f"has no member {layout.folder}/{rel}", file=path,
                               fix=f"not a complete {layout.name} archive")
    return {rel: members[rel] for rel in layout.required_files}


def _gunzip(data: bytes, cap: int, path: Path) -> tuple[mmap.mmap, int]:
    """The decompressed bytes of a gzip file (every gzip member, in turn) and their count;
    refused past `cap` bytes.

    zlib's max_length bounds each step's output, so refusing costs at most `cap` bytes and the
    time to produce them (gzip.decompress and tarfile's "r:gz" have no cap). The bytes go into an
    anonymous map of `cap` bytes: only the pages written take memory, and there is no copy when
    it grows.
    """
    out = mmap.mmap(-1, cap + 1)
    total, pos = 0, 0
    source = memoryview(data)
    inflater = zlib.decompressobj(wbits=31)  # 31: gzip framing
    try:
        while pos < len(source):
            piece = source[pos:pos + _CHUNK]
            chunk = inflater.decompress(piece, cap + 1 - total)
            while True:
                if total + len(chunk) > cap:
                    raise DatasetRefused(
                        f"expands to more than {cap} bytes ({MAX_EXPANSION}x its size, at least "
                        f"{MIN_EXTRACTED_CAP}, at most {MAX_EXTRACTED_BYTES}); a CIFAR archive expands about 1.1x",
                        file=path, fix="not a genuine dataset archive (a compression bomb?); fetch the official one")
                out[total:total + len(chunk)] = chunk
                total += len(chunk)
                if inflater.eof or not inflater.unconsumed_tail:
                    break
                chunk = inflater.decompress(inflater.unconsumed_tail, cap + 1 - total)
            if inflater.eof:  # one gzip member ended; another may follow (gzip allows concatenation)
                pos += len(piece) - len(inflater.unused_data)
                if pos < len(source):
                    inflater = zlib.decompressobj(wbits=31)
            else:
                pos += len(piece)
    except zlib.error as exc:
        raise DatasetError(f"is not a readable .tar.gz ({exc})", file=path,
                           fix="the archive is truncated or corrupt: fetch or regenerate it") from None
    if not inflater.eof:
        raise DatasetError("is not a readable .tar.gz (the gzip stream is cut short)", file=path,
                           fix="the archive is truncated or corrupt: fetch or regenerate it")
    return out, total


# -- decoding and validation -------------------------------------------------------------------

def decode(layout: CifarLayout, members: Mapping[str, bytes | memoryview], record: SourceRecord,
           where: Path) -> RawDataset:
    """Unpickle (allow-list only) and validate every batch; return NHWC uint8 + int64 labels."""

    def label(rel: str) -> str:
        return str(where / rel) if record.kind == "folder" else f"{where}:{layout.folder}/{rel}"

    meta = safe_loads(members[layout.meta_file], label(layout.meta_file))
    classes = _names(meta, layout.class_names_key, layout.num_classes, label(layout.meta_file))
    coarse_classes = None
    if layout.coarse_names_key is not None:
        coarse_classes = _names(meta, layout.coarse_names_key, layout.num_coarse, label(layout.meta_file))

    splits = {}
    for split, files in (("train", layout.train_files), ("test", layout.test_files)):
        parts = [_batch(layout, safe_loads(members[rel], label(rel)), label(rel)) for rel in files]
        x = np.concatenate([p[0] for p in parts])
        y = np.concatenate([p[1] for p in parts])
        yc = np.concatenate([p[2] for p in parts]) if layout.coarse_key is not None else None
        splits[split] = (x, y, yc)

    counts = (len(splits["train"][1]), len(splits["test"][1]))
    if record.official and counts != layout.official_counts:
        raise DatasetError(f"holds {counts[0]} train / {counts[1]} test images, expected "
                           f"{layout.official_counts[0]} / {layout.official_counts[1]}", file=where)
    if layout.coarse_key is not None:
        _check_coarse_consistent(splits, where)

    def nhwc(flat: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(flat.reshape(-1, 3, IMAGE_SIDE, IMAGE_SIDE).transpose(0, 2, 3, 1))

    return RawDataset(
        name=layout.name, classes=classes, source=record,
        train_x=nhwc(splits["train"][0]), train_y=splits["train"][1],
        test_x=nhwc(splits["test"][0]), test_y=splits["test"][1],
        coarse_classes=coarse_classes, train_y_coarse=splits["train"][2], test_y_coarse=splits["test"][2],
    )


def _names(meta: Any, key: bytes, count: int, source: str) -> tuple[str, ...]:
    if not isinstance(meta, dict) or key not in meta:
        raise DatasetError(f"has no {key.decode()} entry", file=source)
    names = meta[key]
    if not isinstance(names, list) or len(names) != count or not all(isinstance(n, bytes) for n in names):
        raise DatasetError(f"{key.decode()} must be a list of {count} names", file=source)
    try:
        decoded = tuple(n.decode("utf-8") for n in names)
    except UnicodeDecodeError:
        raise DatasetError(f"{key.decode()} holds a name that is not UTF-8", file=source) from None
    if len(set(decoded)) != count:
        raise DatasetError(f"{key.decode()} holds duplicate names", file=source)
    return decoded


def _labels(batch: dict, key: bytes, n: int, high: int, source: str) -> np.ndarray:
    raw = batch[key]
    if not isinstance(raw, list) or len(raw) != n:
        raise DatasetError(f"{key.decode()} must be a list of {n} labels (one per image)", file=source)
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in raw):
        raise DatasetError(f"{key.decode()} holds a value that is not an integer", file=source)
    # checked as Python ints, before numpy: a label of 2**70 does not fit an int64
    bad = next((i for i, v in enumerate(raw) if not 0 <= v < high), None)
    if bad is not None:
        raise DatasetError(f"{_show_int(raw[bad])} is out of range 0..{high - 1}",
                           file=source, field=f"{key.decode()}[{bad}]",
                           fix="the file is not an official CIFAR batch; use the official archive")
    return np.asarray(raw, dtype=np.int64) if raw else np.zeros(0, np.int64)


def _show_int(v: int) -> str:
    """An int for a message: a huge one by its size (str() of a 10**5000 would raise)."""
    return str(v) if v.bit_length() <= 64 else f"{'a negative' if v < 0 else 'an'} integer of {v.bit_length()} bits"


def _batch(layout: CifarLayout, batch: Any, source: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    if not isinstance(batch, dict):
        raise DatasetError(f"holds a {type(batch).__name__}, not a batch dict", file=source)
    keys = set(batch)
    expected = layout.batch_keys()
    if keys != expected:
        def show(ks: set) -> str:
            return ", ".join(sorted(k.decode("latin1") if isinstance(k, bytes) else repr(k) for k in ks))

        parts = [f"missing {show(expected - keys)}" if expected - keys else "",
                 f"unexpected {show(keys - expected)}" if keys - expected else ""]
        raise DatasetError(f"does not have the keys of an official batch ({'; '.join(p for p in parts if p)})",
                           file=source)
    data = batch[b"data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8:
        raise DatasetError("data must be a uint8 numpy array", file=source)
    if data.ndim != 2 or data.shape[1] != PIXELS or data.shape[0] == 0:
        raise DatasetError(f"data has shape {data.shape}, expected (N, {PIXELS})", file=source)
    n = data.shape[0]
    filenames = batch[b"filenames"]
    if not isinstance(filenames, list) or len(filenames) != n:
        raise DatasetError(f"filenames must be a list of {n} names (one per image)", file=source)
    if not isinstance(batch[b"batch_label"], bytes):
        raise DatasetError("batch_label must be a byte string", file=source)
    y = _labels(batch, layout.label_key, n, layout.num_classes, source)
    yc = None
    if layout.coarse_key is not None:
        yc = _labels(batch, layout.coarse_key, n, layout.num_coarse, source)
    return data, y, yc


def _check_coarse_consistent(splits: dict, where: Path) -> None:
    """Each fine class belongs to exactly one superclass in the official data; check it holds."""
    fine = np.concatenate([splits["train"][1], splits["test"][1]])
    coarse = np.concatenate([splits["train"][2], splits["test"][2]])
    pairs = np.unique(np.stack([fine, coarse], axis=1), axis=0)
    fines, counts = np.unique(pairs[:, 0], return_counts=True)
    if (counts > 1).any():
        raise DatasetError(f"fine class {fines[counts > 1][0]} appears under more than one coarse label",
                           file=where)
