"""Where images are built and kept: an ImageStore is what the image pipeline (build, lock, verify,
ensure) asks of an engine, so one pipeline serves Docker's storage and podman's own.

Two stores: DockerStore (the Docker SDK; the common case) and PodmanStore
(runner.images.podman_build: podman's CLI, for machines where podman runs and no Docker engine
does). Both speak Docker's shape for inspect data, so the label rule that judges an image
(runner.images.inspect.state_of) and the facts a bundle records are the same for either.

The functions of the pipeline take a store, or a Docker client, which `as_store` wraps: most
callers hold a Docker client and have no reason to know about stores.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import docker

    from runner.images.containers import CommandResult
    from runner.images.platform import BaseImage

Log = Callable[[str], None]


class ImageStore(ABC):
    """The engine operations the image pipeline needs."""

    name: str  # "docker" or "podman": said in messages and fixes

    @property
    def engine_flag(self) -> str:
        """What a `runner images` command needs to reach this store: "" (Docker, the default) or
        " --engine podman"."""
        return "" if self.name == "docker" else f" --engine {self.name}"

    @abstractmethod
    def builder(self) -> str:
        """Who builds here, with its version ("docker 20.10.24", "podman 4.3.1"): an image's ID
        depends on its builder, so the images record it (label io.runner.builder)."""

    @abstractmethod
    def attrs(self, ref: str) -> dict[str, Any] | None:
        """Inspect data in Docker's shape (`Id` with its sha256: prefix), or None: no such image."""

    @abstractmethod
    def tag(self, image_id: str, reference: str) -> None:
        """Point `reference` (repository:tag) at `image_id`, moving it if it pointed elsewhere."""

    @abstractmethod
    def build(self, what: str, context: Path, *, buildargs: dict[str, str], network: bool, platform: str,
              nocache: bool, log: Log) -> str:
        """Build `context`/Dockerfile (network on or off for its RUN steps); returns the image ID."""

    @abstractmethod
    def run(self, image: str, argv: list[str], *, network: bool = False, timeout: float = 1800,
            environment: dict[str, str] | None = None) -> CommandResult:
        """Run `argv` in a throwaway container of `image`; never raises on a non-zero exit."""

    @abstractmethod
    def prepare_base(self, reference: str, platform: str, workdir: Path) -> BaseImage:
        """The base a build starts from: present (or pulled), runs as `platform`, says `platform`."""


class DockerStore(ImageStore):
    """Docker's image storage, through the Docker SDK."""

    name = "docker"

    def __init__(self, client: docker.DockerClient) -> None:
        self.client = client

    def builder(self) -> str:
        from runner.engine.docker_client import api_errors

        with api_errors("asking the engine its version"):
            return f"docker {self.client.version().get('Version', 'unknown')}"

    def attrs(self, ref: str) -> dict[str, Any] | None:
        from runner.images.inspect import get_attrs

        return get_attrs(self.client, ref)

    def tag(self, image_id: str, reference: str) -> None:
        from runner.engine.docker_client import api_errors

        repository, _, tag = reference.rpartition(":")
        with api_errors(f"tagging {reference}"):
            self.client.api.tag(image_id, repository, tag, force=True)

    def build(self, what: str, context: Path, *, buildargs: dict[str, str], network: bool, platform: str,
              nocache: bool, log: Log) -> str:
        from runner.images.build import stream_build

        return stream_build(self.client, what, context, buildargs=buildargs,
                            network_mode=None if network else "none", platform=platform, nocache=nocache, log=log)

    def run(self, image: str, argv: list[str], *, network: bool = False, timeout: float = 1800,
            environment: dict[str, str] | None = None) -> CommandResult:
        from runner.images.containers import run_command

        return run_command(self.client, image, argv, network="bridge" if network else "none", timeout=timeout,
                           environment=environment)

    def prepare_base(self, reference: str, platform: str, workdir: Path) -> BaseImage:
        from runner.images.platform import prepare_base

        return prepare_base(self.client, reference, platform, workdir)


def as_store(engine: ImageStore | docker.DockerClient) -> ImageStore:
    """`engine` itself when it is a store, else the Docker client wrapped in a DockerStore."""
    return engine if isinstance(engine, ImageStore) else DockerStore(engine)
