"""Fixtures for the image tests: one engine client, and the CPU images built once per session."""

from __future__ import annotations

import pytest
from images_helpers import LOCAL_BASE


@pytest.fixture(scope="session")
def client():
    from runner.engine.docker_client import connect

    return connect()


@pytest.fixture(scope="session")
def local_base(client):
    import docker.errors

    try:
        client.images.get(LOCAL_BASE)
    except docker.errors.ImageNotFound:
        pytest.skip(f"{LOCAL_BASE} is not on this engine (debootstrap + docker import makes it, see docs/images.md)")
    return LOCAL_BASE


@pytest.fixture(scope="session")
def cpu_images(client, local_base):
    """pytorch-cpu and tensorflow-cpu, built once per session through `ensure_image(policy="always")`:
    a real build every session, which the engine's layer cache keeps short after the first."""
    from runner.images.build import ensure_image
    from runner.images.catalog import load_catalog

    catalog = load_catalog()
    return {name: ensure_image(client, catalog.get(name), "always", base=local_base)
            for name in ("pytorch-cpu", "tensorflow-cpu")}
