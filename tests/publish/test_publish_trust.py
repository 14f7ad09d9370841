"""Issue 9: a published copy adds only publication files; a rerun executes only what the manifest covers.

Before: a package added under code/ and listed in ro-crate-metadata.json passed
`bundle verify --public-key` (with a note) and was then imported by `runner reproduce BUNDLE`.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

import pytest

from runner.audit.verify import verify_bundle
from runner.bundle.reader import bundle_digest, read_manifest
from runner.errors import BundleError
from runner.publish.archive import write_tar_gz
from runner.publish.publish import publish_bundle
from runner.publish.sign import generate_keypair
from runner.reproduce.rerun import copy_listed_code, load_rerun
from tests.audit.cli_helpers import ensure_registered
from tests.audit.synth import make_bundle
from tests.audit.test_verify import SMALL
from tests.publish.test_publish import CLEAN

INJECTED = "code/runner/workload/harness/torch_harness/__init__.py"
UNLISTED = "code/runner/workload/evil/__init__.py"
PAYLOAD = b"raise SystemExit('injected code ran')\n"


@pytest.fixture(scope="module")
def signed_copy(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pubtrust")
    bundle = make_bundle(tmp / "src", spec=SMALL)
    private, public, _ = generate_keypair(tmp / "keys")
    return publish_bundle(bundle, tmp / "out", redaction=CLEAN, sign_key=private), public


@pytest.fixture
def copy(signed_copy, tmp_path):
    published, public = signed_copy
    return Path(shutil.copytree(published.path, tmp_path / published.path.name)), public


def inject(copy: Path, rel: str, in_crate: bool) -> None:
    (copy / rel).parent.mkdir(parents=True, exist_ok=True)
    (copy / rel).write_bytes(PAYLOAD)
    if in_crate:
        crate_path = copy / "ro-crate-metadata.json"
        crate = json.loads(crate_path.read_text())
        crate["@graph"].append({"@id": rel, "@type": "File", "contentSize": len(PAYLOAD),
                                "sha256": hashlib.sha256(PAYLOAD).hexdigest()})
        crate_path.write_text(json.dumps(crate))


def test_the_published_copy_verifies_signed_and_records_the_digest(signed_copy):
    published, public = signed_copy
    result = verify_bundle(published.path, public_key=public)
    assert result.ok, result.problems
    digest = bundle_digest(read_manifest(published.path))
    assert published.digest == result.digest == digest
    crate = {e["@id"]: e for e in json.loads((published.path / "ro-crate-metadata.json").read_text())["@graph"]}
    assert crate["./"]["identifier"] == digest
    assert f"runner bundle verify . --digest {digest}" in (published.path / "REPRODUCING.md").read_text()


@pytest.mark.parametrize("rel, in_crate", [(INJECTED, True), (UNLISTED, False)], ids=["in-crate", "unlisted"])
def test_injected_code_fails_verification_and_is_never_run(copy, rel, in_crate, cli):
    path, public = copy
    inject(path, rel, in_crate)
    result = verify_bundle(path, public_key=public)
    assert not result.ok
    assert any(p.path == rel and p.kind == ("crate" if in_crate else "extra") for p in result.problems)
    assert not any(rel in n for n in result.notes)
    with pytest.raises(BundleError, match="does not verify"):
        load_rerun(path, path.parent / "code-copy")
    assert not (path.parent / "code-copy").exists()
    ensure_registered()
    rerun = cli("reproduce", path, "--results", path.parent / "results", "--engine", "local")
    assert rerun.code == 2 and "does not verify" in rerun.err and "injected code ran" not in rerun.err + rerun.out
    assert not (path.parent / "results").exists()  # refused before a bundle was started


def test_the_rerun_copies_exactly_the_listed_code_checking_each_hash(copy, tmp_path):
    path, _ = copy
    inject(path, INJECTED, True)
    inject(path, UNLISTED, False)
    manifest = read_manifest(path)
    out = copy_listed_code(path, manifest, tmp_path / "clean")
    copied = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    listed = {e["path"][len("code/"):] for e in manifest["files"] if e["path"].startswith("code/")}
    assert copied == listed and len(listed) > 10
    assert INJECTED[len("code/"):] not in copied and UNLISTED[len("code/"):] not in copied
    victim = next(e["path"] for e in manifest["files"] if e["path"].endswith(".py"))
    (path / victim).write_bytes((path / victim).read_bytes() + b"# changed\n")
    with pytest.raises(BundleError, match="sha256 differs|larger than"):
        copy_listed_code(path, manifest, tmp_path / "clean2")


def test_publish_takes_a_tar_gz_and_refuses_nothing_it_should_accept(tmp_path, cli):
    ensure_registered()
    bundle = make_bundle(tmp_path / "src", spec=SMALL)
    archive = tmp_path / f"{bundle.name}.tar.gz"
    write_tar_gz(bundle, archive, bundle.name)
    result = cli("bundle", "publish", archive, "--out", tmp_path / "out")
    assert result.code == 0, result.err
    digest = bundle_digest(read_manifest(bundle))
    assert f"digest {digest}" in result.out
    assert verify_bundle(tmp_path / "out" / bundle.name, expect_digest=digest).ok


def test_reproduce_prints_each_bundle_digest_and_reruns_exactly_the_listed_code(cli, tmp_path, monkeypatch):
    """Real local runs (PyTorch, the tiny spec): `runner reproduce SPEC` then `runner reproduce BUNDLE`."""
    pytest.importorskip("torch")
    from tests.helpers import REPO

    spec = tmp_path / "one.yaml"
    spec.write_text((REPO / "tests/specs/tiny.yaml").read_text().replace("frameworks: [pytorch, tensorflow]",
                                                                        "frameworks: [pytorch]"))
    monkeypatch.chdir(tmp_path)
    first = cli("reproduce", spec, "--engine", "local")
    assert first.code == 0, first.err
    (original,) = [p for p in (tmp_path / "results" / "tiny").iterdir() if p.is_dir()]
    digest = bundle_digest(read_manifest(original))
    assert first.out.rstrip().endswith(f"bundle digest {digest}")
    again = cli("reproduce", original)
    assert again.code in (0, 1), again.err  # 1 only if a timing moved beyond its band on a busy machine
    (new,) = [p for p in (tmp_path / "results" / "tiny").iterdir() if p.is_dir() and p != original]
    assert bundle_digest(read_manifest(new)) in "".join(again.out.split())  # however the console wrapped it
    code = {e["path"]: e["sha256"] for e in read_manifest(original)["files"] if e["path"].startswith("code/")}
    assert {e["path"]: e["sha256"] for e in read_manifest(new)["files"] if e["path"].startswith("code/")} == code
    assert verify_bundle(new).ok


@pytest.mark.docker
def test_a_real_docker_bundle_verifies_fact_by_fact_and_its_archive_by_digest(tmp_path, cli):
    """`runner reproduce` in the real PyTorch CPU image: every manifest fact agrees with the files the
    docker engine wrote; the published .tar.gz verifies against the digest `reproduce` printed."""
    import os
    import subprocess

    from tests.helpers import REPO
    from tests.reproduce.conftest import LOCAL_BASE

    spec = tmp_path / "one.yaml"
    spec.write_text((REPO / "tests/specs/tiny.yaml").read_text().replace("frameworks: [pytorch, tensorflow]",
                                                                        "frameworks: [pytorch]"))
    proc = subprocess.run([sys.executable, "-m", "runner.cli", "reproduce", str(spec), "--engine", "docker",
                           "--base", LOCAL_BASE, "--build", "never"], cwd=tmp_path, capture_output=True, text=True,
                          env=os.environ.copy(), timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (bundle,) = [p for p in (tmp_path / "results" / "tiny").iterdir() if p.is_dir()]
    digest = bundle_digest(read_manifest(bundle))
    assert proc.stdout.rstrip().splitlines()[-1] == f"bundle digest {digest}"
    result = verify_bundle(bundle)
    assert result.ok, result.problems
    assert read_manifest(bundle)["runs"][0]["engine"] == "docker"
    ensure_registered()
    published = cli("bundle", "publish", bundle, "--out", tmp_path / "pub", "--archive")
    assert published.code == 0, published.err
    archive = tmp_path / "pub" / f"{bundle.name}.tar.gz"
    assert cli("bundle", "verify", archive, "--digest", digest).code == 0
    assert cli("bundle", "verify", archive, "--digest", "sha256:" + "0" * 64).code == 1


def test_a_crate_naming_another_digest_is_a_problem(copy):
    path, public = copy
    crate_path = path / "ro-crate-metadata.json"
    crate = json.loads(crate_path.read_text())
    next(e for e in crate["@graph"] if e["@id"] == "./")["identifier"] = "sha256:" + "0" * 64
    crate_path.write_text(json.dumps(crate))
    found = verify_bundle(path, public_key=public).problems
    assert [(p.path, p.kind) for p in found] == [("ro-crate-metadata.json", "crate")]
    assert "names bundle digest sha256:0000" in found[0].detail
