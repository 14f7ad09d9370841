"""`runner bundle publish`: an RO-Crate that meets the profile, REPRODUCING.md, signatures, no leaks."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from runner.audit.verify import hash_file, verify_bundle
from runner.errors import CheckFailed, UsageError
from runner.fingerprint.redact import Redaction
from runner.publish.leaks import find_leak
from runner.publish.publish import publish_bundle
from runner.publish.rocrate import CONTEXT, DOCKER_IMAGE, PROFILE, crate_problems
from runner.publish.sign import generate_keypair
from tests.audit.cli_helpers import ensure_registered
from tests.audit.synth import IMAGE_IDS, make_bundle, make_plan
from tests.audit.test_verify import SMALL

SECRET = "tok-9f8e7d6c5b4a"
CLEAN = Redaction(hostnames=("build-node-7",), usernames=("alice",), secrets=(SECRET,))


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return make_bundle(tmp_path_factory.mktemp("pub"), spec=SMALL)


def entities(crate: dict) -> dict[str, dict]:
    return {e["@id"]: e for e in crate["@graph"]}


def all_refs(value) -> list[str]:
    if isinstance(value, dict):
        if set(value) == {"@id"}:
            return [value["@id"]]
        return [r for k, v in value.items() if k != "@id" for r in all_refs(v)]
    if isinstance(value, list):
        return [r for v in value for r in all_refs(v)]
    return []


def test_the_crate_follows_the_process_run_crate_profile(bundle, tmp_path):
    result = publish_bundle(bundle, tmp_path / "out", redaction=CLEAN, license_id="CC-BY-4.0")
    crate = json.loads((result.path / "ro-crate-metadata.json").read_text())
    graph = entities(crate)
    assert crate["@context"] == CONTEXT and crate["@context"][0] == "https://w3id.org/ro/crate/1.1/context"
    assert graph["ro-crate-metadata.json"]["about"] == {"@id": "./"}
    root = graph["./"]
    assert root["@type"] == "Dataset" and root["conformsTo"] == {"@id": PROFILE}
    assert root["datePublished"] and root["name"] and root["license"]["@id"].endswith("CC-BY-4.0")
    actions = [e for e in crate["@graph"] if e["@type"] == "CreateAction"]
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert len(actions) == len(manifest["runs"]) + 1  # one per run, one merging the tables
    for action in actions:
        for key in ("instrument", "object", "result", "actionStatus"):
            assert key in action, (action["@id"], key)
        assert action["instrument"] == {"@id": "#runner"}
        assert action["actionStatus"] == "http://schema.org/CompletedActionStatus"
        assert {"@id": action["@id"]} in root["mentions"]
    run = next(a for a in actions if a["@id"] == f"#run-{manifest['runs'][0]['id']}")
    assert {r["@id"] for r in run["result"]} == set(manifest["runs"][0]["files"])
    assert {"@id": "spec.yaml"} in run["object"] and run["startTime"] <= run["endTime"]
    image = graph[run["containerImage"]["@id"]]
    assert image["@type"] == "ContainerImage" and image["additionalType"]["@id"] == DOCKER_IMAGE
    assert f"sha256:{image['sha256']}" in IMAGE_IDS.values()
    frameworks = {graph[r["@id"]]["name"]: graph[r["@id"]]["softwareVersion"]
                  for r in graph["#runner"]["softwareRequirements"]}
    assert frameworks == {"pytorch": "2.13.0", "tensorflow": "2.21.0"}
    merge = graph["#merge-tables"]
    assert {r["@id"] for r in merge["result"]} == {f"tables/{t}.parquet" for t in manifest["tables"]}
    assert all(graph[t]["encodingFormat"] == "application/vnd.apache.parquet" for t in
               (r["@id"] for r in merge["result"]))
    missing = sorted(set(all_refs(crate["@graph"])) - set(graph))
    assert missing == []
    assert {e["path"] for e in manifest["files"]} <= {r["@id"] for r in root["hasPart"]}
    assert crate_problems(crate) == []


def test_the_published_copy_verifies_and_says_how_to_reproduce(bundle, tmp_path):
    result = publish_bundle(bundle, tmp_path / "out", redaction=CLEAN)
    check = verify_bundle(result.path)
    assert check.ok, check.problems
    assert any(n.startswith("REPRODUCING.md: publication file") for n in check.notes)
    text = (result.path / "REPRODUCING.md").read_text()
    assert "runner bundle verify ." in text and "runner reproduce ." in text
    for image_id in IMAGE_IDS.values():  # not included: how to rebuild each, with the id to expect
        assert f"expected id {image_id}" in text
    assert "runner images build pytorch-cpu" in text
    (result.path / "REPRODUCING.md").write_text(text + "tampered\n")
    assert [p.path for p in verify_bundle(result.path).problems] == ["REPRODUCING.md"]


def test_publish_signs_the_copy_and_leaves_the_original_alone(bundle, tmp_path):
    private, public, kid = generate_keypair(tmp_path / "keys")
    result = publish_bundle(bundle, tmp_path / "out", redaction=CLEAN, sign_key=private)
    assert result.signed_by == kid
    assert verify_bundle(result.path, public_key=public).ok
    assert not (bundle / "manifest.json.sig").exists()
    again = publish_bundle(result.path, tmp_path / "again", redaction=CLEAN)  # a signed copy publishes as is
    assert (again.path / "manifest.json.sig").read_bytes() == (result.path / "manifest.json.sig").read_bytes()
    with pytest.raises(UsageError, match="already signed"):
        publish_bundle(result.path, tmp_path / "third", redaction=CLEAN, sign_key=private)


def test_never_overwrites(bundle, tmp_path):
    publish_bundle(bundle, tmp_path / "out", redaction=CLEAN)
    with pytest.raises(UsageError, match="never overwritten"):
        publish_bundle(bundle, tmp_path / "out", redaction=CLEAN)
    assert [p.name for p in (tmp_path / "out").iterdir()] == [bundle.name]


def _leaky_bundle(root: Path, log_text: str, redaction: Redaction | None = None) -> Path:
    """A bundle whose first run's log says `log_text`: written with a redaction that knows none of this
    machine's names, then the text planted again as it is (the writer scrubs URL credentials itself)."""
    from runner.bundle.writer import BundleWriter
    from tests.audit.synth import DATASET_SHA, default_values, environment, write_events

    plan, spec = make_plan(root / "spec", SMALL)
    writer = BundleWriter.create(root / "results", plan, spec, redaction or Redaction(), fsync=False)
    for name, data in environment().items():
        writer.add_environment(name, data)
    for i, run in enumerate(plan.runs):
        write_events(root / run.id, run, default_values(run))
        writer.add_run(run, status="ok", out_dir=root / run.id, log_text=log_text if i == 0 else "ok\n",
                       image_id=IMAGE_IDS[run.framework], environment={"engine": "docker",
                                                                       "dataset_sha256": DATASET_SHA})
    path = writer.finalize()
    log = path / "logs" / f"{plan.runs[0].id}.log"
    log.write_text(log_text)
    manifest = json.loads((path / "manifest.json").read_text())
    size, sha = hash_file(log)
    for entry in manifest["files"]:
        if entry["path"] == f"logs/{log.name}":
            entry.update(size=size, sha256=sha)
    (path / "manifest.json").write_text(json.dumps(manifest))
    return path


