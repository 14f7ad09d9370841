"""The pinned framework images: catalog, lockfiles, hermetic builds, verification, archives.

Entry points other parts call:
    runner.images.catalog.load_catalog(path=None) -> Catalog   (.get(name), .for_run(framework, variant))
    runner.images.build.ensure_image(client, entry, policy, base=None) -> image id
    runner.images.inspect.image_fingerprint(client, image_id) -> dict
Nothing here imports a deep-learning framework; the engine is reached through the Docker SDK
(`runner.engine.docker_client`).
"""
