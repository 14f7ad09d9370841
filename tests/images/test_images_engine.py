"""The CPU images against the real engine: build, run offline, verify, stale detection, archives."""

from __future__ import annotations

import json
import shutil

import pytest
from images_helpers import copy_images_dir, rewrite

from runner.errors import CheckFailed, EngineError, ImageError
from runner.images.archive import export_image, import_image
from runner.images.build import ensure_image, stream_build
from runner.images.catalog import load_catalog
from runner.images.containers import run_command
from runner.images.inspect import image_fingerprint, image_state
from runner.images.verify import verify_image

pytestmark = pytest.mark.docker

IMPORT_CHECK = {
    "pytorch-cpu": ["python", "-c", "import torch, numpy; print(torch.__version__)"],
    "tensorflow-cpu": ["python", "-c", "import numpy, tensorflow as tf; print(tf.__version__)"],
}


@pytest.mark.parametrize(("name", "version"), [("pytorch-cpu", "2.13.0+cpu"), ("tensorflow-cpu", "2.21.0")])
def test_framework_imports_offline_with_the_locked_version(client, cpu_images, name, version):
    result = run_command(client, cpu_images[name], IMPORT_CHECK[name], environment={"TF_CPP_MIN_LOG_LEVEL": "3"})
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == version


def test_runs_as_the_engines_unprivileged_run_user_on_a_read_only_root(client, cpu_images):
    """What runner.engine.docker_engine does to a run: uid 65534, read-only rootfs, no network."""
    argv = ["python3", "-c", "import torch; print(torch.ones(2).sum().item())"]
    container = client.containers.run(cpu_images["pytorch-cpu"], argv, user="65534:65534", read_only=True,
                                      network_mode="none", detach=True)
    try:
        assert container.wait(timeout=300)["StatusCode"] == 0, container.logs().decode()
        assert container.logs(stderr=False).decode().strip() == "2.0"
    finally:
        container.remove(force=True)


def test_fresh_images_verify_and_carry_their_labels(client, cpu_images):
    catalog = load_catalog()
    for name, image_id in cpu_images.items():
        report = verify_image(client, catalog.get(name))
        assert report.ok, [c for c in report.checks if not c.ok]
        assert report.image_id == client.images.get(catalog.get(name).tag).id
        assert {c.name for c in report.checks} >= {"pip freeze", "debian packages", "platform",
                                                   "label io.runner.lock_sha256", "label io.runner.catalog_entry"}
        fp = image_fingerprint(client, image_id)
        assert fp["id"] == image_id and fp["architecture"] == "amd64" and fp["os"] == "linux"
        assert fp["labels"]["io.runner.framework"] == catalog.get(name).framework
        assert fp["labels"]["org.opencontainers.image.version"] == catalog.get(name).framework_version
        assert "org.opencontainers.image.created" not in fp["labels"]
        assert fp["labels"]["io.runner.builder"] == f"docker {client.version()['Version']}"
        assert len(fp["labels"]["org.opencontainers.image.revision"]) in (40, 7)  # a commit, or "unknown"
        assert f"runner/{name}:" in fp["repo_tags"][0]


def test_no_wheelhouse_apt_lists_or_certificates_in_the_image(client, cpu_images):
    script = ("test ! -e /build && test ! -e /etc/ssl/certs/ca-certificates.crt "
              "&& test ! -e /usr/local/share/ca-certificates && test -z \"$(ls -A /var/lib/apt/lists)\" "
              "&& test -z \"$(find / -xdev -name '*.whl' -print -quit)\"")
    for image_id in cpu_images.values():
        result = run_command(client, image_id, ["sh", "-c", script])
        assert result.exit_code == 0, result.stderr


def test_build_command_streams_and_ends_with_the_image_id(client, cpu_images, local_base, cli):
    """An unchanged rebuild through the CLI: layers from the cache, the new id tagged (the id itself
    changes when the checkout's commit, a label, moved since the fixture's build)."""
    result = cli("images", "build", "pytorch-cpu", "--base", local_base)
    assert result.code == 0, result.err
    assert "Using cache" in result.err  # the build output streamed (to stderr)
    last = result.out.strip().splitlines()[-1]
    assert last.startswith("built pytorch-cpu: sha256:") and last.endswith("(runner/pytorch-cpu:2.13.0)")
    assert client.images.get("runner/pytorch-cpu:2.13.0").id == last.split()[2]


def test_build_steps_run_without_network(client, tmp_path):
    """network_mode="none" as the framework layer is built: a connection attempt fails inside the build."""
    (tmp_path / "Dockerfile").write_text(
        "ARG BASE\nFROM ${BASE}\n"
        "RUN if getent hosts deb.debian.org; then echo NETWORK; exit 1; else echo offline; fi\n")
    lines: list[str] = []
    stream_build(client, "a network probe", tmp_path, buildargs={"BASE": "local/debian:bookworm"},
                 network_mode="none", platform="linux/amd64", nocache=True, log=lines.append)
    assert "offline" in lines


