"""The base an image is built FROM: found or pulled, runnable here, and labelled with the right platform.

Two facts of the build machines shape this module:
- no registry answers, so the catalog's pinned base is usually replaced by a local one (`--base`);
- an image made by `docker import` says `amd64` in its metadata whatever `--platform` said
  (engine 20.10), and images built FROM it inherit that. The classic builder does not change it
  either (checked: the SDK's `platform` argument builds, but the result still says amd64). So a
  base whose metadata names the wrong architecture is rewritten once through `docker save` /
  `docker load` with the config's `architecture` set, and the images built FROM it inherit that.
  The SDK has no call that edits an image's config, hence the archive round trip.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from runner.engine.docker_client import api_errors, normalize_arch
from runner.errors import ImageError
from runner.images.containers import run_command

if TYPE_CHECKING:
    import docker

EMULATION_FIX = "run images/ppc64le/setup-emulation.sh as root (qemu-user-static + binfmt_misc)"
LOCAL_BASE_FIX = ("no registry here: make a local base and pass it with --base, e.g. --base local/debian:bookworm "
                  "(debootstrap + docker import; images/ppc64le/setup-emulation.sh makes the ppc64le one)")


@dataclass(frozen=True)
class BaseImage:
    """What a build starts from."""

    reference: str  # as named by the catalog or --base
    source_id: str  # the image that reference names
    id: str  # what the build uses: source_id, or its copy with the platform fixed


def find_or_pull(client: docker.DockerClient, reference: str, platform: str) -> str:
    """The image id `reference` names on this engine, pulling it if needed (and possible)."""
    import docker.errors

    try:
        return client.images.get(reference).id
    except docker.errors.ImageNotFound:
        pass
    except docker.errors.APIError as e:
        raise ImageError(f"base image {reference!r} cannot be looked up: {e.explanation}",
                         fix="check the reference") from None
    try:
        return client.images.pull(reference, platform=platform).id
    except docker.errors.DockerException as e:
        reason = " ".join(str(getattr(e, "explanation", None) or e).split())[:160]
        raise ImageError(f"base image {reference} is not on this engine and cannot be pulled ({reason})",
                         fix=LOCAL_BASE_FIX) from None


def check_runs_as(client: docker.DockerClient, image_id: str, platform: str) -> None:
    """Run `uname -m` in the image: the kernel (or qemu) must execute it as `platform`."""
    arch = platform.split("/", 1)[1]
    result = run_command(client, image_id, ["uname", "-m"], timeout=300)
    seen = normalize_arch(result.stdout.strip()) if result.exit_code == 0 else None
    if seen != arch:
        if seen:  # it ran, as something else: the wrong base, not missing emulation
            raise ImageError(f"base image {image_id[:19]} runs as {seen}, expected {arch}",
                             fix=f"pass --base with a {platform} image")
        raise ImageError(f"base image {image_id[:19]} does not run here as {arch} "
                         f"({result.tail(2) or 'exec format error'})",
                         fix=EMULATION_FIX if arch != "amd64" else f"pass --base with a {platform} image")


def image_platform(client: docker.DockerClient, image_id: str) -> str:
    with api_errors(f"inspecting {image_id}"):
        attrs = client.images.get(image_id).attrs
    return f"{attrs.get('Os', '')}/{attrs.get('Architecture', '')}"


def _rewrite_config(src: Path, dst: Path, os_name: str, arch: str) -> str:
    """Copy the docker-archive `src` to `dst` with the config's os/architecture set; returns the new id."""
    with tarfile.open(src) as tin:
        manifest = json.load(tin.extractfile("manifest.json"))  # type: ignore[arg-type]
        if len(manifest) != 1:
            raise ImageError(f"expected one image in the saved archive, found {len(manifest)}")
        old_config = manifest[0]["Config"]
        config = json.load(tin.extractfile(old_config))  # type: ignore[arg-type]
        config["os"], config["architecture"] = os_name, arch
        config.pop("variant", None)
        blob = json.dumps(config, separators=(",", ":"), sort_keys=True).encode()
        new_hex = hashlib.sha256(blob).hexdigest()
        manifest[0]["Config"] = f"{new_hex}.json"
        manifest[0]["RepoTags"] = None  # loaded untagged; tagged by the caller after the id is checked
        with tarfile.open(dst, "w") as tout:
            for member in tin:
                if member.name in (old_config, "manifest.json", "repositories"):
                    continue
                tout.addfile(member, tin.extractfile(member) if member.isfile() else None)
            for name, data in ((f"{new_hex}.json", blob), ("manifest.json", json.dumps(manifest).encode())):
                info = tarfile.TarInfo(name)
                info.size, info.mode = len(data), 0o644
                tout.addfile(info, io.BytesIO(data))
    return f"sha256:{new_hex}"



def with_platform(client: docker.DockerClient, image_id: str, platform: str, workdir: Path) -> str:
    """`image_id` if its metadata says `platform`, else the id of a copy that does (made once, tagged)."""
    import docker.errors

    os_name, arch = platform.split("/", 1)
    if image_platform(client, image_id) == platform:
        return image_id
    tag = f"runner/base-{arch}:{image_id.removeprefix('sha256:')[:16]}"
    try:
        existing = client.images.get(tag)
        if f"{existing.attrs.get('Os')}/{existing.attrs.get('Architecture')}" == platform:
            return existing.id
    except docker.errors.ImageNotFound:
        pass
    workdir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=workdir, prefix="platform-") as tmp:
        src, dst = Path(tmp) / "saved.tar", Path(tmp) / "fixed.tar"
        with api_errors(f"saving {image_id[:19]} to set its platform"), open(src, "wb") as f:
            for chunk in client.images.get(image_id).save(named=False):
                f.write(chunk)
        new_id = _rewrite_config(src, dst, os_name, arch)
        with api_errors(f"loading the {platform} copy of {image_id[:19]}"), open(dst, "rb") as f:
            loaded = client.images.load(f)
    ids = {img.id for img in loaded}
    if ids != {new_id}:
        raise ImageError(f"loading the {platform} copy of {image_id[:19]} gave {sorted(ids)}, expected {new_id}",
                         fix="report this: the engine changed the config while loading")
    repository, _, tag_name = tag.partition(":")
    with api_errors(f"tagging {tag}"):
        client.api.tag(new_id, repository, tag_name, force=True)
    if image_platform(client, new_id) != platform:
        raise ImageError(f"the copy {new_id[:19]} still says {image_platform(client, new_id)}",
                         fix="report this: the engine ignored the rewritten architecture")
    return new_id


def prepare_base(client: docker.DockerClient, reference: str, platform: str, workdir: Path) -> BaseImage:
    """Find (or pull) the base, check it runs as `platform`, and fix its platform metadata."""
    source_id = find_or_pull(client, reference, platform)
    check_runs_as(client, source_id, platform)
    return BaseImage(reference=reference, source_id=source_id,
                     id=with_platform(client, source_id, platform, workdir))
