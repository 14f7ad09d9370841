"""Framework images in podman's own storage, where podman runs and no Docker engine answers (the
cluster case: Docker not allowed). They are built there (PodmanStore, the image pipeline's store:
runner.images.store) or carried over as `runner images export` archives.

Found by the catalog's tag and judged against the catalog and lockfile by the same rule as Docker's
images (runner.images.inspect.state_of); loaded after the same checks as a Docker import
(runner.images.archive.checked_archive), and podman's ID must then equal the archive's. podman's
inspect data is put in Docker's shape, so the bundle records the same facts for either engine.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.engine.podman_engine import _tail
from runner.errors import EngineError, ImageError
from runner.images.archive import Exported, Imported, archive_image_id, check_export_target, checked_archive
from runner.images.catalog import CatalogEntry
from runner.images.inspect import ImageState, state_of
from runner.images.lockfile import sha256_file, write_atomic
from runner.images.store import ImageStore, Log

if TYPE_CHECKING:
    from runner.engine.podman_engine import PodmanEngine
    from runner.images.containers import CommandResult
    from runner.images.platform import BaseImage

LOAD_TIMEOUT_S = 1800  # a CUDA image is several GB; vfs storage (rootless, no fuse-overlayfs) copies every layer
BASE_FIX = ("put a base in podman's storage and pass it with --base: `docker save local/debian:bookworm | podman load` "
            "where Docker runs, or debootstrap + `podman import --arch ARCH - local/debian:bookworm` (docs/images.md)")


def podman_attrs(engine: PodmanEngine, ref: str) -> dict[str, Any] | None:
    """podman's inspect data for `ref` in Docker's shape (an `Id` with its sha256: prefix);
    None when podman's storage has no such image."""
    if not engine.has_image(ref):
        return None
    proc = engine.cli("image", "inspect", ref)
    try:
        docs = json.loads(proc.stdout)
    except json.JSONDecodeError:
        docs = None
    if not (isinstance(docs, list) and len(docs) == 1 and isinstance(docs[0], dict) and docs[0].get("Id")):
        raise EngineError(f"`podman image inspect {ref}` did not describe one image",
                          fix="check podman (`podman info`, `runner doctor`)")
    attrs = dict(docs[0])
    pid = str(attrs["Id"])
    attrs["Id"] = pid if pid.startswith("sha256:") else f"sha256:{pid}"
    return attrs


def podman_image_state(engine: PodmanEngine, entry: CatalogEntry) -> ImageState:
    """Is the image podman holds under `entry`'s tag a build of the current catalog entry and lockfile?"""
    return state_of(entry, podman_attrs(engine, entry.tag))


def import_into_podman(engine: PodmanEngine, path: Path, expect_id: str | None = None) -> Imported:
    """`podman load` of a checked docker-archive tarball; podman's ID for it must be the archive's."""
    image_id, tags = checked_archive(path, expect_id)  # a tarball that fails is never shown to podman
    proc = engine.cli("load", "--input", str(path.resolve()), check=False, timeout=LOAD_TIMEOUT_S, merge=True)
    if proc.returncode != 0:
        raise ImageError(f"podman could not load it: {_tail(proc.stdout or 'no message')}", file=path,
                         fix="check podman's storage and free space (`podman info`, `df`)")
    got = engine.image_id(image_id) if engine.has_image(image_id) else None
    if got != image_id:
        raise ImageError(f"podman loaded {path.name} but holds {got or 'no image'} for {image_id}", file=path,
                         fix="report this: podman and the archive disagree on the image id")
    return Imported(image_id, tags)


