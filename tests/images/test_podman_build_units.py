"""podman's build and run command lines, and how a build's outcome is read, with a stand-in podman
(a script that answers like podman 4.3). The real podman: tests/images/test_podman_build.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from runner.engine.podman_engine import PodmanEngine
from runner.errors import ImageError
from runner.images.podman_build import build_argv, podman_build
from runner.images.podman_store import PodmanStore

IMAGE_ID = "sha256:" + "ab" * 32

# Answers `build` like podman: progress lines, a RUN step's own output, and the ID in --iidfile.
FAKE = """#!/bin/sh
printf '%s\\n' "$@" > "$(dirname "$0")/argv"
[ "$1" = build ] || exit 0
while [ $# -gt 0 ]; do [ "$1" = --iidfile ] && iid=$2; shift; done
echo "STEP 1/2: FROM sha256:0000"
echo "STEP 2/2: RUN pip install"
case "$MODE" in
  ok)    echo "Successfully installed torch"; printf 'sha256:%s' "$(printf 'ab%.0s' $(seq 32))" > "$iid";;
  fail)  echo "ERROR: Could not find a version that satisfies torch"; echo "Error: building at STEP"; exit 1;;
  hang)  exec sleep 30;;
  noid)  ;;
esac
"""


@pytest.fixture
def fake(tmp_path, monkeypatch) -> PodmanEngine:
    exe = tmp_path / "podman"
    exe.write_text(FAKE)
    exe.chmod(0o755)
    return PodmanEngine(str(exe))


def _build(engine: PodmanEngine, tmp_path: Path, mode: str, monkeypatch, **kw) -> tuple[str, list[str]]:
    monkeypatch.setenv("MODE", mode)
    lines: list[str] = []
    context = tmp_path / "ctx"
    context.mkdir(exist_ok=True)
    image_id = podman_build(engine, "the probe", context, buildargs={"BASE": "sha256:00"}, network=False,
                            platform="linux/amd64", log=lines.append, **kw)
    return image_id, lines


def test_the_command_line_is_the_same_recipe_as_dockers(tmp_path):
    engine = PodmanEngine("podman")
    offline = build_argv(engine, tmp_path, tmp_path / "iid", buildargs={"BASE": "sha256:1", "X": "a b; rm -rf /"},
                         network=False, platform="linux/amd64", nocache=True)
    assert offline[:2] == ["podman", "build"] and offline[-1] == str(tmp_path)
    for pair in (["--format", "docker"], ["--network", "none"], ["--platform", "linux/amd64"],
                 ["--build-arg", "X=a b; rm -rf /"], ["--iidfile", str(tmp_path / "iid")]):
        assert any(offline[i:i + 2] == pair for i in range(len(offline))), pair  # one argv item: no shell
    assert "--pull=never" in offline and "--no-cache" in offline and "--layers" in offline
    online = build_argv(engine, tmp_path, tmp_path / "iid", buildargs={}, network=True, platform="linux/amd64",
                        nocache=False)
    assert "--network" not in online and "--no-cache" not in online  # podman's default network: apt reaches Debian


def test_a_build_streams_its_output_and_returns_the_iidfiles_id(fake, tmp_path, monkeypatch):
    image_id, lines = _build(fake, tmp_path, "ok", monkeypatch)
    assert image_id == IMAGE_ID
    assert lines == ["STEP 1/2: FROM sha256:0000", "STEP 2/2: RUN pip install", "Successfully installed torch"]


def test_a_failed_build_is_one_line_with_the_steps_own_output(fake, tmp_path, monkeypatch):
    with pytest.raises(ImageError) as e:
        _build(fake, tmp_path, "fail", monkeypatch)
    line = e.value.describe()
    assert "building the probe with podman failed: ERROR: Could not find a version" in line
    assert "STEP 1/2" not in line and "STEP 2/2" not in line  # podman's progress lines are not the reason
    assert len(line.splitlines()) == 1 and "nothing was tagged" in line


def test_a_build_past_its_time_is_stopped(fake, tmp_path, monkeypatch):
    with pytest.raises(ImageError, match="did not end within 0.5 s"):
        _build(fake, tmp_path, "hang", monkeypatch, timeout=0.5)


def test_no_image_id_is_an_error(fake, tmp_path, monkeypatch):
    with pytest.raises(ImageError, match="podman reported no image id for the probe"):
        _build(fake, tmp_path, "noid", monkeypatch)


def test_throwaway_containers_are_locked_down_and_removed(fake, tmp_path, monkeypatch):
    monkeypatch.setenv("MODE", "ok")
    result = PodmanStore(fake).run("img", ["uname", "-m"], environment={"A": "1"})
    argv = (tmp_path / "argv").read_text().splitlines()
    assert result.exit_code == 0 and argv[0] == "run" and argv[-3:] == ["img", "uname", "-m"]
    assert "--rm" in argv and argv[argv.index("--network") + 1] == "none"
    assert argv[argv.index("--pull") + 1] == "never" and argv[argv.index("--entrypoint") + 1] == ""
    assert "A=1" in argv and any(a.startswith("nofile=") for a in argv)
    PodmanStore(fake).run("img", ["true"], network=True)
    assert "--network" not in (tmp_path / "argv").read_text().splitlines()  # apt in the base: podman's network


def test_a_base_that_says_another_platform_is_refused(tmp_path):
    class Store(PodmanStore):
        def attrs(self, ref):
            return {"Id": IMAGE_ID, "Os": "linux", "Architecture": "amd64"}

    with pytest.raises(ImageError) as e:
        Store(PodmanEngine("podman")).prepare_base("local/debian:bookworm-ppc64le", "linux/ppc64le", tmp_path)
    assert "says linux/amd64 in its metadata" in e.value.describe()
    assert "podman import --arch ppc64le" in e.value.describe()
    assert os.listdir(tmp_path) == []
