"""The pinned framework images: catalog, lockfiles, hermetic builds, verification, archives.

Entry points other parts call:
    runner.images.catalog.load_catalog(path=None) -> Catalog   (.get(name), .for_run(framework, variant))
    runner.images.build.ensure_image(client_or_store, entry, policy, base=None) -> image id
    runner.images.inspect.image_fingerprint(client, image_id) -> dict
Nothing here imports a deep-learning framework. The build, lock and verify pipeline asks an
ImageStore (runner.images.store): Docker's through the SDK (`runner.engine.docker_client`), or
podman's own through its CLI (runner.images.podman_store.PodmanStore).
"""
