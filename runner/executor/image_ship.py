"""Images carried to Slurm nodes through the shared filesystem (`execution.ship_images`).

Each node of a cluster keeps its own image storage, and a login node's `docker build` or `podman
build` puts nothing on the compute nodes. With `ship_images`, the session writes every image the
sweep runs as a docker-archive under `<cache>/images/<id hex>.tar` (its sha256 beside it, as
`runner images export` writes them), once per image id: a later session reuses it. Every run's
Launch names the archive. On the node, before the run starts, `deliver` asks the node's engine for
the image id; only a node that lacks it checks the archive (members, sha256, image id:
runner.images.archive) and loads it, under a node-local lock so that a node's array tasks load it
once. The run's environment.json says which happened (`node.image`), and the image the node ran is
the id the bundle records either way: a load that gives another id is a failed run.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from runner.errors import ImageError, UsageError

ARCHIVE_FOLDER = "images"  # under --cache, which the nodes see at the same path


class LoadingEngine(Protocol):
    """What `deliver` needs of a node's engine (DockerEngine, PodmanEngine)."""

    def has_image(self, image_id: str) -> bool: ...

    def load_archive(self, path: Path, expect_id: str) -> str: ...


@dataclass(frozen=True)
class Shipped:
    """An image's archive on the shared filesystem."""

    path: Path
    sha256: str
    size: int
    reused: bool  # written by an earlier session

    def facts(self) -> dict[str, Any]:
        """For the bundle (environment/images/<name>.json): the file's name, not the host's path."""
        return {"file": self.path.name, "sha256": self.sha256, "size": self.size}


def archive_path(folder: Path, image_id: str) -> Path:
    from runner.images.archive import IMAGE_ID

    if not IMAGE_ID.match(image_id):
        raise ImageError(f"{image_id!r} is not an image id", fix="report this: images are shipped by id")
    return folder / f"{image_id.removeprefix('sha256:')}.tar"


def ship_image(export: Callable[[str, Path], Any], image_id: str, folder: Path) -> Shipped:
    """The archive of `image_id` in `folder`: the one already there when it holds that image, else
    exported now with `export(image_id, path)` (runner.images.archive.export_image or
    podman_store.export_from_podman: atomic, sha256 beside it)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = archive_path(folder, image_id)
    found = _existing(path, image_id)
    if found is not None:
        return found
    for stale in (path, path.with_name(path.name + ".sha256")):  # damaged or half-replaced: a cache entry
        if stale.is_symlink() or stale.exists():
            stale.unlink()
    try:
        done = export(image_id, path)
    except UsageError:  # another session wrote it meanwhile (export never overwrites)
        found = _existing(path, image_id)
        if found is None:
            raise
        return found
    return Shipped(path, done.sha256, done.size, reused=False)


def _existing(path: Path, image_id: str) -> Shipped | None:
    """The archive at `path` if it is a plain file holding `image_id` with a sha256 file beside it.
    Its bytes are hashed by the node that loads it, not here (gigabytes, every session)."""
    from runner.images.archive import archive_image_id, sidecar_digest

    sidecar = path.with_name(path.name + ".sha256")
    if path.is_symlink() or not path.is_file() or sidecar.is_symlink() or not sidecar.is_file():
        return None
    try:
        digest = sidecar_digest(sidecar)
        if archive_image_id(path)[0] != image_id:
            return None
    except (ImageError, OSError):
        return None
    return Shipped(path, digest, path.stat().st_size, reused=True)


def deliver(engine: LoadingEngine, image_id: str, archive: Path, lock_dir: Path | None = None) -> dict[str, Any]:
    """Make `image_id` present on this node; the facts for the run's environment.json (node.image).
    Raises (ImageError, EngineError, CheckFailed) when the archive cannot give it."""
    if engine.has_image(image_id):
        return {"id": image_id, "source": "node storage"}
    started = time.monotonic()
    with node_lock(image_id, lock_dir):
        waited = time.monotonic() - started
        if engine.has_image(image_id):  # another task on this node loaded it while this one waited
            return {"id": image_id, "source": "node storage", "waited_s": round(waited, 3)}
        t0 = time.monotonic()
        got = engine.load_archive(archive, image_id)
    if got != image_id:
        raise ImageError(f"the node loaded {got} from the archive, the run needs {image_id}", file=archive,
                         fix="remove the archive and its .sha256 from the cache; the next session writes it again")
    return {"id": image_id, "source": "archive", "archive": archive.name, "load_s": round(time.monotonic() - t0, 3)}


@contextlib.contextmanager
def node_lock(image_id: str, lock_dir: Path | None = None) -> Iterator[None]:
    """An exclusive lock on this node (its /tmp), per user and image: one load at a time. The empty
    lock file stays (removing it would race with a task waiting on it); one per user and image."""
    name = f"runner-image-load-{os.getuid()}-{image_id.removeprefix('sha256:')[:32]}.lock"
    folder = lock_dir if lock_dir is not None else Path(tempfile.gettempdir())
    fd = os.open(folder / name, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock
