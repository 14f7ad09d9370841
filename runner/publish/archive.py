"""Tar archives that cannot write outside their target, and deterministic ones to publish.

`check_members` refuses, with one line naming the member: absolute paths, `..`, empty or odd
names (NUL, backslash), duplicates, devices and FIFOs, and links (symbolic or hard) unless
`allow_links` is given, in which case a link must still resolve inside the archive.
`safe_extract` checks every member before extracting any, extracts into a staging folder
beside the target with tarfile's "data" filter as a second guard, and renames it into place:
nothing is ever written outside the target, and a refused archive leaves nothing behind.
`check_archive` runs the same checks without extracting (for `runner images import`, whose
docker-archive tarballs hold relative links between layers).
"""

from __future__ import annotations

import gzip
import os
import posixpath
import shutil
import tarfile
import tempfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from runner.errors import BundleError, RunnerError

MAX_MEMBERS = 1_000_000
ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz")


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
                  error: type[RunnerError] = BundleError) -> list[tarfile.TarInfo]:
    """Every member of an open archive, checked; raises `error` at the first unsafe one."""
    seen: set[str] = set()
    total = 0
    members = []
    for i, member in enumerate(tar):
        if i >= MAX_MEMBERS:
            raise error(f"holds more than {MAX_MEMBERS:,} members", file=source, fix="this is not a bundle archive")
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
            if _bad_name(target) or posixpath.normpath(target).startswith("../") or posixpath.isabs(target) \
                    or posixpath.normpath(target) == "..":
                raise error(f"{where} links outside the archive ({member.linkname!r}); nothing was extracted",
                            file=source, fix="use an archive written by runner")
        elif not (member.isfile() or member.isdir()):
            raise error(f"{where} is a device or FIFO; nothing was extracted", file=source,
                        fix="bundle archives hold plain files and folders only")
        total += max(member.size, 0)
        if max_bytes is not None and total > max_bytes:
            raise error(f"expands to more than {max_bytes:,} bytes", file=source,
                        fix="check the archive; pass a larger limit if it is genuine")
        members.append(member)
    return members


def _open(path: Path, error: type[RunnerError]) -> tarfile.TarFile:
    if not path.is_file():
        raise error("no such archive", file=path, fix="give a .tar or .tar.gz file")
    try:
        return tarfile.open(path, "r:*")
    except (tarfile.TarError, OSError, EOFError) as e:
        raise error(f"is not a readable tar archive ({e})", file=path, fix="the file is damaged or not a tar") from None


def check_archive(path: Path, *, allow_links: bool = True, error: type[RunnerError] = BundleError) -> int:
    """Check an archive's members without extracting; returns how many there are."""
    try:
        with _open(Path(path), error) as tar:
            return len(check_members(tar, Path(path), allow_links=allow_links, error=error))
    except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
        raise error(f"is truncated or corrupt ({e})", file=path, fix="the file is damaged") from None


def safe_extract(path: Path, target: Path, *, allow_links: bool = False, max_bytes: int | None = None,
                 error: type[RunnerError] = BundleError) -> Path:
    """Extract `path` into the new folder `target` (which must not exist); see the module docstring."""
    path, target = Path(path), Path(target)
    if target.exists() or target.is_symlink():
        raise error("exists; extraction never writes into an existing folder", file=target,
                    fix="choose a new target folder")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".extract"))
    try:
        with _open(path, error) as tar:
            try:
                members = check_members(tar, path, allow_links=allow_links, max_bytes=max_bytes, error=error)
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
        yield bundle_root(safe_extract(path, Path(tmp) / "bundle"))
