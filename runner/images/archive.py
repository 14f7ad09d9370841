"""`runner images export` / `import`: images as docker-archive tarballs, checked by content.

Export writes the SDK's `image.save()` stream to a temporary file beside the target and renames
it into place, then writes `<file>.sha256` (sha256sum format) the same way.

Import checks before it loads: every member of the tarball (runner.publish.archive.check_archive:
no absolute paths, no `..`, no links leading outside the archive, no devices, FIFOs or sparse
files, at most 100,000 members, and no more bytes than the file holds), the tarball's sha256
against a `.sha256` file beside it (when there is one), and the image ID, which for a
docker-archive is the sha256 of the image config inside it, against `--expect-id`. A tarball
that fails is never loaded, so nothing gets tagged from it. After loading, the engine's ID must
equal the one computed (the engine itself checks the layers against the config's diff_ids).
"""

from __future__ import annotations

import hashlib
import json
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from runner.bundle import fsutil
from runner.engine.docker_client import api_errors
from runner.errors import CheckFailed, ImageError, UsageError
from runner.fileio import read_bounded
from runner.images.lockfile import sha256_file, write_atomic

if TYPE_CHECKING:
    import docker

IMAGE_ID = re.compile(r"^sha256:[0-9a-f]{64}$")
MAX_MEMBERS = 100_000
MAX_DOC_BYTES = 16 * 2**20  # manifest.json and the image config: kilobytes in practice


@dataclass(frozen=True)
class Exported:
    path: Path
    sha256: str
    image_id: str
    size: int


@dataclass(frozen=True)
class Imported:
    image_id: str
    tags: tuple[str, ...]


def export_image(client: docker.DockerClient, ref: str, out: Path) -> Exported:
    """Save the image `ref` (tag or id) to `out`, atomically; refuses to overwrite."""
    import docker.errors

    check_export_target(out)
    try:
        image = client.images.get(ref)
    except docker.errors.ImageNotFound:
        raise ImageError(f"no image {ref} on this engine", fix="runner images build NAME first") from None
    with api_errors(f"saving {ref}"):  # streamed to a temp file beside `out`, renamed when complete
        _, hexdigest = fsutil.write_atomic(out, image.save(named=True))
    write_atomic(out.with_name(out.name + ".sha256"), f"{hexdigest}  {out.name}\n")
    return Exported(out, hexdigest, image.id, out.stat().st_size)


def check_export_target(out: Path) -> None:
    """An export never overwrites, and writes only into a folder that exists."""
    if out.exists() or out.is_symlink():
        raise UsageError("the output file exists; export never overwrites", file=out, field="--out",
                         fix="remove it or choose another --out")
    if not out.parent.is_dir():
        raise UsageError("the output folder does not exist", file=out.parent, field="--out",
                         fix="create it first")


def check_members(path: Path) -> int:
    """Every member of a docker-archive checked before anything reads or loads it; returns how many."""
    from runner.publish.archive import Limits, check_archive

    size = path.stat().st_size  # a plain tar cannot hold more bytes than the file: a bigger claim is a lie
    return check_archive(path, allow_links=True, error=ImageError, limits=Limits(MAX_MEMBERS, size))


def _small_member(tar: tarfile.TarFile, name: str) -> bytes:
    info = tar.getmember(name)
    if not info.isfile() or info.size > MAX_DOC_BYTES:
        raise ImageError(f"member {name!r} is not a file of at most {MAX_DOC_BYTES:,} bytes", file=tar.name,
                         fix="use a file written by `runner images export` or `docker save`")
    data = tar.extractfile(info)
    if data is None:
        raise KeyError(name)
    return data.read()


def archive_image_id(path: Path) -> tuple[str, tuple[str, ...]]:
    """(image id, repo tags) of the one image in a docker-archive tarball, computed from its config."""
    try:
        with tarfile.open(path, "r:") as tar:
            manifest = json.loads(_small_member(tar, "manifest.json"))
            if not isinstance(manifest, list) or len(manifest) != 1:
                raise ImageError(f"the tarball holds {len(manifest) if isinstance(manifest, list) else 'no'} "
                                 "images; import takes exactly one", file=path, fix="export one image per file")
            digest = hashlib.sha256(_small_member(tar, manifest[0]["Config"])).hexdigest()
            tags = tuple(manifest[0].get("RepoTags") or ())
    except (tarfile.TarError, KeyError, ValueError, TypeError, RecursionError, OSError) as e:
        raise ImageError(f"not a docker-archive tarball ({type(e).__name__}: {e})", file=path,
                         fix="use a file written by `runner images export` or `docker save`") from None
    return f"sha256:{digest}", tags


def sidecar_digest(sidecar: Path) -> str:
    """The sha256 a `<file>.sha256` names (sha256sum format); ImageError when it is not one."""
    words = read_bounded(sidecar, 4096, ImageError, what="sha256 file").decode("utf-8", "replace").split()
    if not words or not re.fullmatch(r"[0-9a-f]{64}", words[0]):
        raise ImageError("not a sha256 file", file=sidecar, fix="remove it or rewrite it as `<sha256>  <file>`")
    return words[0]


def check_sidecar(path: Path) -> str | None:
    """The tarball's sha256 if a `<file>.sha256` lies beside it and matches; raises if it does not."""
    sidecar = path.with_name(path.name + ".sha256")
    if not sidecar.is_file():
        return None
    expected = sidecar_digest(sidecar)
    actual = sha256_file(path)
    if actual != expected:
        raise CheckFailed(f"the tarball's sha256 is {actual}, {sidecar.name} says {expected}", file=path,
                          fix="the file is damaged or was replaced: export it again")
    return actual


def import_image(client: docker.DockerClient, path: Path, expect_id: str | None = None) -> Imported:
    """Load the tarball at `path` into Docker after checking it; returns the loaded image's id and tags."""
    image_id, tags = checked_archive(path, expect_id)
    with open(path, "rb") as f, api_errors(f"loading {path.name}"):
        loaded = client.images.load(f)
    ids = {img.id for img in loaded}
    if ids != {image_id}:
        raise ImageError(f"the engine loaded {sorted(ids)} from {path.name}, the tarball's config says {image_id}",
                         file=path, fix="report this: the engine and the archive disagree on the image id")
    return Imported(image_id, tags)


def checked_archive(path: Path, expect_id: str | None = None) -> tuple[str, tuple[str, ...]]:
    """(image id, tags) of a tarball that passed every check before any engine sees a byte of it:
    its members, its `.sha256` sidecar, one image, and `expect_id`. Docker and podman imports share it."""
    if expect_id is not None and not IMAGE_ID.match(expect_id):
        raise UsageError(f"{expect_id!r} is not an image id", field="--expect-id",
                         fix="write it as sha256:<64 hex digits> (`runner images list` shows ids)")
    if not path.is_file():
        raise UsageError("no such file", file=path, fix="pass the tarball written by `runner images export`")
    check_members(path)  # before any member is read, and before the engine sees a byte
    check_sidecar(path)
    image_id, tags = archive_image_id(path)
    if expect_id is not None and image_id != expect_id:
        raise CheckFailed(f"the tarball holds image {image_id}, expected {expect_id}", file=path,
                          fix="nothing was loaded; find the tarball of the expected image")
    return image_id, tags