def export_from_podman(engine: PodmanEngine, ref: str, out: Path) -> Exported:
    """`podman save` of `ref` as a docker-archive to `out` (through a temporary file beside it,
    never overwriting), its sha256 written beside it; the archive's ID must be podman's."""
    check_export_target(out)
    attrs = podman_attrs(engine, ref)
    if attrs is None:
        raise ImageError(f"no image {ref} in podman's storage", fix="`runner images list --engine podman` shows "
                         "what it holds")
    tmp = out.parent / f".{out.name}.{uuid.uuid4().hex}.tmp"
    try:
        proc = engine.cli("save", "--format", "docker-archive", "--output", str(tmp.resolve()), ref, check=False,
                          timeout=LOAD_TIMEOUT_S, merge=True)
        if proc.returncode != 0:
            raise ImageError(f"podman could not save {ref}: {_tail(proc.stdout or 'no message')}", file=out,
                             fix="check podman's storage and free space (`podman info`, `df`)")
        image_id, _ = archive_image_id(tmp)
        if image_id != attrs["Id"]:
            raise ImageError(f"podman saved {image_id} for {ref}, which it holds as {attrs['Id']}", file=out,
                             fix="report this: podman and its archive disagree on the image id")
        os.chmod(tmp, 0o644)
        digest = sha256_file(tmp)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    write_atomic(out.with_name(out.name + ".sha256"), f"{digest}  {out.name}\n")
    return Exported(out, digest, image_id, out.stat().st_size)


class PodmanStore(ImageStore):
    """podman's own image storage as the image pipeline's store: build, lock, verify and ensure
    images where podman runs and no Docker engine does."""

    name = "podman"

    def __init__(self, engine: PodmanEngine) -> None:
        self.engine = engine

    def builder(self) -> str:
        return f"podman {self.engine.version().get('Version', 'unknown')}"

    def attrs(self, ref: str) -> dict[str, Any] | None:
        return podman_attrs(self.engine, ref)

    def tag(self, image_id: str, reference: str) -> None:
        proc = self.engine.cli("tag", image_id, reference, check=False)
        if proc.returncode != 0:
            raise ImageError(f"podman could not tag {image_id[:19]} as {reference}: {_tail(proc.stderr)}",
                             fix="check podman (`podman info`, `runner doctor`)")

    def build(self, what: str, context: Path, *, buildargs: dict[str, str], network: bool, platform: str,
              nocache: bool, log: Log) -> str:
        from runner.images.podman_build import podman_build

        return podman_build(self.engine, what, context, buildargs=buildargs, network=network, platform=platform,
                            nocache=nocache, log=log)

    def run(self, image: str, argv: list[str], *, network: bool = False, timeout: float = 1800,
            environment: dict[str, str] | None = None) -> CommandResult:
        from runner.images.podman_build import podman_run

        return podman_run(self.engine, image, argv, network=network, timeout=timeout, environment=environment)

    def prepare_base(self, reference: str, platform: str, workdir: Path) -> BaseImage:
        """The base as podman holds it (nothing is pulled: `--pull=never` builds from podman's own
        storage). Its metadata must say `platform` (podman import --arch sets it; Docker's archive
        round trip of runner.images.platform is not needed) and `uname -m` in it must agree."""
        from runner.engine.docker_client import normalize_arch
        from runner.images.platform import EMULATION_FIX, BaseImage

        attrs = self.attrs(reference)
        if attrs is None:
            raise ImageError(f"base image {reference} is not in podman's storage", field="--base", fix=BASE_FIX)
        arch = platform.split("/", 1)[1]
        said = f"{attrs.get('Os')}/{normalize_arch(str(attrs.get('Architecture')))}"
        if said != platform:
            raise ImageError(f"base image {reference} says {said} in its metadata, the build needs {platform}",
                             field="--base", fix=f"import the base with `podman import --arch {arch}`, or pass "
                                                 f"--base with a {platform} image")
        result = self.run(attrs["Id"], ["uname", "-m"], timeout=300)
        seen = normalize_arch(result.stdout.strip()) if result.exit_code == 0 else None
        if seen != arch:
            fix = EMULATION_FIX if arch != "amd64" and not seen else f"pass --base with a {platform} image"
            raise ImageError(f"base image {reference} does not run here as {arch} "
                             f"({seen or result.tail(2) or 'exec format error'})", field="--base", fix=fix)
        return BaseImage(reference=reference, source_id=attrs["Id"], id=attrs["Id"])
