"""Hermetic builds: `runner images build` and `ensure_image`, the call the reproduce command makes.

A build has two engine builds, by the ImageStore it is given (runner.images.store: Docker's
classic builder through the SDK, engine 20.10 has no BuildKit here; or `podman build`):
1. the system layer (images/system/Dockerfile): base + pinned Debian packages, network ON
   (apt reaches Debian's archive), tagged runner/system:<hash of its inputs> so the engine's
   cache and later builds find it;
2. the framework layer (images/<framework>/Dockerfile): the locked wheels, hash-checked on the
   host, go in the build context and pip installs them with `--no-index --require-hashes`,
   network OFF (Docker's `network_mode="none"`, podman's `--network none`).
The result is tagged runner/<name>:<version> only after the build succeeded and its platform
was checked, so a failed build leaves nothing tagged (its cached layers stay, untagged).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from runner.engine.docker_client import api_errors
from runner.errors import ImageError, UsageError
from runner.images.catalog import CatalogEntry
from runner.images.inspect import ImageState, state_of
from runner.images.labels import BASE_ID_LABEL, SYSTEM_DOCKERFILE, image_labels
from runner.images.lockfile import Lockfile, read_lockfile
from runner.images.paths import default_cache_dir
from runner.images.platform import BaseImage
from runner.images.store import ImageStore, as_store
from runner.images.wheels import fetch_wheels

if TYPE_CHECKING:
    import docker

Policy = Literal["missing", "always", "never"]
POLICIES: tuple[str, ...] = ("missing", "always", "never")
Log = Callable[[str], None]

BUILD_TIMEOUT_S = 3600
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _quiet(_line: str) -> None:
    return None


def load_checked_lock(entry: CatalogEntry) -> Lockfile:
    """The entry's lockfile, refused if it was resolved from other catalog inputs or cannot install."""
    lock = read_lockfile(entry.lockfile, entry.name)
    if lock.inputs_sha256 != entry.lock_inputs_sha256():
        raise ImageError(f"the lockfile was resolved from other catalog inputs than {entry.name} has now",
                         file=entry.lockfile, field="inputs", fix=f"runner images lock {entry.name}")
    if "pip" not in lock.pip_versions():
        raise ImageError("the lockfile pins no pip wheel (it installs the others inside the image)",
                         file=entry.lockfile, field="pip",
                         fix=f"add pip to requirements; runner images lock {entry.name}")
    return lock


def stream_build(client: docker.DockerClient, what: str, context: Path, *, buildargs: dict[str, str],
                 network_mode: str | None, platform: str, nocache: bool = False, log: Log = _quiet) -> str:
    """Run one classic-builder build, streaming its output to `log`; returns the image id."""
    image_id = None
    recent: deque[str] = deque(maxlen=3)
    with api_errors(f"building {what}", fix="check `runner doctor`; the build output above says more"):
        stream = client.api.build(
            path=str(context), dockerfile="Dockerfile", buildargs=buildargs, network_mode=network_mode,
            platform=platform, rm=True, forcerm=True, pull=False, nocache=nocache,
            decode=True, timeout=BUILD_TIMEOUT_S,
        )
        for chunk in stream:
            if "error" in chunk:
                message = " ".join(_ANSI.sub("", str(chunk["error"])).split())
                if len(message) > 160:
                    message = message[:157] + "..."
                said = " | ".join(recent)
                raise ImageError(f"building {what} failed: {said} ({message})" if said else
                                 f"building {what} failed: {message}",
                                 fix="read the build output above; nothing was tagged")
            for line in _ANSI.sub("", str(chunk.get("stream", ""))).splitlines():
                if line.strip():
                    log(line.rstrip())
                    if not line.startswith((" ---> ", "Step ", "Removing intermediate")):
                        recent.append(line.strip())
            aux = chunk.get("aux")
            if isinstance(aux, dict) and "ID" in aux:
                image_id = aux["ID"]
    if not image_id:
        raise ImageError(f"the engine reported no image id for {what}", fix="read the build output above")
    return image_id


def _label_value(value: str) -> str:
    """A double-quoted Dockerfile string; `$` escaped so the builder does not expand it."""
    return json.dumps(value).replace("$", "\\$")


def label_instruction(labels: dict[str, str]) -> str:
    """One LABEL line for the end of the Dockerfile (the SDK's `labels=` adds one build step per label)."""
    parts = [f"{key}={_label_value(value)}" for key, value in sorted(labels.items())]
    return "\n# Added by `runner images build`: the image's labels.\nLABEL " + " \\\n      ".join(parts) + "\n"


def _fresh_context(cache_dir: Path, name: str) -> Path:
    root = cache_dir / "build"
    root.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"{name}-", dir=root))


def _link_or_copy(src: Path, dest: Path) -> None:
    try:
        os.link(src, dest)
    except OSError:
        shutil.copyfile(src, dest)


