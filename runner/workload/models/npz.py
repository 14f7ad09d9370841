"""Canonical weights on disk: a plain .npz (no pickle), byte-for-byte deterministic, read under caps.

Writing: members in sorted key order, each a float32 little-endian C-order `.npy` (numpy's own
`format.write_array`), stored uncompressed, every zip timestamp fixed at 1980-01-01, so the same
tensors always give the same file and the same sha256 (the identity a spec pins). Float weights
barely compress, and a stored member cannot be a zip bomb.

Reading (`read_npz`, `npz_index`): a regular file only (a FIFO or device is refused before it is
opened for reading), the zip's central directory checked from its end record BEFORE `zipfile`
parses it (member count and directory size capped), every member a `<name>.npy` whose declared
size is capped (total at most `max_bytes`, and at most 64x the file's own size, which a
compression bomb exceeds), arrays read with `allow_pickle=False` from numpy's header, only real
numeric dtypes, the bytes read never more than the header promises.
"""

from __future__ import annotations

import io
import os
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import runner.fileio as fileio
from runner.errors import ModelError
from runner.fileio import write_atomic

MAX_MEMBERS = 4096  # ResNet-50 has 320 canonical tensors
MAX_BYTES = 4 << 30  # decompressed, all members together
MAX_RATIO = 64  # declared decompressed bytes per byte of file
_EPOCH = (1980, 1, 1, 0, 0, 0)
_FIX = "canonical weights are a .npz written by `runner weights import`"


@dataclass(frozen=True)
class Member:
    """One array's header, read without reading its data."""

    key: str
    dtype: np.dtype
    shape: tuple[int, ...]


