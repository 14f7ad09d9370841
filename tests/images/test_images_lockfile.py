"""Lockfile parsing, formatting and consistency with the catalog (no engine)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from runner.errors import ImageError
from runner.images.catalog import load_catalog
from runner.images.lockfile import DebianPin, PipPin, format_lockfile, normalize_name, read_lockfile

H1, H2 = "a" * 64, "b" * 64


def test_every_buildable_entry_has_a_current_complete_lockfile():
    for entry in load_catalog():
        if not entry.buildable:
            continue
        lock = read_lockfile(entry.lockfile, entry.name)
        assert lock.inputs_sha256 == entry.lock_inputs_sha256(), f"{entry.name}: run `runner images lock`"
        names = lock.pip_versions()
        assert "pip" in names
        assert all(p.url and p.filename and p.filename.endswith(".whl") for p in lock.pip)
        assert "python3" in lock.debian_versions()
        if entry.package_source == "pip":
            assert names[entry.package_name].split("+")[0] == entry.framework_version
        else:
            assert lock.debian_versions()[entry.package_name].startswith(entry.framework_version)


@pytest.mark.parametrize("name", ["pytorch-cpu", "pytorch-cuda", "pytorch-ppc64le", "tensorflow-cpu",
                                  "tensorflow-cuda"])
def test_repository_lockfiles_are_valid_for_pip_itself(tmp_path, name):
    """pip's own parser accepts the lockfile in --require-hashes mode (nothing is installed)."""
    lock = load_catalog().get(name).lockfile
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--no-index", "--require-hashes",
                           "--find-links", str(tmp_path), "-r", str(lock)], capture_output=True, text=True)
    # pip gets as far as looking for the first wheel: the file parsed, hashes and all
    assert "No matching distribution found" in done.stderr or "Could not find a version" in done.stderr, done.stderr


def _write(tmp_path, text):
    path = tmp_path / "lock.txt"
    path.write_text(text)
    return path


def test_roundtrip(tmp_path):
    pins = [PipPin("torch", "2.13.0+cpu", (H1,), "file:///opt/wheels/torch-2.13.0%2Bcpu-cp311-cp311-x.whl"),
            PipPin("numpy", "2.4.6", (H2,), "https://files.example/numpy-2.4.6-cp311-cp311-x.whl")]
    text = format_lockfile("demo", "c" * 64, pins, [DebianPin("python3", "3.11.2-1+b1")], "local/debian:bookworm")
    lock = read_lockfile(_write(tmp_path, text))
    assert lock.pip_versions() == {"numpy": "2.4.6", "torch": "2.13.0+cpu"}
    assert lock.debian_versions() == {"python3": "3.11.2-1+b1"}
    assert lock.inputs_sha256 == "c" * 64
    torch = next(p for p in lock.pip if p.name == "torch")
    assert torch.filename == "torch-2.13.0+cpu-cp311-cp311-x.whl" and torch.sha256 == (H1,)


def test_missing_hash_names_line_field_and_fix(tmp_path):
    path = _write(tmp_path, f"numpy==2.4.6 \\\n    --hash=sha256:{H1}\ntorch==2.13.0\n")
    with pytest.raises(ImageError) as err:
        read_lockfile(path, "pytorch-cpu")
    e = err.value
    assert (e.line, e.field) == (3, "torch")
    assert "has no --hash" in e.message and "runner images lock pytorch-cpu" in e.fix
    assert "\n" not in e.describe()


@pytest.mark.parametrize(("text", "message"), [
    ("numpy>=2\n", "not pinned"),
    (f"numpy==2.4.6 --hash=md5:{H1[:32]}\n", "unsupported option"),
    (f"numpy==2.4.6 --hash=sha256:{H1}\nNumPy==2.4.6 --hash=sha256:{H1}\n", "pinned twice"),
    ("# debian: python3\n", "not PACKAGE=VERSION"),
])
def test_bad_lockfiles(tmp_path, text, message):
    with pytest.raises(ImageError, match=message):
        read_lockfile(_write(tmp_path, text))


def test_missing_lockfile(tmp_path):
    with pytest.raises(ImageError, match="lockfile not found") as err:
        read_lockfile(tmp_path / "none.txt", "tensorflow-cpu")
    assert err.value.fix == "make it: runner images lock tensorflow-cpu"


def test_normalize_name():
    assert normalize_name("Jinja2") == "jinja2"
    assert normalize_name("typing_extensions") == "typing-extensions"
    assert normalize_name("zope.interface") == "zope-interface"
