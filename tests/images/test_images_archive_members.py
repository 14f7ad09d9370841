"""Issue 9: `runner images import` checks every member of the tarball before anything reads or loads it.

Before: members with `..`, absolute paths, links leading outside or devices went to the engine.
The client passed is None: a check that let the archive through would fail on using it.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import tarfile
from pathlib import Path

import pytest

from runner.errors import ImageError
from runner.images.archive import import_image

CONFIG = b'{"architecture":"amd64","os":"linux"}'


def docker_archive(path: Path, extra: list[tarfile.TarInfo]) -> Path:
    """A one-image docker-archive (config + manifest.json) plus the `extra` members."""
    name = hashlib.sha256(CONFIG).hexdigest() + ".json"
    manifest = json.dumps([{"Config": name, "RepoTags": ["runner/x:1"], "Layers": []}]).encode()
    with tarfile.open(path, "w") as tar:
        for member_name, data in ((name, CONFIG), ("manifest.json", manifest)):
            info = tarfile.TarInfo(member_name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for info in extra:
            tar.addfile(info, io.BytesIO(b"x" * info.size) if info.isfile() else None)
    return path


def member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "", size: int = 1) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    info.size = size if kind == tarfile.REGTYPE else 0
    return info


@pytest.mark.parametrize("extra, message", [
    (member("../escape"), "leads outside"),
    (member("/etc/cron.d/x"), "absolute path"),
    (member("layer/link", tarfile.SYMTYPE, "../../etc/passwd"), "links outside"),
    (member("layer/abs", tarfile.SYMTYPE, "/etc/passwd"), "links outside"),
    (member("layer/hard", tarfile.LNKTYPE, "../outside"), "links outside"),
    (member("dev/sda", tarfile.BLKTYPE), "device or FIFO"),
    (member("dev/null", tarfile.CHRTYPE), "device or FIFO"),
    (member("pipe", tarfile.FIFOTYPE), "device or FIFO"),
], ids=["dotdot", "absolute", "symlink-up", "symlink-abs", "hardlink-up", "block", "char", "fifo"])
def test_unsafe_members_are_refused_before_the_engine(tmp_path, cli, extra, message):
    archive = docker_archive(tmp_path / "a.tar", [extra])
    with pytest.raises(ImageError, match=message) as info:
        import_image(None, archive)  # type: ignore[arg-type]
    assert "\n" not in info.value.describe()
    result = cli("images", "import", archive)
    assert result.code == 2 and message in result.err and result.err.count("\n") == 1


def test_links_between_layers_inside_the_archive_pass_the_member_check(tmp_path):
    ok = docker_archive(tmp_path / "ok.tar", [member("l1/layer.tar"), member("l2/layer.tar", tarfile.SYMTYPE,
                                                                              "../l1/layer.tar")])
    with pytest.raises(AttributeError):  # past every check: the (absent) engine is reached
        import_image(None, ok)  # type: ignore[arg-type]


def test_a_header_claiming_more_bytes_than_the_file_holds_is_refused(tmp_path):
    archive = docker_archive(tmp_path / "a.tar", [])
    data = bytearray(archive.read_bytes())
    data[:0] = member("huge", size=0).tobuf(format=tarfile.USTAR_FORMAT)  # then claim 8 GB in that header
    big = member("huge", size=8 * 10**9).tobuf(format=tarfile.USTAR_FORMAT)
    data[:512] = big
    archive.write_bytes(bytes(data))
    with pytest.raises(ImageError, match="expands to more than|truncated"):
        import_image(None, archive)  # type: ignore[arg-type]


def test_a_config_too_large_to_be_genuine_is_not_read_into_memory(tmp_path):
    name = hashlib.sha256(CONFIG).hexdigest() + ".json"
    manifest = json.dumps([{"Config": name, "RepoTags": [], "Layers": []}]).encode()
    path = tmp_path / "big.tar"
    with tarfile.open(path, "w") as tar:
        info = tarfile.TarInfo(name)
        info.size = 17 * 2**20
        tar.addfile(info, io.BytesIO(b" " * info.size))
        info = tarfile.TarInfo("manifest.json")
        info.size = len(manifest)
        tar.addfile(info, io.BytesIO(manifest))
    with pytest.raises(ImageError, match="at most"):
        import_image(None, path)  # type: ignore[arg-type]


@pytest.mark.docker
def test_a_real_exported_image_with_one_unsafe_member_added_is_never_loaded(client, local_base, tmp_path):
    """A genuine `docker save` archive passes; the same archive plus a `../` member loads nothing."""
    import docker.errors

    from runner.images.archive import export_image

    image, _ = client.images.build(fileobj=io.BytesIO(
        f"FROM {local_base}\nRUN head -c 4096 /dev/urandom > /member-test\n".encode()), rm=True)
    try:
        client.api.tag(image.id, "runner-test/members", "one", force=True)
        good = export_image(client, "runner-test/members:one", tmp_path / "good.tar").path
        client.images.remove("runner-test/members:one")  # untagged, the image goes too: the engine must load it
        bad = tmp_path / "bad.tar"
        shutil.copyfile(good, bad)
        with tarfile.open(bad, "a") as tar:
            tar.addfile(member("../escape"), io.BytesIO(b"x"))
        with pytest.raises(ImageError, match="leads outside"):
            import_image(client, bad)
        with pytest.raises(docker.errors.ImageNotFound):
            client.images.get(image.id)  # nothing was loaded, nothing tagged
        assert import_image(client, good).image_id == image.id
    finally:
        for ref in ("runner-test/members:one", image.id):
            try:
                client.images.remove(ref, force=True)
            except docker.errors.APIError:
                pass


def test_a_huge_sidecar_is_refused_without_reading_it(tmp_path):
    archive = docker_archive(tmp_path / "a.tar", [])
    with open(tmp_path / "a.tar.sha256", "wb") as f:
        f.truncate(4 * 2**30)  # sparse: 4 GiB of zeros that a plain read_text would pull into memory
    with pytest.raises(ImageError, match="larger than"):
        import_image(None, archive)  # type: ignore[arg-type]
