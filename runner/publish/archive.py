"""Tar archives that cannot write outside their target, nor fill the disk or memory, and
deterministic ones to publish.

`check_members` refuses, with one line naming the member: absolute paths, `..`, empty or odd
names (NUL, backslash), duplicates, devices, FIFOs and sparse files, and links (symbolic or
hard) unless `allow_links` is given, in which case a link must still resolve inside the
archive; and more than `Limits.members` members or `Limits.bytes` bytes in all.
Every archive is read through `_Capped`, which counts the DECOMPRESSED bytes: a read or a seek
past the cap (a gzip bomb, a member whose header claims terabytes) or a single read of more
than 64 MiB (a pax header bomb) is refused before the bytes are produced, so refusing costs
bounded time and memory whatever the headers claim. Only plain `.tar` and gzip are read.
`safe_extract` checks every member before extracting any, extracts into a staging folder
beside the target with tarfile's "data" filter as a second guard, and renames it into place:
nothing is ever written outside the target, and a refused archive leaves nothing behind.
`check_archive` runs the same checks without extracting (for `runner images import`, whose
docker-archive tarballs hold relative links between layers).
The standard library's tarfile (with the 'data' filter, Python 3.11.4+) does the parsing; the
caps are ours because tarfile has none.
"""

from __future__ import annotations

import gzip
import io
import os
import posixpath
import shutil
import stat
import tarfile
import tempfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from runner.errors import BundleError, RunnerError

MAX_MEMBERS = 100_000  # each TarInfo kept costs about 1 KB: 100 MB at most
MAX_READ = 64 * 2**20  # the largest single read tarfile may ask for (a pax header is read whole)
BUNDLE_MAX_BYTES = 64 * 2**30
BUNDLE_MIN_BYTES = 128 * 2**20  # a small archive may always expand to this much
BUNDLE_MAX_RATIO = 100  # decompressed/compressed: bundles (Parquet, JSON logs) ~3-20:1; zeros ~1000:1
ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz")
GZIP_MAGIC = b"\x1f\x8b"
GENUINE_FIX = "check where the archive came from; if it is genuine, extract it and give the folder"


@dataclass(frozen=True)
class Limits:
    """Caps on an archive's members and on the bytes it may decompress to."""

    members: int = MAX_MEMBERS
    bytes: int | None = None  # None: no cap beyond the stream's own end

    @classmethod
    def for_bundle(cls, path: Path, work_dir: Path) -> Limits:
        """A bundle archive: at most 100 x its size (128 MiB at least), 64 GiB, and the free space."""
        size = path.stat().st_size
        free = shutil.disk_usage(work_dir).free
        return cls(MAX_MEMBERS, min(BUNDLE_MAX_BYTES, max(BUNDLE_MIN_BYTES, BUNDLE_MAX_RATIO * size), free))


class _Capped(io.RawIOBase):
    """A read-only, seekable view of a (decompressed) stream that refuses to go past `cap` bytes."""

    def __init__(self, raw: BinaryIO, cap: int | None, source: Path, error: type[RunnerError]) -> None:
        self.raw, self.cap, self.source, self.error, self.pos = raw, cap, source, error, 0

    def _refuse(self, where: int) -> None:
        raise self.error(f"expands to more than {self.cap:,} bytes (at byte {where:,}); nothing was extracted",
                         file=self.source, fix=GENUINE_FIX)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0 or n > MAX_READ:
            raise self.error(f"asks for a single read of {'all' if n is None or n < 0 else f'{n:,}'} bytes "
                             "(a header too large to be genuine); nothing was extracted", file=self.source,
                             fix="check where the archive came from")
        if self.cap is not None and self.pos + n > self.cap:
            n = max(0, self.cap - self.pos)
            data = self.raw.read(n + 1)
            if len(data) > n:
                self._refuse(self.cap + 1)
        else:
            data = self.raw.read(n)
        self.pos += len(data)
        return data

    def readinto(self, b) -> int:
        data = self.read(len(b))
        b[:len(data)] = data
        return len(data)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        target = offset if whence == io.SEEK_SET else self.pos + offset if whence == io.SEEK_CUR else None
        if target is None:
            raise OSError("seeking from the end is not supported")
        if self.cap is not None and target > self.cap:
            self._refuse(target)
        self.pos = self.raw.seek(target)
        return self.pos

    def close(self) -> None:
        self.raw.close()
        super().close()


