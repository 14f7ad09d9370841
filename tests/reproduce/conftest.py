"""Fixtures for tests against the real engine: the CPU images, built once per session."""

from __future__ import annotations

import pytest

LOCAL_BASE = "local/debian:bookworm"  # made by .ci/provision.sh (no registry is reachable)


@pytest.fixture(scope="session")
def docker_client():
    from runner.engine.docker_client import connect

    return connect()


@pytest.fixture(scope="session")
def cpu_images(docker_client) -> dict[str, str]:
    """framework -> image id of the CPU image (built from the lockfiles if missing)."""
    from runner.images.build import ensure_image
    from runner.images.catalog import load_catalog

    catalog = load_catalog()
    return {fw: ensure_image(docker_client, catalog.for_run(fw, "cpu"), "missing", LOCAL_BASE)
            for fw in ("pytorch", "tensorflow")}


@pytest.fixture(scope="session")
def mxnet_cpu_image(docker_client) -> str:
    """The mxnet-cpu image id (built from its lockfile if missing: about 2 minutes here)."""
    from runner.images.build import ensure_image
    from runner.images.catalog import load_catalog

    return ensure_image(docker_client, load_catalog().for_run("mxnet", "cpu"), "missing", LOCAL_BASE)


@pytest.fixture(scope="session")
def podman_engine(docker_client):
    """The real podman (Debian's), moving images from the real Docker engine."""
    from runner.engine.podman_engine import PodmanEngine

    return PodmanEngine.connect(docker=docker_client)


@pytest.fixture(scope="session")
def podman_images(podman_engine, cpu_images) -> dict[str, str]:
    """framework -> image id of the CPU image, in podman's storage (moved from Docker if missing)."""
    return {fw: podman_engine.ensure_image(image_id) for fw, image_id in cpu_images.items()}