@pytest.mark.parametrize("text, what", [
    (f"export HF_TOKEN={SECRET}\n", "secret-looking environment variable"),
    ("compiled on build-node-7 in 3 s\n", "host name"),
    ("cache in /home/alice/.cache\n", "user name"),
    ("pip index https://bob:hunter2@pypi.example.org/simple\n", "credentials in a URL"),
])
def test_a_leak_is_refused_naming_the_file(tmp_path, text, what):
    leaky = _leaky_bundle(tmp_path / "b", text)
    with pytest.raises(CheckFailed) as info:
        publish_bundle(leaky, tmp_path / "out", redaction=CLEAN)
    line = info.value.describe()
    assert what in line and "/logs/" in line and ".log" in line and "\n" not in line
    assert SECRET not in line and "hunter2" not in line
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


def test_words_that_merely_contain_a_name_are_not_leaks(tmp_path):
    ok = _leaky_bundle(tmp_path / "b", "build-node-70 and malice and /home/alicea\n")
    publish_bundle(ok, tmp_path / "out", redaction=CLEAN)


def test_an_unredacted_bundle_is_refused(tmp_path):
    plain = make_bundle(tmp_path / "b", spec=SMALL, redaction=Redaction(enabled=False))
    with pytest.raises(CheckFailed, match="--no-redact") as info:
        publish_bundle(plain, tmp_path / "out", redaction=CLEAN)
    assert "manifest.json" in info.value.describe()


def test_code_is_checked_for_secrets_but_not_for_short_host_names(tmp_path):
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "a.py").write_text("# runs in a vm or on build-node-7\n")
    assert find_leak(tmp_path, ["code/a.py"], CLEAN) is None
    (tmp_path / "code" / "b.py").write_text(f"TOKEN = '{SECRET}'\n")
    assert find_leak(tmp_path, ["code/a.py", "code/b.py"], CLEAN).path == "code/b.py"
    (tmp_path / "notes.txt").write_text("ran on build-node-7\n")
    assert find_leak(tmp_path, ["notes.txt"], CLEAN).what == "this machine's host name"


def test_secret_keys_in_json_are_leaks(tmp_path):
    (tmp_path / "env.json").write_text(json.dumps({"outer": {"api_token": "abc123"}}))
    (tmp_path / "fine.json").write_text(json.dumps({"api_token": "<redacted>", "keyboard": "us"}))
    leak = find_leak(tmp_path, ["fine.json", "env.json"], Redaction())
    assert leak is not None and leak.path == "env.json" and "'api_token'" in leak.what


def test_a_bundle_that_fails_verification_is_not_published(bundle, tmp_path):
    damaged = Path(shutil.copytree(bundle, tmp_path / "damaged"))
    (damaged / "spec.yaml").write_text("changed\n")
    with pytest.raises(CheckFailed, match="fails verification"):
        publish_bundle(damaged, tmp_path / "out", redaction=CLEAN)


def test_cli_publish_with_archive(bundle, tmp_path, cli, monkeypatch):
    ensure_registered()
    import runner.publish.leaks as leaks

    monkeypatch.setattr(leaks, "machine_redaction", lambda: CLEAN)
    monkeypatch.setattr(leaks.Redaction, "for_this_machine", classmethod(lambda cls, **kw: CLEAN))
    out = cli("bundle", "publish", bundle, "--out", tmp_path / "out", "--archive")
    assert out.code == 0, out.err
    archive = tmp_path / "out" / f"{bundle.name}.tar.gz"
    assert archive.is_file()
    check = cli("bundle", "verify", archive)
    assert check.code == 0 and "intact" in check.out