def _bad_name(name: str) -> str | None:
    if not name or "\x00" in name or "\\" in name:
        return "has an empty or invalid name"
    if name.startswith("/") or posixpath.isabs(name):
        return "has an absolute path"
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if not parts:
        return None if name.strip("/.") == "" else "has an empty name"
    if ".." in parts:
        return "leads outside the target (`..`)"
    return None


def _norm(name: str) -> str:
    return "/".join(p for p in name.split("/") if p not in ("", "."))


def check_members(tar: tarfile.TarFile, source: Path, *, allow_links: bool = False, max_bytes: int | None = None,
                  error: type[RunnerError] = BundleError, max_members: int = MAX_MEMBERS) -> list[tarfile.TarInfo]:
    """Every member of an open archive, checked; raises `error` at the first unsafe one."""
    seen: set[str] = set()
    total = 0
    members = []
    for i, member in enumerate(tar):
        if i >= max_members:
            raise error(f"holds more than {max_members:,} members; nothing was extracted", file=source,
                        fix="check where the archive came from")
        if member.issparse():
            raise error(f"member {member.name!r} is a sparse file; nothing was extracted", file=source,
                        fix="archives hold plain files and folders only")
        where = f"member {member.name!r}"
        problem = _bad_name(member.name)
        if problem:
            raise error(f"{where} {problem}; nothing was extracted", file=source,
                        fix="use an archive written by runner")
        name = _norm(member.name)
        if name in seen and not member.isdir():
            raise error(f"{where} appears twice; nothing was extracted", file=source,
                        fix="use an archive written by runner")
        seen.add(name)
        if member.issym() or member.islnk():
            if not allow_links:
                raise error(f"{where} is a link; nothing was extracted", file=source,
                            fix="bundle archives hold plain files and folders only")
            target = member.linkname
            if member.issym():
                target = posixpath.join(posixpath.dirname(name), target)
            resolved = posixpath.normpath(target)  # l2/../l1/layer.tar is l1/layer.tar: inside
            if not target or "\x00" in target or "\\" in target or posixpath.isabs(member.linkname) \
                    or resolved in ("..", ".") or resolved.startswith("../"):
                raise error(f"{where} links outside the archive ({member.linkname!r}); nothing was extracted",
                            file=source, fix="use an archive written by runner")
        elif not (member.isfile() or member.isdir()):
            raise error(f"{where} is a device or FIFO; nothing was extracted", file=source,
                        fix="bundle archives hold plain files and folders only")
        total += max(member.size, 0)
        if max_bytes is not None and total > max_bytes:
            raise error(f"expands to more than {max_bytes:,} bytes", file=source,
                        fix=GENUINE_FIX)
        members.append(member)
    return members


@contextmanager
def _open(path: Path, error: type[RunnerError], limits: Limits) -> Iterator[tarfile.TarFile]:
    """The archive as a TarFile reading through _Capped (plain tar or gzip; anything else refused)."""
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        raise error("no such archive", file=path, fix="give a .tar or .tar.gz file") from None
    if not stat.S_ISREG(mode):
        raise error("is not a regular file (a link, folder, FIFO or device)", file=path,
                    fix="give the archive file itself")
    raw: BinaryIO = open(path, "rb")  # noqa: SIM115 - closed through _Capped below
    try:
        if raw.read(2) == GZIP_MAGIC:
            raw.seek(0)
            raw = gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[assignment]
        else:
            raw.seek(0)
        capped = _Capped(raw, limits.bytes, path, error)
        try:
            tar = tarfile.open(fileobj=capped, mode="r:")  # type: ignore[arg-type]
        except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
            raise error(f"is not a readable tar or tar.gz archive ({e})", file=path,
                        fix="the file is damaged or not a tar") from None
        with tar:
            yield tar
    finally:
        raw.close()