def test_ensure_image_reuses_or_refuses(client, cpu_images):
    catalog = load_catalog()
    tagged = client.images.get("runner/pytorch-cpu:2.13.0").id
    assert ensure_image(client, catalog.get("pytorch-cpu"), "missing") == tagged  # no build: the same image
    assert ensure_image(client, catalog.get("pytorch-cpu"), "never") == tagged
    with pytest.raises(ImageError, match="is missing") as err:
        ensure_image(client, catalog.get("pytorch-cuda"), "never")
    assert "runner images build pytorch-cuda" in err.value.fix


def test_verify_catches_a_changed_lockfile(client, cpu_images, tmp_path, cli):
    catalog_path = copy_images_dir(tmp_path)
    lock = tmp_path / "images" / "locks" / "pytorch-cpu.txt"
    rewrite(lock, "\nnumpy==2.4.6 \\", "\nnumpy==2.4.5 \\")
    entry = load_catalog(catalog_path).get("pytorch-cpu")
    report = verify_image(client, entry)
    failed = {c.name: c.detail for c in report.failures}
    assert set(failed) == {"label io.runner.lock_sha256", "pip freeze"}
    assert "numpy 2.4.6 (lock 2.4.5)" in failed["pip freeze"]
    assert image_state(client, entry).status == "stale"
    result = cli("images", "verify", "pytorch-cpu", "--catalog", catalog_path)
    assert result.code == 1 and "check(s) failed" in result.err
    listed = cli("images", "list", "--catalog", catalog_path)
    assert "stale pytorch-cpu: the lockfile changed since the build" in " ".join(listed.out.split())


def test_an_edited_dockerfile_makes_the_image_stale(client, cpu_images, tmp_path):
    catalog_path = copy_images_dir(tmp_path)
    dockerfile = tmp_path / "images" / "pytorch" / "Dockerfile"
    dockerfile.write_text(dockerfile.read_text() + "# edited\n")
    catalog = load_catalog(catalog_path)
    state = image_state(client, catalog.get("pytorch-cpu"))
    assert (state.status, state.reasons) == ("stale", ("the Dockerfiles changed since the build",))
    assert image_state(client, catalog.get("tensorflow-cpu")).status == "present"


def test_verify_catches_a_tag_moved_to_another_image(client, cpu_images):
    catalog = load_catalog()
    entry = catalog.get("pytorch-cpu")
    repository, _, tag = entry.tag.rpartition(":")
    original = client.images.get(entry.tag).id
    client.api.tag(cpu_images["tensorflow-cpu"], repository, tag, force=True)
    try:
        report = verify_image(client, entry)
        assert not report.ok
        failed = {c.name for c in report.failures}
        assert {"label io.runner.image", "label io.runner.framework", "pip freeze"} <= failed
        state = image_state(client, entry)
        assert state.status == "stale" and "built for tensorflow-cpu" in state.reasons[0]
        with pytest.raises(ImageError, match="is stale"):
            ensure_image(client, entry, "never")
    finally:
        client.api.tag(original, repository, tag, force=True)
    assert verify_image(client, entry).ok


def test_failed_build_leaves_nothing_tagged(client, cpu_images, local_base, tmp_path):
    catalog_path = copy_images_dir(tmp_path)
    rewrite(catalog_path, 'framework_version = "2.13.0"\nframework_package = "pip:torch"\nvariant = "cpu"',
            'framework_version = "9.9.9"\nframework_package = "pip:torch"\nvariant = "cpu"')
    entry = load_catalog(catalog_path).get("pytorch-cpu")
    assert entry.tag == "runner/pytorch-cpu:9.9.9"
    with pytest.raises(ImageError, match="building pytorch-cpu failed") as err:
        ensure_image(client, entry, "always", base=local_base)
    assert "expected 9.9.9" in err.value.message  # the import check in the Dockerfile
    assert image_state(client, entry).status == "missing"


@pytest.fixture(scope="module")
def small_image(client, local_base):
    """A small labelled image for archive round trips (exporting a framework image takes too long)."""
    import docker.errors

    image, _ = client.images.build(fileobj=__import__("io").BytesIO(
        f"FROM {local_base}\nRUN head -c 65536 /dev/urandom > /archive-test\n".encode()), rm=True)
    yield image.id
    for ref in ("runner-test/archive:one", image.id):
        try:
            client.images.remove(ref, force=True)
        except docker.errors.APIError:
            pass


