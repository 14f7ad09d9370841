"""Issue 9: every fact of a bundle is covered by a hash, nothing outside a bundle is ever read.

Each test here failed on the code before it: a manifest fact edited (status, image, experiment,
times, fingerprint) verified as intact; a crate entry outside the bundle was read and accepted;
a linked manifest verified; deep JSON nesting was an internal error; a broken bundle was signed.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from runner.audit.verify import verify_bundle
from runner.bundle.reader import FACTS_FILE, bundle_digest
from runner.errors import BundleError
from runner.fileio import canonical_sha256
from tests.audit.test_verify import edit_manifest, manifest


def facts(found) -> list[str]:
    return [p.detail for p in found if p.kind == "fact"]


def first_run(m: dict) -> dict:
    return m["runs"][0]


# (what the test edits, the edit, the field the problem must name)
EDITS = [
    ("status", lambda m: first_run(m).update(status="failed"), "runs[{rid}].status"),
    ("reason", lambda m: first_run(m).update(reason="timeout"), "runs[{rid}].reason"),
    ("image_id", lambda m: first_run(m).update(image_id="sha256:" + "0" * 64), "runs[{rid}].image_id"),
    ("engine", lambda m: first_run(m).update(engine="local"), "runs[{rid}].engine"),
    ("run files", lambda m: first_run(m)["files"].pop(), "runs[{rid}].files"),
    ("experiment", lambda m: m.update(experiment="other"), "experiment"),
    ("created", lambda m: m.update(created="2020-01-01T00:00:00Z"), "created"),
    ("finalized", lambda m: m.update(finalized="2020-01-01T00:00:00Z"), "finalized"),
    ("runner_version", lambda m: m.update(runner_version="0.0.1"), "runner_version"),
    ("redacted", lambda m: m.update(redacted=False), "redacted"),
    ("spec", lambda m: m["spec"]["recipe"].update(lr=0.5), "spec.recipe.lr"),
    ("fingerprint host", lambda m: m["fingerprint"]["host"].update(host_cpu_model="Fake CPU"),
     "fingerprint.host.host_cpu_model"),
    ("fingerprint gpu", lambda m: m["fingerprint"]["gpu"].update(gpu_count=8), "fingerprint.gpu.gpu_count"),
    ("fingerprint code", lambda m: m["fingerprint"]["code"].update(tree_sha256="e" * 64),
     "fingerprint.code.tree_sha256"),
    ("fingerprint dataset", lambda m: m["fingerprint"].update(dataset=None), "fingerprint.dataset"),
    ("fingerprint environment", lambda m: m["fingerprint"]["environment"].pop(), "fingerprint.environment"),
]


@pytest.mark.parametrize("what, edit, field", EDITS, ids=[e[0] for e in EDITS])
def test_every_manifest_fact_is_checked_against_a_hashed_file(bundle, what, edit, field):
    rid = first_run(manifest(bundle))["id"]
    edit_manifest(bundle, edit)
    result = verify_bundle(bundle)
    assert not result.ok
    named = field.format(rid=rid)
    assert any(d.startswith(f"`{named}`") for d in facts(result.problems)), (what, result.problems)
    assert all(p.path == "manifest.json" for p in result.problems)  # no file changed: only the manifest lies


def test_editing_the_facts_file_too_is_caught_by_its_hash(bundle):
    edit_manifest(bundle, lambda m: first_run(m).update(status="failed"))
    doc = json.loads((bundle / FACTS_FILE).read_text())
    first_run(doc).update(status="failed")
    (bundle / FACTS_FILE).write_text(json.dumps(doc))
    found = {(p.path, p.kind) for p in verify_bundle(bundle).problems}
    assert (FACTS_FILE, "changed") in found
    assert ("manifest.json", "fact") in found  # and the runs table still says ok


def test_the_facts_file_holds_every_manifest_field_but_the_file_list(pristine):
    m = manifest(pristine)
    doc = json.loads((pristine / FACTS_FILE).read_text())
    assert doc == {k: v for k, v in m.items() if k != "files"}
    assert FACTS_FILE in {e["path"] for e in m["files"]}


def test_a_schema_2_bundle_without_its_facts_file_fails(bundle):
    (bundle / FACTS_FILE).unlink()
    edit_manifest(bundle, lambda m: m.update(files=[e for e in m["files"] if e["path"] != FACTS_FILE]))
    assert any(f"lists no {FACTS_FILE}" in p.detail for p in verify_bundle(bundle).problems)


def test_a_schema_1_bundle_still_verifies_with_a_note(bundle):
    """An older bundle (no bundle.json) is read; the facts no file covers are named in a note."""
    (bundle / FACTS_FILE).unlink()
    entries = []
    for e in manifest(bundle)["files"]:
        if e["path"] == FACTS_FILE:
            continue
        if e["path"].endswith(".parquet"):  # tables name their schema: rewrite them as schema 1 did
            path = bundle / e["path"]
            table = pq.read_table(path)
            meta = dict(table.schema.metadata) | {b"bundle_schema_version": b"1"}
            pq.write_table(table.replace_schema_metadata(meta), path)
            e = dict(e, size=path.stat().st_size, sha256=hashlib.sha256(path.read_bytes()).hexdigest())
        entries.append(e)
    edit_manifest(bundle, lambda m: m.update(bundle_schema_version=1, files=entries))
    result = verify_bundle(bundle)
    assert [p for p in result.problems if p.kind != "schema"] == []  # tables may lack newer columns: schema
    assert any("predates bundle.json" in n and "created" in n for n in result.notes)
    edit_manifest(bundle, lambda m: first_run(m).update(status="failed"))  # derivable facts still checked
    assert any(d.startswith("`runs[") for d in facts(verify_bundle(bundle).problems))


def test_the_digest_is_the_sha256_of_the_canonical_manifest(bundle, cli_reg):
    m = manifest(bundle)
    digest = "sha256:" + canonical_sha256(m)
    assert verify_bundle(bundle).digest == digest == bundle_digest(m)
    ok = cli_reg("bundle", "verify", bundle, "--digest", digest)
    assert ok.code == 0 and f"digest {digest}" in ok.out
    other = "sha256:" + "0" * 64
    bad = cli_reg("bundle", "verify", bundle, "--digest", other)
    assert bad.code == 1 and "digest" in bad.err and bad.err.count("\n") == 1
    usage = cli_reg("bundle", "verify", bundle, "--digest", "abc")
    assert usage.code == 2 and "--digest" in usage.err
    (bundle / "manifest.json").write_text(json.dumps(m, indent=3))  # same facts, other bytes: same digest
    assert verify_bundle(bundle, expect_digest=digest).ok


def test_a_linked_manifest_is_refused(bundle, pristine, tmp_path, cli_reg):
    (bundle / "manifest.json").unlink()
    (bundle / "manifest.json").symlink_to(pristine / "manifest.json")
    with pytest.raises(BundleError, match="symbolic link"):
        verify_bundle(bundle)
    result = cli_reg("bundle", "verify", bundle)
    assert result.code == 2 and result.err.count("\n") == 1


def test_a_manifest_nested_100000_deep_is_one_line_exit_2(bundle, cli_reg):
    (bundle / "manifest.json").write_text("[" * 100_000 + "]" * 100_000)
    result = cli_reg("bundle", "verify", bundle)
    assert result.code == 2 and "nests JSON too deeply" in result.err and result.err.count("\n") == 1
    (bundle / "manifest.json").write_text('{"bundle_schema_version": NaN}')
    assert cli_reg("bundle", "verify", bundle).code == 2


def _crate_entry(bundle: Path, rel: str, data: bytes) -> None:
    crate = {"@context": "https://w3id.org/ro/crate/1.1/context", "@graph": [
        {"@id": rel, "@type": "File", "contentSize": len(data), "sha256": hashlib.sha256(data).hexdigest()}]}
    (bundle / "ro-crate-metadata.json").write_text(json.dumps(crate))


@pytest.mark.parametrize("name", ["../../outside.txt", "ABSOLUTE", "code/runner/workload/injected.py",
                                  "runs/extra.json", "notes.txt"])
def test_crate_entries_outside_the_publication_files_are_problems_never_reads(bundle, tmp_path, name):
    data = b"a file the crate vouches for\n"
    outside = tmp_path / "outside.txt"
    outside.write_bytes(data)
    rel = str(outside) if name == "ABSOLUTE" else name
    if not rel.startswith(("/", "..")):
        (bundle / rel).parent.mkdir(parents=True, exist_ok=True)
        (bundle / rel).write_bytes(data)
    _crate_entry(bundle, rel, data)
    result = verify_bundle(bundle)
    assert not result.ok
    assert any(p.path == rel and p.kind == "crate" for p in result.problems)
    assert not any("publication file" in n for n in result.notes)


def test_a_crate_entry_through_a_link_is_not_followed(bundle, tmp_path):
    data = b"outside\n"
    (tmp_path / "target.tar").write_bytes(data)
    (bundle / "images").mkdir()
    (bundle / "images" / "x.tar").symlink_to(tmp_path / "target.tar")
    _crate_entry(bundle, "images/x.tar", data)
    found = {(p.path, p.kind) for p in verify_bundle(bundle).problems}
    assert ("images/x.tar", "link") in found


def test_special_files_are_never_opened(bundle):
    os.mkfifo(bundle / "pipe")
    rel = next(e["path"] for e in manifest(bundle)["files"] if e["path"].startswith("logs/"))
    (bundle / rel).unlink()
    os.mkfifo(bundle / rel)  # a listed file replaced by a FIFO: reading it would hang
    found = {(p.path, p.kind) for p in verify_bundle(bundle).problems}
    assert (rel, "special") in found and ("pipe", "extra") in found


def test_sign_refuses_a_bundle_that_fails_verification(bundle, tmp_path, cli_reg):
    cli_reg("keygen", "--out", tmp_path / "k")
    edit_manifest(bundle, lambda m: first_run(m).update(status="failed"))
    result = cli_reg("bundle", "sign", bundle, "--key", tmp_path / "k" / "runner-signing-key.pem")
    assert result.code == 1 and "fails verification" in result.err and result.err.count("\n") == 1
    assert not (bundle / "manifest.json.sig").exists()


def test_a_hostile_signature_file_is_a_problem_not_a_crash(bundle, cli_reg):
    (bundle / "manifest.json.sig").write_text("[" * 100_000)
    result = cli_reg("bundle", "verify", bundle)
    assert result.code == 1 and "manifest.json.sig" in result.err and result.err.count("\n") == 1
    (bundle / "manifest.json.sig").unlink()
    os.mkfifo(bundle / "manifest.json.sig")  # reading it would hang
    found = {(p.path, p.kind) for p in verify_bundle(bundle).problems}
    assert ("manifest.json.sig", "signature") in found and ("manifest.json.sig", "special") in found


@pytest.mark.parametrize("body, message", [
    ('{"x": [' + ",".join(["1000"] * 990_000) + "]}", "no valid bundle_schema_version"),  # parsed, bounded
    ('{"x": [' + ",".join(["{}"] * 2_500_000) + "]}", "JSON items"),  # refused before parsing (was 270 MB)
    ('{"x": "' + "a" * (16 * 2**20) + '"}', "larger than"),
], ids=["990k-numbers", "2.5M-objects", "16MiB-string"])
def test_a_huge_manifest_costs_bounded_memory(tmp_path, body, message):
    from tests.publish.test_archive_caps import run_cli

    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "manifest.json").write_text(body)
    result = run_cli(["bundle", "verify", str(tmp_path / "b")], tmp_path)
    assert result["rc"] == 2 and message in result["err"] and result["err"].count("\n") == 1, result
    assert result["mb"] < 200 and result["s"] < 2.0, result