def build_system_layer(store: ImageStore, entry: CatalogEntry, lock: Lockfile, base: BaseImage,
                       cache_dir: Path, nocache: bool = False, log: Log = _quiet) -> str:
    """Base + pinned Debian packages (network on); tagged runner/system:<hash of the inputs>."""
    dockerfile = entry.catalog_path.parent / SYSTEM_DOCKERFILE
    if not dockerfile.is_file():
        raise ImageError("the system-layer Dockerfile is missing", file=dockerfile,
                         fix="restore images/system/Dockerfile from the repository")
    packages = " ".join(p.spec for p in sorted(lock.debian, key=lambda p: p.package))
    digest = hashlib.sha256("\n".join([base.id, packages, dockerfile.read_text()]).encode()).hexdigest()
    context = _fresh_context(cache_dir, "system")
    try:
        shutil.copyfile(dockerfile, context / "Dockerfile")
        log(f"system layer: {len(lock.debian)} Debian packages on {base.reference}")
        system_id = store.build(f"the system layer of {entry.name}", context,
                                buildargs={"BASE": base.id, "DEBIAN_PACKAGES": packages},
                                network=True, platform=entry.platform, nocache=nocache, log=log)
    finally:
        shutil.rmtree(context, ignore_errors=True)
    store.tag(system_id, f"runner/system:{digest[:16]}")
    return system_id


def build_image(engine: ImageStore | docker.DockerClient, entry: CatalogEntry, *, base: str | None = None,
                cache_dir: Path | None = None, nocache: bool = False, log: Log | None = None) -> str:
    """Build `entry` from its lockfile in `engine`'s storage (a Docker client or an ImageStore);
    returns the new image id, tagged `entry.tag`."""
    store = as_store(engine)
    say = log or _quiet
    if not entry.buildable:
        raise ImageError(f"{entry.name} is a {entry.recipe} recipe and is not built here",
                         file=entry.catalog_path, field=f"{entry.field_prefix}.recipe",
                         fix="see docs/images.md, 'TensorFlow on POWER'")
    if not entry.dockerfile.is_file():
        raise ImageError("Dockerfile not found", file=entry.dockerfile,
                         fix=f"fix {entry.field_prefix}.dockerfile in {entry.catalog_path}")
    lock = load_checked_lock(entry)
    cache = cache_dir or default_cache_dir()
    base_image = store.prepare_base(base or entry.base, entry.platform, cache / "tmp")
    wheels = fetch_wheels(entry, lock, cache, say)
    system_id = build_system_layer(store, entry, lock, base_image, cache, nocache=nocache, log=say)

    context = _fresh_context(cache, entry.name)
    try:
        labels = image_labels(entry, lock, base_image, builder=store.builder())
        (context / "Dockerfile").write_text(entry.dockerfile.read_text() + label_instruction(labels))
        shutil.copyfile(entry.lockfile, context / "lock.txt")
        (context / "wheelhouse").mkdir()
        for wheel in wheels:
            _link_or_copy(wheel, context / "wheelhouse" / wheel.name)
        say(f"framework layer: {len(wheels)} locked wheels, network off")
        image_id = store.build(
            entry.name, context,
            buildargs={"BASE": system_id, "IMPORT_VERSION": entry.reported_version},
            network=False, platform=entry.platform, nocache=nocache, log=say,
        )
    finally:
        shutil.rmtree(context, ignore_errors=True)

    attrs = store.attrs(image_id) or {}
    platform = f"{attrs.get('Os')}/{attrs.get('Architecture')}"
    if platform != entry.platform:
        raise ImageError(f"the build of {entry.name} says {platform}, the catalog says {entry.platform}",
                         fix="report this; the image was left untagged")
    store.tag(image_id, entry.tag)
    return image_id


def base_moved(store: ImageStore, state: ImageState, base: str) -> str | None:
    """Why a present image is not a build on `base` as the engine has it now (a base rebuilt or
    replaced under the same name), or None. A base the engine lacks is not judged (nothing is pulled)."""
    if state.status != "present" or not state.image_id:
        return None
    base_attrs = store.attrs(base)
    if base_attrs is None:
        return None
    labels = ((store.attrs(state.image_id) or {}).get("Config") or {}).get("Labels") or {}
    built_on = labels.get(BASE_ID_LABEL)
    if built_on == base_attrs["Id"]:
        return None
    return f"it was built on base {str(built_on)[:19]}, and {base} is now {base_attrs['Id'][:19]}"


def ensure_image(engine: ImageStore | docker.DockerClient, entry: CatalogEntry, policy: Policy = "missing",
                 base: str | None = None, *, cache_dir: Path | None = None, log: Log | None = None) -> str:
    """The id of a current image for `entry` in `engine`'s storage (a Docker client or an
    ImageStore), building it as `policy` allows.

    missing: reuse the tagged image if it matches the catalog entry and lockfile, else build;
    always:  build (the engine's layer cache makes an unchanged rebuild quick);
    never:   reuse, or raise ImageError naming why the image cannot be used.
    """
    if policy not in POLICIES:
        raise UsageError(f"unknown build policy {policy!r}", field="policy", fix=f"use one of: {', '.join(POLICIES)}")
    store = as_store(engine)
    if policy != "always":
        state = state_of(entry, store.attrs(entry.tag))
        moved = base_moved(store, state, base or entry.base)
        if moved:
            state = dataclasses.replace(state, status="stale", reasons=(*state.reasons, moved))
        if state.status == "present" and state.image_id:
            return state.image_id
        if policy == "never":
            why = "; ".join(state.reasons) or "not on this engine"
            flag = store.engine_flag
            raise ImageError(f"image {entry.tag} is {state.status}: {why}",
                             fix=f"runner images build {entry.name}{flag} (or runner images import FILE{flag})")
    return build_image(store, entry, base=base, cache_dir=cache_dir, log=log)
