"""`provenance_diff` and `metric_deltas`: what differs between two bundles, ranked, and by how much."""

from __future__ import annotations

import json

import pytest

from runner.audit.diff import RANK, metric_deltas, provenance_diff
from runner.audit.facts import match_runs
from tests.audit.cli_helpers import ensure_registered
from tests.audit.synth import IMAGE_IDS, VERSIONS, make_bundle
from tests.audit.test_verify import SMALL

NEW_TORCH = "sha256:" + "c3" * 32


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("diff")
    a = make_bundle(tmp / "a", spec=SMALL)
    b = make_bundle(tmp / "b", spec=SMALL, image_ids=IMAGE_IDS | {"pytorch": NEW_TORCH},
                    versions=VERSIONS | {"pytorch": "2.14.0"})
    return a, b


def test_the_image_and_the_framework_version_are_named_first(pair):
    a, b = pair
    items = provenance_diff(a, b)
    fields = {(i.group, i.field): i for i in items}
    image = fields[("image", "pytorch.image_id")]
    assert (image.a, image.b, image.rank) == (IMAGE_IDS["pytorch"], NEW_TORCH, 1)
    version = fields[("framework", "pytorch.framework_version")]
    assert (version.a, version.b, version.rank) == ("2.13.0", "2.14.0", 2)
    assert [i.rank for i in items] == sorted(i.rank for i in items)
    assert items[0].group == "image"
    # tensorflow did not change: nothing about it is reported
    assert not any(i.field.startswith("tensorflow.") for i in items)
    # the package list of the image says the same, far down the ranking
    assert fields[("packages", "pytorch.pytorch")].rank == RANK["packages"]


def test_a_bundle_has_no_differences_with_itself(pair):
    a, _ = pair
    assert provenance_diff(a, a) == []
    assert all(d.delta in (0, None) for d in metric_deltas(a, a))


def test_metric_deltas_pair_runs_by_id(pair):
    a, b = pair
    deltas = metric_deltas(a, b)
    assert {d.matched_by for d in deltas} == {"id"}
    assert {d.run_a for d in deltas} == {d.run_b for d in deltas}
    acc = [d for d in deltas if d.metric == "final_test_accuracy"]
    assert len(acc) == 2 and all(d.delta == 0 for d in acc)


def test_runs_with_new_ids_are_matched_by_framework_sweep_params_repeat(tmp_path):
    a = make_bundle(tmp_path / "a", spec=SMALL)
    b = make_bundle(tmp_path / "b", spec=SMALL.replace("lr: 0.05", "lr: 0.1"))
    from runner.audit.facts import load_facts

    fa, fb = load_facts(a), load_facts(b)
    matching = match_runs(fa.runs, fb.runs)
    assert len(matching.pairs) == 2 and {p.by for p in matching.pairs} == {"key"}
    assert {(p.a["framework"], p.b["framework"]) for p in matching.pairs} == {("pytorch", "pytorch"),
                                                                              ("tensorflow", "tensorflow")}
    items = provenance_diff(fa, fb)
    spec = {i.field: i for i in items if i.group == "spec"}
    assert (spec["spec.recipe.lr"].a, spec["spec.recipe.lr"].b) == (0.05, 0.1)
    per_run = spec["run.optimizer.lr"]
    assert (per_run.a, per_run.b) == (0.05, 0.1) and len(per_run.runs) == 2
    assert {d.matched_by for d in metric_deltas(fa, fb)} == {"key"}


def test_cli_diff(pair, cli, monkeypatch):
    ensure_registered()
    monkeypatch.setenv("COLUMNS", "200")
    a, b = pair
    out = cli("bundle", "diff", a, b)
    assert out.code == 0
    assert "pytorch.image_id" in out.out and "pytorch.framework_version" in out.out
    js = json.loads(cli("bundle", "diff", a, b, "--json").out)
    assert js["provenance"][0]["group"] == "image"


