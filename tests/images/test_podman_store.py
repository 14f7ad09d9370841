"""Images in podman's own storage (podman without Docker): podman's inspect data in Docker's shape,
the same present / stale / missing rule, imports checked before podman sees a byte, and the
session's choice of images (failed rows with the fix), podman's build and run command lines.

podman here is a stand-in that answers `image exists`, `image inspect` and `load` like podman 4
(the real one: tests/reproduce/test_podman_alone.py and test_podman_rootless_reproduce.py)."""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from runner.errors import ImageError, UsageError
from runner.images import labels as L
from runner.images.catalog import load_catalog
from runner.images.lockfile import read_lockfile
from runner.images.podman_store import PodmanStore, import_into_podman, podman_attrs, podman_image_state
from runner.reproduce.images import resolve_images

ENTRY = load_catalog().for_run("pytorch", "cpu")
IMAGE_ID = "sha256:" + "ab" * 32


def _labels(**changed: str) -> dict[str, str]:
    labels = {L.IMAGE: ENTRY.name, L.FRAMEWORK: ENTRY.framework, L.FRAMEWORK_VERSION: ENTRY.framework_version,
              L.VARIANT: ENTRY.variant, L.LOCK_SHA256: read_lockfile(ENTRY.lockfile, ENTRY.name).sha256,
              L.CATALOG_ENTRY: ENTRY.sha256, L.RECIPE_SHA256: L.recipe_sha256(ENTRY)}
    return labels | changed


class FakePodman:
    """Answers like podman 4.3: `image inspect` prints a JSON list, its Id without the sha256: prefix."""

    name = "podman"
    docker = None

    def __init__(self, images: dict[str, dict] | None = None) -> None:
        self.images = images or {}  # ref -> podman's inspect document
        self.calls: list[tuple[str, ...]] = []

    def has_image(self, ref: str) -> bool:
        self.calls.append(("exists", ref))
        return ref in self.images

    def cli(self, *args: str, check: bool = True, **_) -> subprocess.CompletedProcess:
        self.calls.append(args)
        if args[:2] == ("image", "inspect"):
            return subprocess.CompletedProcess(args, 0, json.dumps([self.images[args[2]]]), "")
        raise AssertionError(f"unexpected podman {args}")

    def image_id(self, ref: str) -> str:
        return "sha256:" + self.images[ref]["Id"]


def _doc(labels: dict[str, str], arch: str = "amd64") -> dict:
    return {"Id": IMAGE_ID[7:], "Digest": "sha256:" + "cd" * 32, "RepoTags": [f"docker.io/{ENTRY.tag}"],
            "RepoDigests": [], "Architecture": arch, "Os": "linux", "Size": 123, "Created": "2026-11-30T00:00:00Z",
            "Config": {"Labels": labels}, "Labels": labels}


def test_podmans_inspect_is_put_in_dockers_shape():
    podman = FakePodman({ENTRY.tag: _doc(_labels())})
    attrs = podman_attrs(podman, ENTRY.tag)
    assert attrs["Id"] == IMAGE_ID and attrs["Config"]["Labels"][L.IMAGE] == ENTRY.name
    assert podman_attrs(podman, "nothing:here") is None


def test_the_same_rule_as_dockers_images():
    good = FakePodman({ENTRY.tag: _doc(_labels())})
    assert podman_image_state(good, ENTRY).status == "present"
    stale = FakePodman({ENTRY.tag: _doc(_labels(**{L.LOCK_SHA256: "0" * 64}), arch="ppc64le")})
    state = podman_image_state(stale, ENTRY)
    assert state.status == "stale" and "the lockfile changed since the build" in state.reasons
    assert any("linux/ppc64le" in r for r in state.reasons)
    from runner.images.build import ensure_image

    with pytest.raises(ImageError) as e:
        ensure_image(PodmanStore(stale), ENTRY, "never")
    line = e.value.describe()
    assert f"image {ENTRY.tag} is stale: " in line and len(line.splitlines()) == 1
    assert f"runner images build {ENTRY.name} --engine podman" in line
    assert "runner images import FILE --engine podman" in line
    with pytest.raises(ImageError, match="is missing: not on this engine"):
        ensure_image(PodmanStore(FakePodman()), ENTRY, "never")


def _plan(*frameworks: str) -> SimpleNamespace:
    return SimpleNamespace(experiment=SimpleNamespace(
        frameworks=[SimpleNamespace(value=f) for f in frameworks], variant=SimpleNamespace(value="cpu")))


def test_the_session_runs_what_podman_holds_and_fails_the_rest_as_rows():
    from rich.console import Console

    podman = FakePodman({ENTRY.tag: _doc(_labels())})
    console = Console(file=io.StringIO(), width=1000)
    store = PodmanStore(podman)
    choices = resolve_images(store, _plan("pytorch", "tensorflow"), "never", None, console)
    assert choices["pytorch"].image_id == IMAGE_ID and choices["pytorch"].error is None
    tf = choices["tensorflow"]
    assert tf.image_id is None and "tensorflow-cpu" in tf.error and "is missing" in tf.error
    assert "its runs will be failed rows" in console.file.getvalue()
    recorded = "sha256:" + "ef" * 32  # a bundle's recorded image, which podman holds: used as is
    podman.images[recorded] = _doc(_labels())
    again = resolve_images(store, _plan("pytorch"), "never", None, console, pinned={"pytorch": recorded})
    assert again["pytorch"].image_id == recorded


@pytest.mark.parametrize("policy", ["missing", "always"])
def test_a_build_with_no_base_in_podmans_storage_is_a_failed_row_naming_the_fix(policy):
    from rich.console import Console

    podman = FakePodman({ENTRY.tag: _doc(_labels(**{L.LOCK_SHA256: "0" * 64}))})  # stale: rebuilt
    choices = resolve_images(PodmanStore(podman), _plan("pytorch"), policy, "local/debian:bookworm",
                             Console(file=io.StringIO()))
    error = choices["pytorch"].error
    assert choices["pytorch"].image_id is None
    assert "base image local/debian:bookworm is not in podman's storage" in error and "podman load" in error
    assert not any(c[:1] == ("build",) for c in podman.calls)  # podman was never asked to build


def _bad_archive(path: Path) -> Path:
    """A docker-archive whose member leads out of the folder: refused before podman is asked anything."""
    with tarfile.open(path, "w") as tar:
        info = tarfile.TarInfo("../escape")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    return path


def test_a_hostile_archive_never_reaches_podman(tmp_path):
    podman = FakePodman()
    with pytest.raises(ImageError) as e:
        import_into_podman(podman, _bad_archive(tmp_path / "evil.tar"))
    assert "evil.tar" in e.value.describe() and podman.calls == []
    with pytest.raises(UsageError, match="no such file"):
        import_into_podman(podman, tmp_path / "missing.tar")
    with pytest.raises(UsageError, match="is not an image id"):
        import_into_podman(podman, tmp_path / "evil.tar", expect_id="latest")
    assert podman.calls == []


def test_no_podman_is_one_line_and_exit_2(cli, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no podman on it
    archive = _bad_archive(tmp_path / "evil.tar")
    for argv in (("images", "list", "--engine", "podman"), ("images", "import", archive, "--engine", "podman")):
        result = cli(*argv)
        assert result.code == 2 and "Traceback" not in result.err, result.err
        assert len(result.err.strip().splitlines()) == 1 and "podman is not installed" in result.err
