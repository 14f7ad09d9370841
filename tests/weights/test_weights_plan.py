"""`runner plan` shows the pinned weights (the defect: a spec's weights appeared nowhere)."""

from __future__ import annotations

import json

from tests.helpers import EXPERIMENTS


def test_plan_shows_the_pin(cli):
    spec = EXPERIMENTS / "alexnet-finetune-cifar10.yaml"
    r = cli("plan", spec, "--json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["weights"]["skip"] == ["classifier.4", "classifier.6"]
    table = cli("plan", spec)
    assert table.code == 0 and "weights sha256" in " ".join(table.out.split())
