"""`runner bundle verify`: every changed, missing or extra byte is caught and named by file."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from runner.audit.verify import hash_file, verify_bundle
from runner.errors import BundleError

SMALL = """\
name: small
dataset: {name: cifar10, synthetic: {train_size: 256, test_size: 64, seed: 0}}
model: {name: simple_cnn}
frameworks: [pytorch, tensorflow]
recipe: {epochs: 2, batch_size: 32, optimizer: sgd, lr: 0.05, deterministic: true}
measurement: {warmup_steps: 1, latency_batch_sizes: [1], latency_iterations: 10}
"""


def manifest(path: Path) -> dict:
    return json.loads((path / "manifest.json").read_text())


def edit_manifest(path: Path, change) -> None:
    m = manifest(path)
    change(m)
    (path / "manifest.json").write_text(json.dumps(m))


def problems_by_file(path: Path, **kw) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for p in verify_bundle(path, **kw).problems:
        out.setdefault(p.path, []).append(p.kind)
    return out


def flip_byte(path: Path, offset: int = -20) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def test_an_intact_bundle_verifies(bundle):
    result = verify_bundle(bundle)
    assert result.ok, result.problems
    listed = manifest(bundle)["files"]
    assert result.files == len(listed)
    assert result.bytes == sum(f["size"] for f in listed)


def test_a_flipped_byte_is_named_by_file(bundle):
    log = next(bundle.glob("logs/*.log"))
    flip_byte(log, 0)
    flip_byte(bundle / "tables/epochs.parquet", 10)
    found = problems_by_file(bundle)
    assert found == {f"logs/{log.name}": ["changed"], "tables/epochs.parquet": ["changed"]}


def test_deleted_added_and_linked_files_are_each_reported(bundle):
    (bundle / "spec.yaml").unlink()
    (bundle / "runs" / "notes.txt").write_text("added later\n")
    os.symlink("/etc/hostname", bundle / "environment" / "sneaky.json")
    found = problems_by_file(bundle)
    assert found["spec.yaml"] == ["missing"]
    assert found["runs/notes.txt"] == ["extra"]
    assert found["environment/sneaky.json"] == ["link"]


def test_a_listed_file_replaced_by_a_link_inside_is_refused(bundle):
    target = bundle / "spec.yaml"
    target.rename(bundle / "spec-real.yaml")
    os.symlink("spec-real.yaml", target)
    found = problems_by_file(bundle)
    assert found["spec.yaml"] == ["link"] and found["spec-real.yaml"] == ["extra"]


def test_a_truncated_table_is_caught_even_when_the_manifest_agrees_on_its_size(bundle):
    steps = bundle / "tables/steps.parquet"
    data = steps.read_bytes()
    steps.write_bytes(data[: len(data) // 2])
    assert problems_by_file(bundle)["tables/steps.parquet"] == ["changed"]
    size, sha = hash_file(steps)
    edit_manifest(bundle, lambda m: [f.update(size=size, sha256=sha) for f in m["files"]
                                     if f["path"] == "tables/steps.parquet"])
    found = verify_bundle(bundle).problems
    assert [(p.path, p.kind) for p in found] == [("tables/steps.parquet", "schema")]
    assert "cannot be read as Parquet" in found[0].detail


def test_a_table_with_an_undeclared_schema_is_refused(bundle):
    rel = "tables/latency.parquet"
    table = pq.read_table(bundle / rel)
    table = table.append_column("extra", pa.array([1] * table.num_rows)).cast(
        pa.schema([*table.schema, pa.field("extra", pa.int64())], metadata=table.schema.metadata))
    pq.write_table(table.drop(["p99_ms"]), bundle / rel)
    size, sha = hash_file(bundle / rel)
    edit_manifest(bundle, lambda m: [f.update(size=size, sha256=sha) for f in m["files"] if f["path"] == rel])
    details = [p.detail for p in verify_bundle(bundle).problems if p.path == rel]
    assert any("lacks the declared columns ['p99_ms']" in d for d in details)
    assert any("undeclared columns ['extra']" in d for d in details)


def test_manifest_fields_are_checked(bundle):
    edit_manifest(bundle, lambda m: (m.pop("finalized"), m["runs"][0].pop("seed"), m.update(redacted="yes")))
    details = [p.detail for p in verify_bundle(bundle).problems if p.path == "manifest.json"]
    assert "lacks the required field `finalized`" in details
    assert "field `redacted` is str, expected bool" in details
    assert "runs[0] lacks a valid `seed`" in details


def test_a_manifest_claiming_different_rows_is_caught(bundle):
    edit_manifest(bundle, lambda m: m["tables"]["epochs"].update(rows=999))
    found = verify_bundle(bundle).problems
    assert [(p.path, p.kind) for p in found] == [("tables/epochs.parquet", "schema"), ("manifest.json", "fact")]


def test_unreadable_bundles_raise_a_one_line_bundle_error(bundle, tmp_path):
    edit_manifest(bundle, lambda m: m.update(bundle_schema_version=99))
    with pytest.raises(BundleError, match="newer than this runner reads"):
        verify_bundle(bundle)
    with pytest.raises(BundleError, match="no manifest.json"):
        verify_bundle(tmp_path)


def test_path_traversal_in_the_manifest_reads_nothing_outside(bundle, tmp_path):
    secret = tmp_path / "outside.txt"
    secret.write_text("not part of any bundle\n")
    edit_manifest(bundle, lambda m: m["files"].append({"path": "../outside.txt", "size": 23, "sha256": "0" * 64}))
    with pytest.raises(BundleError, match="unsafe path") as info:
        verify_bundle(bundle)
    assert "\n" not in info.value.describe()


def test_signatures(bundle, tmp_path, cli_reg):
    keys = tmp_path / "keys"
    assert cli_reg("keygen", "--out", keys).code == 0
    private, public = keys / "runner-signing-key.pem", keys / "runner-signing-key.pub.pem"
    assert private.stat().st_mode & 0o777 == 0o600
    assert cli_reg("bundle", "sign", bundle, "--key", private).code == 0
    assert verify_bundle(bundle, public_key=public).ok
    assert "integrity only" in verify_bundle(bundle).signature
    again = cli_reg("bundle", "sign", bundle, "--key", private)
    assert again.code == 2 and "never overwritten" in again.err

    other = tmp_path / "other"
    cli_reg("keygen", "--out", other)
    wrong = verify_bundle(bundle, public_key=other / "runner-signing-key.pub.pem").problems
    assert [(p.path, p.kind) for p in wrong] == [("manifest.json.sig", "signature")]

    # edit the manifest (here: hide a file from it) without signing again
    edit_manifest(bundle, lambda m: m["files"].remove(next(e for e in m["files"] if e["path"].startswith("code/"))))
    found = problems_by_file(bundle, public_key=public)
    assert found["manifest.json.sig"] == ["signature"]
    assert "extra" in next(iter(v for k, v in found.items() if k.startswith("code/")))


def test_a_key_without_a_signature_fails(bundle, tmp_path, cli_reg):
    cli_reg("keygen", "--out", tmp_path / "k")
    found = verify_bundle(bundle, public_key=tmp_path / "k" / "runner-signing-key.pub.pem").problems
    assert [(p.path, p.kind) for p in found] == [("manifest.json.sig", "signature")]


def test_cli_exit_codes_and_lines(bundle, tmp_path, cli_reg):
    ok = cli_reg("bundle", "verify", bundle)
    assert ok.code == 0 and "intact" in ok.out
    flip_byte(bundle / "spec.yaml", 0)
    (bundle / "extra.bin").write_bytes(b"x")
    bad = cli_reg("bundle", "verify", bundle)
    assert bad.code == 1
    assert "spec.yaml" in bad.out and "extra.bin" in bad.out
    assert bad.err.count("\n") == 1 and "2 problem(s) in 2 file(s)" in bad.err
    js = cli_reg("bundle", "verify", bundle, "--json")
    assert {p["path"] for p in json.loads(js.out)["problems"]} == {"spec.yaml", "extra.bin"}
    edit_manifest(bundle, lambda m: m.update(bundle_schema_version=99))
    unreadable = cli_reg("bundle", "verify", bundle)
    assert unreadable.code == 2 and "newer than this runner reads" in unreadable.err
