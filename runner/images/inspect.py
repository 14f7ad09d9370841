"""What the engine holds for a catalog entry (present / missing / stale), and image fingerprints."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from runner.engine.docker_client import api_errors
from runner.errors import ImageError
from runner.images import labels as L
from runner.images.catalog import CatalogEntry
from runner.images.lockfile import Lockfile, read_lockfile

if TYPE_CHECKING:
    import docker

Status = Literal["present", "missing", "stale"]


@dataclass(frozen=True)
class ImageState:
    """The engine's image for one entry, compared with the catalog and lockfile as they are now."""

    entry: CatalogEntry
    status: Status
    image_id: str | None = None
    size: int | None = None
    reasons: tuple[str, ...] = ()


def get_attrs(client: docker.DockerClient, ref: str) -> dict[str, Any] | None:
    """The image's inspect data, or None if the engine has no such image."""
    import docker.errors

    try:
        return client.images.get(ref).attrs
    except docker.errors.ImageNotFound:
        return None
    except docker.errors.DockerException:
        with api_errors(f"inspecting {ref}"):
            raise


def label_mismatches(attrs: dict[str, Any], entry: CatalogEntry, lock: Lockfile | None) -> list[str]:
    """Why the image with these attrs is not a current build of `entry` (empty: it is)."""
    labels = (attrs.get("Config") or {}).get("Labels") or {}
    reasons = []
    if labels.get(L.IMAGE) != entry.name:
        reasons.append(f"the tag points at an image built for {labels.get(L.IMAGE) or 'something else'}")
    for key, want in ((L.FRAMEWORK, entry.framework), (L.FRAMEWORK_VERSION, entry.framework_version),
                      (L.VARIANT, entry.variant)):
        if labels.get(key) != want:
            reasons.append(f"label {key} is {labels.get(key)!r}, the catalog says {want!r}")
    if lock is None:
        reasons.append("the lockfile cannot be read")
    elif labels.get(L.LOCK_SHA256) != lock.sha256:
        reasons.append("the lockfile changed since the build")
    if labels.get(L.CATALOG_ENTRY) != entry.sha256:
        reasons.append("the catalog entry changed since the build")
    if labels.get(L.RECIPE_SHA256) != L.recipe_sha256(entry):
        reasons.append("the Dockerfiles changed since the build")
    arch = attrs.get("Architecture")
    if arch != entry.arch:
        reasons.append(f"the image is {attrs.get('Os')}/{arch}, the catalog says {entry.platform}")
    return reasons


def image_state(client: docker.DockerClient, entry: CatalogEntry) -> ImageState:
    """Is the image tagged for `entry` a build of the current catalog entry and lockfile?"""
    return state_of(entry, get_attrs(client, entry.tag))


def state_of(entry: CatalogEntry, attrs: dict[str, Any] | None) -> ImageState:
    """The state of the image with these inspect attrs (Docker's shape; None: no such image) for `entry`.
    Engine-neutral: podman's inspect data, put in Docker's shape, is judged by the same rule."""
    if attrs is None:
        return ImageState(entry, "missing")
    try:
        lock: Lockfile | None = read_lockfile(entry.lockfile, entry.name)
    except ImageError:
        lock = None
    reasons = label_mismatches(attrs, entry, lock)
    return ImageState(entry, "stale" if reasons else "present", attrs["Id"], attrs.get("Size"), tuple(reasons))


def image_fingerprint(client: docker.DockerClient, image_id: str) -> dict[str, Any]:
    """What identifies an image for a results bundle: id, tags, digests, labels, size, platform."""
    attrs = get_attrs(client, image_id)
    if attrs is None:
        raise ImageError(f"image {image_id} is not on this engine",
                         fix="runner images build NAME, or runner images import FILE")
    return fingerprint_of(attrs)


def fingerprint_of(attrs: dict[str, Any]) -> dict[str, Any]:
    """The bundle's image facts from inspect attrs in Docker's shape (Docker's own, or podman's put in it)."""
    config = attrs.get("Config") or {}
    return {
        "id": attrs["Id"],
        "repo_tags": sorted(attrs.get("RepoTags") or []),
        "repo_digests": sorted(attrs.get("RepoDigests") or []),
        "labels": dict(sorted((config.get("Labels") or {}).items())),
        "size": attrs.get("Size"),
        "architecture": attrs.get("Architecture"),
        "os": attrs.get("Os"),
        "variant": attrs.get("Variant"),
        "created": attrs.get("Created"),
    }
