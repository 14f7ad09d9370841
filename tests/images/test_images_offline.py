"""Archive checks, CLI flags and engine errors that need no running engine."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile

import pytest

from runner.cli.images import parse_bases
from runner.engine.docker_client import connect
from runner.errors import CheckFailed, EngineError, ImageError, UsageError
from runner.images.archive import archive_image_id, check_sidecar, import_image
from runner.images.build import label_instruction


def _archive(path, images):
    """A docker-archive tarball with `images` = [(config bytes, tags)]."""
    manifest = []
    with tarfile.open(path, "w") as tar:
        for config, tags in images:
            name = hashlib.sha256(config).hexdigest() + ".json"
            info = tarfile.TarInfo(name)
            info.size = len(config)
            tar.addfile(info, io.BytesIO(config))
            manifest.append({"Config": name, "RepoTags": tags, "Layers": []})
        data = json.dumps(manifest).encode()
        info = tarfile.TarInfo("manifest.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return path


def test_archive_id_is_the_sha256_of_the_config(tmp_path):
    config = b'{"architecture":"amd64","os":"linux"}'
    image_id, tags = archive_image_id(_archive(tmp_path / "a.tar", [(config, ["runner/x:1"])]))
    assert image_id == "sha256:" + hashlib.sha256(config).hexdigest()
    assert tags == ("runner/x:1",)


def test_archive_with_two_images_or_no_manifest_is_refused(tmp_path):
    two = _archive(tmp_path / "two.tar", [(b'{"a":1}', None), (b'{"a":2}', None)])
    with pytest.raises(ImageError, match="holds 2 images"):
        archive_image_id(two)
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"this is not a tarball")
    with pytest.raises(ImageError, match="not a docker-archive"):
        archive_image_id(junk)


def test_import_refuses_before_touching_the_engine(tmp_path):
    """The id and the sidecar are checked before any engine call (the client is never used)."""
    archive = _archive(tmp_path / "a.tar", [(b'{"os":"linux"}', ["runner/x:1"])])
    with pytest.raises(CheckFailed, match="expected sha256:0000"):
        import_image(None, archive, "sha256:" + "0" * 64)  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="not an image id"):
        import_image(None, archive, "0" * 64)  # type: ignore[arg-type]
    (tmp_path / "a.tar.sha256").write_text("f" * 64 + "  a.tar\n")
    with pytest.raises(CheckFailed, match="a.tar.sha256 says ffff"):
        import_image(None, archive)  # type: ignore[arg-type]
    (tmp_path / "a.tar.sha256").write_text(hashlib.sha256(archive.read_bytes()).hexdigest() + "  a.tar\n")
    assert check_sidecar(archive) == hashlib.sha256(archive.read_bytes()).hexdigest()


def test_no_engine_is_one_line_with_the_fix():
    with pytest.raises(EngineError) as err:
        connect(timeout=5, base_url="unix:///nonexistent/docker.sock")
    line = err.value.describe()
    assert "\n" not in line
    assert line.startswith("no container engine answers at unix:///nonexistent/docker.sock")
    assert "(fix: start dockerd" in line


def test_cli_without_engine_exits_2_with_one_line(cli, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    result = cli("images", "list")
    assert result.code == 2
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: no container engine answers")
    assert "fix: start dockerd" in lines[0]


def test_cli_unknown_image_exits_2(cli):
    result = cli("images", "verify", "pytorch-gpu")
    assert result.code == 2
    assert "no image named 'pytorch-gpu'" in result.err


def test_parse_bases():
    assert parse_bases(None) == {}
    assert parse_bases(["local/debian:bookworm", "linux/ppc64le=local/debian:bookworm-ppc64le"]) == {
        None: "local/debian:bookworm", "linux/ppc64le": "local/debian:bookworm-ppc64le"}
    with pytest.raises(UsageError, match="unknown platform"):
        parse_bases(["linux/arm64=x"])
    with pytest.raises(UsageError, match="given twice"):
        parse_bases(["a", "b"])


def test_label_instruction_quotes_and_escapes():
    text = label_instruction({"b": 'say "hi"', "a": "$HOME"})
    assert text.strip().splitlines()[-2:] == ['LABEL a="\\$HOME" \\', '      b="say \\"hi\\""']