class _Chunks:
    """A write-only, non-seekable sink for zipfile: keeps the chunks for `write_atomic`."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.size = 0

    def write(self, data: bytes) -> int:
        self.chunks.append(bytes(data))
        self.size += len(data)
        return len(data)

    def tell(self) -> int:
        return self.size

    def seekable(self) -> bool:
        return False

    def flush(self) -> None:
        pass


def npz_chunks(weights: dict[str, np.ndarray]) -> list[bytes]:
    """The deterministic .npz bytes of `weights` (float32), as chunks."""
    sink = _Chunks()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_STORED) as zf:  # type: ignore[arg-type]
        for key in sorted(weights):
            arr = np.ascontiguousarray(weights[key], dtype="<f4")
            info = zipfile.ZipInfo(f"{key}.npy", date_time=_EPOCH)
            info.external_attr = 0o644 << 16
            with zf.open(info, "w", force_zip64=True) as fh:
                np.lib.format.write_array(fh, arr, version=(1, 0), allow_pickle=False)
    return sink.chunks


def save_npz(path: str | Path, weights: dict[str, np.ndarray]) -> str:
    """Write `weights` atomically to a NEW file; returns its sha256."""
    path = Path(path)
    if path.exists():
        raise ModelError("refusing to overwrite existing weights", file=path, fix="choose a new file name")
    return write_atomic(path, npz_chunks(weights))[1]


def _bad(path: Path, message: str) -> ModelError:
    return ModelError(message, file=path, field="weights", fix=_FIX)


def _open_regular(path: Path) -> tuple[io.BufferedReader, int]:
    fh = fileio.open_regular(path, ModelError, what="weights file", fix="name a regular .npz file")
    return fh, os.fstat(fh.fileno()).st_size


def _directory_extent(fh: io.BufferedReader, size: int, path: Path) -> tuple[int, int]:
    """(entries, central directory bytes) from the end record (zip64 aware), before zipfile reads."""
    tail_len = min(size, 22 + 65535)
    fh.seek(size - tail_len)
    tail = fh.read(tail_len)
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) - at < 22:
        raise _bad(path, "not a readable .npz of weights (no zip end record)")
    entries, cd_size = struct.unpack_from("<10xHI", tail, at)
    if entries == 0xFFFF or cd_size == 0xFFFFFFFF:
        loc = at - 20
        if loc < 0 or tail[loc:loc + 4] != b"PK\x06\x07":
            raise _bad(path, "not a readable .npz of weights (broken zip64 end record)")
        (offset,) = struct.unpack_from("<8xQ", tail, loc)
        if offset > size - 56:
            raise _bad(path, "not a readable .npz of weights (broken zip64 end record)")
        fh.seek(offset)
        rec = fh.read(56)
        if rec[:4] != b"PK\x06\x06":
            raise _bad(path, "not a readable .npz of weights (broken zip64 end record)")
        entries, cd_size = struct.unpack_from("<32xQQ", rec)
    fh.seek(0)
    return entries, cd_size


def _header(stream: io.BufferedIOBase, name: str, path: Path) -> tuple[np.dtype, tuple[int, ...], int]:
    """dtype, shape and data bytes of one .npy member, from its header only (no pickle)."""
    try:
        version = np.lib.format.read_magic(stream)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(stream, max_header_size=10000)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(stream, max_header_size=10000)
        else:
            raise ValueError(f"npy version {version}")
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        raise _bad(path, f"member {name}: not a plain .npy array ({e})") from None
    if dtype.hasobject or dtype.kind not in "fiub" or fortran:
        order = " (Fortran order)" if fortran else ""
        raise _bad(path, f"member {name}: dtype {dtype}{order} is not a plain number array")
    n = 1
    for d in shape:
        n *= d
    return dtype, tuple(int(d) for d in shape), n * dtype.itemsize


def _read_data(stream: io.BufferedIOBase, dtype: np.dtype, shape: tuple[int, ...], nbytes: int, name: str,
               path: Path) -> np.ndarray:
    """Exactly `nbytes` into a fresh array, 1 MiB at a time (no second copy); more or less is refused."""
    arr = np.empty(shape, dtype=dtype)
    view = memoryview(arr.reshape(-1).view(np.uint8))
    got = 0
    while got < nbytes:
        chunk = stream.read(min(1 << 20, nbytes - got))
        if not chunk:
            break
        view[got:got + len(chunk)] = chunk
        got += len(chunk)
    if got != nbytes or stream.read(1):
        raise _bad(path, f"member {name}: data does not match its header {shape}")
    return arr.astype(dtype.newbyteorder("="), copy=False)


def _members(path: Path, max_bytes: int, read: bool) -> tuple[list[Member], dict[str, np.ndarray]]:
    fh, size = _open_regular(path)
    with fh:
        entries, cd_size = _directory_extent(fh, size, path)
        if entries > MAX_MEMBERS or cd_size > MAX_MEMBERS * 1024:
            raise _bad(path, f"holds {entries} members ({cd_size} directory bytes), above the limit of {MAX_MEMBERS}")
        try:
            zf = zipfile.ZipFile(fh)
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
            raise _bad(path, f"not a readable .npz of weights ({e})") from None
        with zf:
            infos = zf.infolist()
            declared = sum(i.file_size for i in infos)
            cap = min(max_bytes, MAX_RATIO * size + (1 << 20))
            if declared > cap:
                raise _bad(path, f"members declare {declared} bytes decompressed, above the cap of {cap} "
                                 "(a zip bomb, or not weights)")
            members: list[Member] = []
            arrays: dict[str, np.ndarray] = {}
            for info in infos:
                name = info.filename
                if not name.endswith(".npy") or info.is_dir() or name[:-4] in arrays or \
                        any(m.key == name[:-4] for m in members):
                    raise _bad(path, f"member {name!r} is not a unique `<tensor>.npy`")
                try:
                    with zf.open(info) as stream:
                        dtype, shape, nbytes = _header(stream, name, path)
                        if read:
                            arrays[name[:-4]] = _read_data(stream, dtype, shape, nbytes, name, path)
                except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError, RuntimeError) as e:
                    raise _bad(path, f"member {name}: truncated or corrupt ({e})") from None
                members.append(Member(name[:-4], dtype, shape))
    return members, arrays


def npz_index(path: str | Path, max_bytes: int = MAX_BYTES) -> list[Member]:
    """Every member's key, dtype and shape, reading headers only."""
    return _members(Path(path), max_bytes, read=False)[0]


def read_npz(path: str | Path, max_bytes: int = MAX_BYTES) -> dict[str, np.ndarray]:
    """Every array of a weights .npz, under the caps above; any problem is one ModelError."""
    return _members(Path(path), max_bytes, read=True)[1]


load_npz = read_npz  # the name earlier callers use