def test_export_then_import_checks_the_id(client, small_image, tmp_path, cli):
    client.api.tag(small_image, "runner-test/archive", "one", force=True)
    out = tmp_path / "small.tar"
    exported = export_image(client, "runner-test/archive:one", out)
    assert exported.image_id == small_image
    assert (tmp_path / "small.tar.sha256").read_text().split() == [exported.sha256, "small.tar"]
    assert not list(tmp_path.glob(".small.tar.*"))  # no temporary file left behind
    with pytest.raises(Exception, match="never overwrites"):
        export_image(client, "runner-test/archive:one", out)

    client.images.remove("runner-test/archive:one")
    wrong = "sha256:" + "1" * 64
    result = cli("images", "import", out, "--expect-id", wrong)
    assert result.code == 1 and "expected " + wrong in result.err
    with pytest.raises(CheckFailed):
        import_image(client, out, wrong)
    assert image_state_tag(client, "runner-test/archive:one") is None  # nothing tagged from it

    result = cli("images", "import", out, "--expect-id", small_image)
    assert result.code == 0, result.err
    assert f"imported {small_image} (runner-test/archive:one)" in result.out
    assert client.images.get("runner-test/archive:one").id == small_image


def test_import_refuses_a_tampered_tarball(client, small_image, tmp_path):
    import tarfile

    client.api.tag(small_image, "runner-test/archive", "one", force=True)
    out = export_image(client, "runner-test/archive:one", tmp_path / "s.tar").path
    client.images.remove("runner-test/archive:one")  # its own layer goes too: the engine must load it
    with tarfile.open(out) as tar:  # flip one byte in the middle of the top layer (the one the engine lacks)
        top = json.load(tar.extractfile("manifest.json"))[0]["Layers"][-1]
        layer = tar.getmember(top)
    shutil.copyfile(out, tmp_path / "t.tar")
    with open(tmp_path / "t.tar", "r+b") as f:
        f.seek(layer.offset_data + layer.size // 2)
        byte = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([byte[0] ^ 0xFF]))
    shutil.copyfile(tmp_path / "s.tar.sha256", tmp_path / "t.tar.sha256")
    with pytest.raises(CheckFailed, match="sha256"):  # the sha256 file beside it catches it first
        import_image(client, tmp_path / "t.tar", small_image)
    (tmp_path / "t.tar.sha256").unlink()
    with pytest.raises(EngineError):  # without it, the engine's layer check (diff_ids) does
        import_image(client, tmp_path / "t.tar", small_image)
    assert image_state_tag(client, "runner-test/archive:one") is None
    assert import_image(client, out, small_image).image_id == small_image


def image_state_tag(client, ref):
    import docker.errors

    try:
        return client.images.get(ref).id
    except docker.errors.ImageNotFound:
        return None


@pytest.mark.slow
def test_lock_command_resolves_through_the_host(client, local_base, tmp_path, cli):
    """`runner images lock` end to end (apt in the base, the host's pip): the exact pins come out the same."""
    from runner.images.lockfile import read_lockfile

    catalog_path = copy_images_dir(tmp_path)
    committed = read_lockfile(load_catalog().get("pytorch-cpu").lockfile)
    result = cli("images", "lock", "pytorch-cpu", "--base", local_base, "--catalog", catalog_path)
    assert result.code == 0, result.err
    entry = load_catalog(catalog_path).get("pytorch-cpu")
    fresh = read_lockfile(entry.lockfile, entry.name)
    assert fresh.inputs_sha256 == entry.lock_inputs_sha256()
    torch = {p.name: p for p in fresh.pip}["torch"]
    assert (torch.version, torch.sha256) == ("2.13.0+cpu", {p.name: p for p in committed.pip}["torch"].sha256)
    assert {"pip", "numpy", "torch"} <= set(fresh.pip_versions())
    assert fresh.debian_versions()["python3"].startswith("3.11.")


def test_an_image_built_on_another_base_is_stale(client, cpu_images, local_base, tmp_path):
    """A base rebuilt or replaced under the same name: the images built on the old one are stale
    (policy missing rebuilds them, never refuses), though their labels still match the lockfile."""
    entry = load_catalog().get("pytorch-cpu")
    tagged = client.images.get(entry.tag).id
    assert ensure_image(client, entry, "never", base=local_base) == tagged  # built on it: reused
    (tmp_path / "Dockerfile").write_text(f"FROM {local_base}\nLABEL io.runner.test=another-base\n")
    other, _ = client.images.build(path=str(tmp_path), tag="runner-test/another-base:1", network_mode="none")
    try:
        with pytest.raises(ImageError, match="is stale") as err:
            ensure_image(client, entry, "never", base="runner-test/another-base:1")
        assert f"runner-test/another-base:1 is now {other.id[:19]}" in err.value.message
        assert ensure_image(client, entry, "never", base="runner-test/absent:1") == tagged  # not judged
    finally:
        client.images.remove("runner-test/another-base:1")