def check_archive(path: Path, *, allow_links: bool = True, error: type[RunnerError] = BundleError,
                  limits: Limits | None = None) -> int:
    """Check an archive's members without extracting; returns how many there are."""
    limits = limits or Limits()
    try:
        with _open(Path(path), error, limits) as tar:
            return len(check_members(tar, Path(path), allow_links=allow_links, max_bytes=limits.bytes,
                                     error=error, max_members=limits.members))
    except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
        raise error(f"is truncated or corrupt ({e})", file=path, fix="the file is damaged") from None


def safe_extract(path: Path, target: Path, *, allow_links: bool = False, max_bytes: int | None = None,
                 error: type[RunnerError] = BundleError, limits: Limits | None = None) -> Path:
    """Extract `path` into the new folder `target` (which must not exist); see the module docstring."""
    path, target = Path(path), Path(target)
    limits = limits or Limits(bytes=max_bytes)
    if target.exists() or target.is_symlink():
        raise error("exists; extraction never writes into an existing folder", file=target,
                    fix="choose a new target folder")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".extract"))
    try:
        with _open(path, error, limits) as tar:
            try:
                members = check_members(tar, path, allow_links=allow_links, max_bytes=limits.bytes, error=error,
                                        max_members=limits.members)
                tar.extractall(staging, members=members, filter="data")
            except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
                raise error(f"is truncated or corrupt ({e})", file=path, fix="the archive is damaged") from None
        staging.chmod(0o755)
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def bundle_root(extracted: Path) -> Path:
    """The bundle inside an extracted archive: the folder itself, or its one top-level folder."""
    if (extracted / "manifest.json").is_file():
        return extracted
    entries = [p for p in extracted.iterdir() if not p.name.startswith(".")]
    if len(entries) == 1 and entries[0].is_dir() and (entries[0] / "manifest.json").is_file():
        return entries[0]
    raise BundleError("holds no bundle (no manifest.json at its top or in its one folder)", file=extracted,
                      fix="archive the bundle folder itself")


def write_tar_gz(folder: Path, out: Path, arcname: str) -> None:
    """A reproducible .tar.gz of `folder` (plain files and folders only, sorted, owner 0, fixed mtime)."""
    folder, out = Path(folder), Path(out)
    if out.exists():
        raise BundleError("exists; archives are never overwritten", file=out, fix="move it away first")
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    try:
        with open(fd, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as gz, \
                tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
            paths = sorted(folder.rglob("*"))
            for p in [folder, *paths]:
                rel = p.relative_to(folder).as_posix()
                name = arcname if rel == "." else f"{arcname}/{rel}"
                if p.is_symlink():
                    raise BundleError("is a link; published archives hold plain files only", file=p)
                info = tarfile.TarInfo(name)
                info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
                if p.is_dir():
                    info.type, info.mode = tarfile.DIRTYPE, 0o755
                    tar.addfile(info)
                else:
                    info.size, info.mode = p.stat().st_size, 0o644
                    with open(p, "rb") as fh:
                        tar.addfile(info, fh)
        Path(tmp).chmod(0o644)
        try:
            os.link(tmp, out)  # fails if `out` appeared meanwhile, where a rename would replace it
        except FileExistsError:
            raise BundleError("exists; archives are never overwritten", file=out) from None
    finally:
        Path(tmp).unlink(missing_ok=True)


@contextmanager
def bundle_folder(path: Path) -> Iterator[Path]:
    """A bundle given as a folder, or as a .tar/.tar.gz of one (safely extracted into a temp folder)."""
    path = Path(path)
    if path.is_dir() or not path.name.endswith(ARCHIVE_SUFFIXES):
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="runner-bundle-") as tmp:
        yield bundle_root(safe_extract(path, Path(tmp) / "bundle", limits=Limits.for_bundle(path, Path(tmp))))
