"""Safe extraction: unsafe members are refused with one line, and nothing lands outside the target."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from runner.errors import BundleError, ImageError
from runner.publish.archive import bundle_folder, check_archive, safe_extract, write_tar_gz


def make_tar(path: Path, members: list[tuple[str, str, bytes | str]]) -> Path:
    """members: (kind, name, data-or-link-target); kind file | dir | sym | hard | fifo."""
    with tarfile.open(path, "w:gz") as tar:
        for kind, name, data in members:
            info = tarfile.TarInfo(name)
            if kind == "file":
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
                continue
            info.type = {"dir": tarfile.DIRTYPE, "sym": tarfile.SYMTYPE, "hard": tarfile.LNKTYPE,
                         "fifo": tarfile.FIFOTYPE}[kind]
            if kind in ("sym", "hard"):
                info.linkname = data
            tar.addfile(info)
    return path


def tree(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*")}


GOOD = [("dir", "b", b""), ("file", "b/manifest.json", b"{}"), ("file", "b/tables/x.parquet", b"PAR1")]


def test_a_plain_archive_extracts(tmp_path):
    out = safe_extract(make_tar(tmp_path / "ok.tar.gz", GOOD), tmp_path / "t")
    assert tree(out) == {"b", "b/manifest.json", "b/tables", "b/tables/x.parquet"}
    assert (out / "b/tables/x.parquet").read_bytes() == b"PAR1"


@pytest.mark.parametrize("members, message", [
    ([("file", "../escape.txt", b"x")], "leads outside the target"),
    ([("file", "a/../../escape.txt", b"x")], "leads outside the target"),
    ([("file", "/tmp/absolute.txt", b"x")], "absolute path"),
    ([("sym", "b/link", "/etc/passwd")], "is a link"),
    ([("file", "b/t.txt", b"x"), ("hard", "b/hard", "b/t.txt")], "is a link"),
    ([("fifo", "b/pipe", b"")], "device or FIFO"),
    ([("file", "b/x", b"1"), ("file", "b/./x", b"2")], "appears twice"),
    ([("file", "b\\..\\evil", b"x")], "invalid name"),
])
def test_unsafe_members_are_refused_and_nothing_is_written(tmp_path, members, message):
    work = tmp_path / "work"
    work.mkdir()
    archive = make_tar(tmp_path / "bad.tar.gz", GOOD + members)
    before = tree(tmp_path)
    with pytest.raises(BundleError, match=message) as info:
        safe_extract(archive, work / "target")
    assert "\n" not in info.value.describe() and "nothing was extracted" in info.value.describe()
    assert tree(tmp_path) == before  # no target, no staging folder, nothing beside or above it


def test_links_inside_the_archive_are_allowed_only_when_asked(tmp_path):
    inside = make_tar(tmp_path / "in.tar", GOOD + [("sym", "b/alias.json", "manifest.json")])
    out = safe_extract(inside, tmp_path / "t", allow_links=True)
    assert (out / "b/alias.json").read_bytes() == b"{}"
    outside = make_tar(tmp_path / "out.tar", GOOD + [("sym", "b/up", "../../../etc/passwd")])
    with pytest.raises(BundleError, match="links outside the archive"):
        safe_extract(outside, tmp_path / "t2", allow_links=True)
    with pytest.raises(ImageError, match="links outside"):
        check_archive(outside, error=ImageError)
    assert check_archive(inside) == 4


def test_an_existing_target_a_truncated_archive_and_a_size_limit(tmp_path):
    archive = make_tar(tmp_path / "ok.tar.gz", GOOD)
    (tmp_path / "exists").mkdir()
    with pytest.raises(BundleError, match="existing folder"):
        safe_extract(archive, tmp_path / "exists")
    big = make_tar(tmp_path / "big.tar.gz", GOOD + [("file", f"b/f{i}", bytes(range(256)) * 64) for i in range(8)])
    for n in (40, big.stat().st_size - 30):
        cut = tmp_path / f"cut{n}.tar.gz"
        cut.write_bytes(big.read_bytes()[:n])
        with pytest.raises(BundleError, match="truncated|corrupt|not a readable"):
            safe_extract(cut, tmp_path / "t")
        assert not (tmp_path / "t").exists()
    with pytest.raises(BundleError, match="expands to more than"):
        safe_extract(archive, tmp_path / "t", max_bytes=3)


def test_published_archives_are_reproducible_and_open_as_bundles(tmp_path):
    folder = tmp_path / "bundle"
    (folder / "tables").mkdir(parents=True)
    (folder / "manifest.json").write_text("{}")
    (folder / "tables" / "runs.parquet").write_bytes(b"PAR1")
    write_tar_gz(folder, tmp_path / "one.tar.gz", "bundle")
    write_tar_gz(folder, tmp_path / "two.tar.gz", "bundle")
    assert (tmp_path / "one.tar.gz").read_bytes() == (tmp_path / "two.tar.gz").read_bytes()
    with pytest.raises(BundleError, match="never overwritten"):
        write_tar_gz(folder, tmp_path / "one.tar.gz", "bundle")
    with bundle_folder(tmp_path / "one.tar.gz") as opened:
        assert (opened / "tables" / "runs.parquet").read_bytes() == b"PAR1"
        extracted = opened
    assert not extracted.exists()  # the temporary copy is gone afterwards