def test_diff_names_a_busy_host_beside_a_throughput_difference(tmp_path, cli, monkeypatch):
    import dataclasses

    from runner.audit.diff import timing_notes
    from runner.audit.facts import load_facts
    from tests.audit.synth import default_values

    def loaded(rate: float, host_load):
        def make(run):
            v = default_values(run)
            return dataclasses.replace(v, images_per_s=[r * rate for r in v.images_per_s], host_load=host_load)
        return make

    a = make_bundle(tmp_path / "a", spec=SMALL, values=loaded(0.092, (48.0, 0.0)))
    b = make_bundle(tmp_path / "b", spec=SMALL, values=loaded(0.813, (2.0, 0.0)))
    c = make_bundle(tmp_path / "c", spec=SMALL, values=loaded(0.095, (3.0, 0.0)))  # within 10 % of A: no note
    fa, fb, fc = load_facts(a), load_facts(b), load_facts(c)
    notes = timing_notes(fa, fb, metric_deltas(fa, fb))
    assert {n.metric for n in notes} == {"mean_images_per_s"} and len(notes) == 2
    assert notes[0].cause == ("likely cause: the A run's host was busy (other processes used 48% of the CPUs, "
                              "steal 0%)")
    assert timing_notes(fa, fc, metric_deltas(fa, fc)) == []
    ensure_registered()
    monkeypatch.setenv("COLUMNS", "80")
    out = cli("bundle", "diff", a, b)
    assert out.code == 0 and "timing:" in out.out and "the A run's host was busy" in " ".join(out.out.split())
    # at 80 columns no metric name or run id is split into slivers; every line fits
    from tests.width import fragments, widest_line

    ids = [r["run_id"] for r in fa.runs]
    assert fragments(out.out, ["mean_images_per_s", "tensorflow", *ids]) == [], out.out
    assert widest_line(out.out) <= 80
    assert "mean_images_per_s" in out.out
    js = json.loads(cli("bundle", "diff", a, b, "--json").out)
    assert js["timing"][0]["cause"].startswith("likely cause: the A run's host was busy")


@pytest.mark.parametrize("case", ["nested", "link", "fifo"])
def test_diff_reads_environment_documents_bounded(tmp_path, cli, monkeypatch, case):
    """`bundle diff` reads environment/*.json through the bundle's bounded JSON reader: a document
    nested 100,000 deep, a link out of the bundle or a FIFO is one line, exit 2, not a crash or a hang."""
    import os

    ensure_registered()
    monkeypatch.chdir(tmp_path)
    a = make_bundle(tmp_path / "a", spec=SMALL)
    b = make_bundle(tmp_path / "b", spec=SMALL)
    host = b / "environment" / "host.json"
    size = host.stat().st_size
    host.unlink()
    if case == "nested":  # a tampered bundle whose manifest lists the new size (diff checks sizes only)
        host.write_text("[" * 100_000 + "]" * 100_000)
        manifest = json.loads((b / "manifest.json").read_text())
        for entry in manifest["files"]:
            if entry["path"] == "environment/host.json":
                entry["size"] = host.stat().st_size
        (b / "manifest.json").write_text(json.dumps(manifest))
    elif case == "link":
        outside = tmp_path / "outside.json"
        outside.write_text("{" + " " * (size - 2) + "}")
        host.symlink_to(outside)
    else:
        os.mkfifo(host)
    out = cli("bundle", "diff", a, b)
    assert out.code == 2, out.err
    assert len(out.err.strip().splitlines()) == 1 and "host.json" in out.err and "Traceback" not in out.err


def test_two_builds_of_one_lockfile_say_so(tmp_path):
    """Docker's and podman's builds of one lockfile have different IDs: the diff shows the builder
    differs and the lockfile, recipe, catalog entry and base do not."""
    from tests.audit.synth import environment

    recipe = {"io.runner.lock_sha256": "1" * 64, "io.runner.recipe_sha256": "2" * 64,
              "io.runner.catalog_entry": "3" * 64, "io.runner.base_id": "sha256:" + "4" * 64,
              "org.opencontainers.image.revision": "5" * 40}

    def env(image_id: str, builder: str) -> dict:
        doc = environment(IMAGE_IDS | {"pytorch": image_id})
        doc["images/pytorch-cpu"]["image"]["labels"] = recipe | {"io.runner.builder": builder}
        return doc

    a = make_bundle(tmp_path / "a", spec=SMALL, env=env(IMAGE_IDS["pytorch"], "docker 20.10.24"))
    b = make_bundle(tmp_path / "b", spec=SMALL, image_ids=IMAGE_IDS | {"pytorch": NEW_TORCH},
                    env=env(NEW_TORCH, "podman 4.3.1"))
    fields = {i.field: i for i in provenance_diff(a, b) if i.group == "image"}
    assert (fields["pytorch.image.builder"].a, fields["pytorch.image.builder"].b) == ("docker 20.10.24", "podman 4.3.1")
    assert "pytorch.image_id" in fields
    assert not {"pytorch.image.lock_sha256", "pytorch.image.recipe_sha256", "pytorch.image.catalog_entry",
                "pytorch.image.base_id", "pytorch.image.revision"} & set(fields)
