"""`publish --with-images` through the real engine: the image the runs used, saved beside the bundle."""

from __future__ import annotations

import io
import json
import tarfile

import pytest

from runner.audit.verify import verify_bundle
from runner.fingerprint.redact import Redaction
from runner.publish.publish import publish_bundle
from tests.audit.synth import make_bundle
from tests.audit.test_verify import SMALL

pytestmark = pytest.mark.docker


@pytest.fixture
def tiny_image():
    """A one-file image made for this test (docker import), removed afterwards."""
    import docker

    client = docker.from_env()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        data = b"published by a runner test\n"
        info = tarfile.TarInfo("hello.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    client.api.import_image_from_data(buf.getvalue(), repository="runner-test/publish", tag="tiny")
    image = client.images.get("runner-test/publish:tiny")
    yield image.id
    client.images.remove(image.id, force=True)


def test_publish_with_images(tiny_image, tmp_path):
    ids = {"pytorch": tiny_image, "tensorflow": tiny_image}
    bundle = make_bundle(tmp_path / "b", spec=SMALL, image_ids=ids)
    result = publish_bundle(bundle, tmp_path / "out", with_images=True, redaction=Redaction())
    assert len(result.images) == 1  # two frameworks, one image: saved once
    image = result.images[0]
    archive = result.path / image.path
    assert archive.is_file() and (result.path / (image.path + ".sha256")).is_file()
    from runner.images.archive import archive_image_id

    assert archive_image_id(archive)[0] == tiny_image
    text = (result.path / "REPRODUCING.md").read_text()
    assert f"runner images import {image.path} --expect-id {tiny_image}" in text
    crate = json.loads((result.path / "ro-crate-metadata.json").read_text())
    entity = next(e for e in crate["@graph"] if e["@id"] == image.path)
    assert entity["sha256"] == image.sha256 and entity["about"]["@id"].startswith("#image-")
    check = verify_bundle(result.path)
    assert check.ok, check.problems
    assert any(n.startswith(image.path) for n in check.notes)
