"""Per-file sha256 manifest and root hash: deterministic, traversal-safe, links refused."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess

import pytest

from runner.data.manifest import (
    MANIFEST_NAME,
    dataset_manifest,
    format_manifest_file,
    read_manifest_file,
    root_hash,
    verify_folder_manifest,
)
from runner.errors import DatasetError


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "ds"
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "a.bin").write_bytes(b"alpha")
    (root / "sub" / "b.bin").write_bytes(b"beta" * 1000)
    (root / "sub" / "deeper" / "c").write_bytes(b"")
    return root


def test_manifest_lists_every_file_sorted_with_size_and_sha256(tree):
    entries, root = dataset_manifest(tree)
    assert list(entries) == ["a.bin", "sub/b.bin", "sub/deeper/c"]
    assert entries["a.bin"] == (5, hashlib.sha256(b"alpha").hexdigest())
    assert entries["sub/deeper/c"] == (0, hashlib.sha256(b"").hexdigest())
    lines = "".join(f"{sha} {size} {rel}\n" for rel, (size, sha) in sorted(entries.items()))
    assert root == hashlib.sha256(lines.encode()).hexdigest() == root_hash(entries)


def test_root_hash_is_stable_and_sensitive(tree, tmp_path):
    _, root = dataset_manifest(tree)
    copy = tmp_path / "copy"
    shutil.copytree(tree, copy)
    os.utime(copy / "a.bin", (0, 0))  # times do not matter
    assert dataset_manifest(copy)[1] == root
    (copy / "a.bin").write_bytes(b"alphA")
    assert dataset_manifest(copy)[1] != root
    (copy / "a.bin").write_bytes(b"alpha")
    (copy / "a.bin").rename(copy / "a2.bin")
    assert dataset_manifest(copy)[1] != root
    (copy / "a2.bin").rename(copy / "a.bin")
    (copy / "extra").write_bytes(b"")
    assert dataset_manifest(copy)[1] != root


def test_a_single_file_is_its_own_manifest(tree):
    entries, _ = dataset_manifest(tree / "a.bin")
    assert entries == {"a.bin": (5, hashlib.sha256(b"alpha").hexdigest())}


def test_exclude_leaves_the_listing_file_out(tree):
    _, before = dataset_manifest(tree)
    (tree / MANIFEST_NAME).write_text("x")
    assert dataset_manifest(tree, exclude=frozenset({MANIFEST_NAME}))[1] == before


def test_symlink_escaping_the_folder_is_refused(tree, tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("outside")
    (tree / "sub" / "link").symlink_to(secret)
    with pytest.raises(DatasetError) as exc:
        dataset_manifest(tree)
    line = exc.value.describe()
    assert "escaping the folder" in line and "sub/link" in line and "\n" not in line


def test_symlinks_inside_and_to_folders_are_refused_too(tree, tmp_path):
    (tree / "inner").symlink_to(tree / "a.bin")
    with pytest.raises(DatasetError, match="pointing inside"):
        dataset_manifest(tree)
    (tree / "inner").unlink()
    (tree / "dirlink").symlink_to(tmp_path)
    with pytest.raises(DatasetError, match="escaping"):
        dataset_manifest(tree)


def test_special_files_are_refused(tree):
    os.mkfifo(tree / "fifo")
    with pytest.raises(DatasetError, match="not a regular file"):
        dataset_manifest(tree)


def test_a_root_reached_through_a_symlink_is_fine(tree, tmp_path):
    (tmp_path / "alias").symlink_to(tree)
    assert dataset_manifest(tmp_path / "alias")[1] == dataset_manifest(tree)[1]


@pytest.mark.parametrize("line", [
    "0" * 64 + "  ../escape", "0" * 64 + "  /etc/passwd", "0" * 64 + "  a/../../b", "0" * 64 + "  a//b",
    "0" * 64 + "  ./a", "0" * 64 + "  a\\b", "zz  a", "0" * 63 + "  a",
])
def test_manifest_files_with_unsafe_or_bad_lines_are_refused(tmp_path, line):
    (tmp_path / MANIFEST_NAME).write_text(line + "\n")
    with pytest.raises(DatasetError) as exc:
        read_manifest_file(tmp_path / MANIFEST_NAME)
    assert MANIFEST_NAME in exc.value.describe()


def test_verify_folder_manifest_names_the_file_that_differs(tree):
    entries, root = dataset_manifest(tree)
    (tree / MANIFEST_NAME).write_bytes(format_manifest_file(entries))
    assert verify_folder_manifest(tree)[1] == root
    (tree / "sub" / "b.bin").write_bytes(b"tampered")
    with pytest.raises(DatasetError, match="does not match its sha256") as exc:
        verify_folder_manifest(tree)
    assert "sub/b.bin" in exc.value.describe()
    (tree / "sub" / "b.bin").write_bytes(b"beta" * 1000)
    (tree / "new").write_bytes(b"")
    with pytest.raises(DatasetError, match="not listed"):
        verify_folder_manifest(tree)
    (tree / "new").unlink()
    (tree / "a.bin").unlink()
    with pytest.raises(DatasetError, match="missing"):
        verify_folder_manifest(tree)


@pytest.mark.skipif(shutil.which("sha256sum") is None, reason="no sha256sum")
def test_the_listing_is_sha256sum_compatible(tree):
    entries, _ = dataset_manifest(tree)
    (tree / MANIFEST_NAME).write_bytes(format_manifest_file(entries))
    subprocess.run(["sha256sum", "--check", "--strict", "--quiet", MANIFEST_NAME], cwd=tree, check=True)
