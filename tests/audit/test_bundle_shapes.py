"""Bundle documents of the wrong shape: one line and exit 2 from every reader, a named problem from
`bundle verify`, never an internal error (runner.bundle.shapes).

The corpus: every JSON document of a bundle (manifest, bundle.json, environment/*, runs/<id>/*),
each container and each shallow leaf in turn replaced by a value of another JSON type (a number,
a string; a top-level text field also by a list), and each document replaced by a list, then
re-hashed into the manifest so only the shape is wrong. Every command that reads bundles runs on each.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runner.bundle.shapes import shape_of, shape_problem
from tests.audit.cli_helpers import ensure_registered
from tests.audit.synth import environment, make_bundle, rehash
from tests.audit.test_verify import SMALL

GPU = {"available": True, "count": 1, "driver_version": "580.65", "cuda_driver_version": "13.0",
       "devices": [{"index": 0, "name": "NVIDIA H200", "uuid": "GPU-0", "memory_total_bytes": 150_000_000_000,
                    "max_clocks_mhz": {"sm": 1980, "memory": 3201}, "pcie": {"generation": 5, "width": 16}}]}


def _paths(doc: Any, pre: tuple = (), depth: int = 0) -> Iterator[tuple[tuple, Any]]:
    """(path, value) of every field to depth 4; of a list, its first item."""
    if depth > 3:
        return
    items = doc.items() if isinstance(doc, dict) else list(enumerate(doc))[:1] if isinstance(doc, list) else []
    for key, value in items:
        yield (*pre, key), value
        yield from _paths(value, (*pre, key), depth + 1)


def _set(doc: Any, path: tuple, value: Any) -> Any:
    doc = copy.deepcopy(doc)
    cur = doc
    for key in path[:-1]:
        cur = cur[key]
    cur[path[-1]] = value
    return doc


def mutations(doc: Any, rel: str = "") -> Iterator[tuple[str, Any]]:
    yield "the document=[]", []
    for path, value in _paths(doc):
        label = ".".join(map(str, path))
        if path[0] == "files":  # the manifest's file list: read_manifest's own checks (test_verify)
            continue
        if rel == "bundle.json" and len(path) > 1:  # compared with the manifest field by field, any shape
            continue
        if path[0] == "spec" and len(path) > 2:  # the spec's own depths: the spec validator's (rerun)
            continue
        if isinstance(value, (dict, list)):
            yield f"{label}=7", _set(doc, path, 7)
            yield f"{label}='x'", _set(doc, path, "x")
        elif len(path) <= 3 and isinstance(value, str):
            yield f"{label}=7", _set(doc, path, 7)
            if len(path) == 1:  # a top-level text field as a container (unhashable where it is compared)
                yield f"{label}=[]", _set(doc, path, [])
        elif len(path) <= 3 and isinstance(value, (int, float)) and not isinstance(value, bool):
            yield f"{label}='x'", _set(doc, path, "x")


def tampered(base: Path, work: Path, rel: str, doc: Any) -> Path:
    """A copy of `base` with `rel` replaced by `doc`, its size and sha256 rewritten in the manifest."""
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(base, work)
    (work / rel).write_text(json.dumps(doc))
    if rel != "manifest.json":
        rehash(work, rel)
    return work


@pytest.fixture(scope="module")
def bundles(tmp_path_factory) -> tuple[Path, Path]:
    ensure_registered()
    tmp = tmp_path_factory.mktemp("shapes")
    a = make_bundle(tmp / "a", spec=SMALL)
    b = make_bundle(tmp / "b", spec=SMALL, env=environment(gpu=GPU))
    return a, b


def test_shape_problems_name_the_field_what_it_is_and_what_it_should_be():
    assert shape_problem("b/environment/host.json", {"cpu": 7}) == "cpu is a number, expected an object"
    assert shape_problem("b/environment/host.json", {"cpu": {"flags": "avx"}}) == \
        "cpu.flags is a string, expected a list"
    assert shape_problem("b/environment/gpu.json", {"devices": [{"name": 3}]}) == \
        "devices[0].name is a number, expected a string"
    assert shape_problem("b/manifest.json", {"fingerprint": {"code": {"git": []}}}) == \
        "fingerprint.code.git is a list, expected an object"
    assert shape_problem("b/environment/images/x-cpu.json", []) == "the document is a list, expected an object"
    # absent fields, nulls and fields no reader walks pass; undeclared documents are any JSON
    assert shape_problem("b/environment/host.json", {"cpu": {"model": None}, "extra": [1]}) is None
    assert shape_problem("b/environment/gpu.json", {"available": False, "reason": "no driver"}) is None
    assert shape_of("b/runs/r1/run.json") is None and shape_problem("b/runs/r1/run.json", 7) is None


def test_verify_names_a_wrong_shape_and_diff_refuses_it_in_one_line(bundles, tmp_path, cli, monkeypatch):
    a, b = bundles
    monkeypatch.chdir(tmp_path)
    host = json.loads((b / "environment" / "host.json").read_text())
    bad = tampered(b, tmp_path / "bad", "environment/host.json", _set(host, ("cpu", "flags"), 7))
    out = cli("bundle", "verify", bad)
    assert out.code == 1
    assert "first environment/host.json: shape: cpu.flags is a number, expected a list" in out.err
    out = cli("bundle", "diff", a, bad)
    assert out.code == 2 and "Traceback" not in out.err
    assert len(out.err.strip().splitlines()) == 1
    assert "host.json" in out.err and "cpu.flags is a number, expected a list" in out.err
    assert "restore it from a good copy" in out.err


def test_verify_skips_what_walks_a_manifest_of_the_wrong_shape(bundles, tmp_path, cli, monkeypatch):
    _, b = bundles
    monkeypatch.chdir(tmp_path)
    manifest = json.loads((b / "manifest.json").read_text())
    bad = tampered(b, tmp_path / "bad", "manifest.json", _set(manifest, ("fingerprint", "host"), [1]))
    out = cli("bundle", "verify", bad)
    assert out.code == 1 and "first manifest.json: shape: fingerprint.host is a list, expected an object" in out.err
    assert "tables and facts were not checked" in " ".join(out.out.split())


def test_every_reader_survives_every_wrong_shape(bundles, tmp_path, cli, monkeypatch):
    """The corpus through diff, verify, publish and (the manifest) compare: exit 0, 1 (verify's
    problems) or 2 with one line naming the file; never an internal error. Verify names the
    shape of every tampered document whose declared shape the change breaks."""
    a, b = bundles
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "200")  # verify's table: one row per problem, unwrapped
    docs = sorted(p.relative_to(b).as_posix() for p in b.rglob("*.json"))
    run_dir = next(d for d in docs if d.startswith("runs/")).rsplit("/", 1)[0]
    image = next(d for d in docs if d.startswith("environment/images/"))
    docs = [d for d in docs if not d.startswith(("runs/", "environment/images/")) or d.startswith(run_dir)] + [image]
    assert {"manifest.json", "bundle.json", "environment/host.json", "environment/gpu.json"} <= set(docs)
    failures, cases = [], 0
    for rel in docs:
        original = json.loads((b / rel).read_text())
        for label, doc in mutations(original, rel):
            cases += 1
            work = tampered(b, tmp_path / "m", rel, doc)
            commands = [("bundle", "diff", a, work), ("bundle", "verify", work),
                        ("bundle", "publish", work, "--out", tmp_path / "pub")]
            if rel == "manifest.json":  # compare and report read the manifest and the tables only
                commands.append(("compare", work))
            for args in commands:
                shutil.rmtree(tmp_path / "pub", ignore_errors=True)
                out = cli(*args)
                err = out.err.strip()
                ok = out.code in (0, 1, 2) and "internal error" not in err and "Traceback" not in err
                if out.code == 2:
                    ok = ok and len(err.splitlines()) == 1 and (rel.split("/")[-1] in err or "manifest" in err)
                if (args[1] == "verify" and rel != "manifest.json"  # the manifest: its own test above
                        and shape_of(rel) is not None and shape_problem(rel, doc) is not None):
                    named = re.search(rf"^ *{re.escape(rel)} +shape ", out.out, re.MULTILINE)
                    ok = ok and out.code == 1 and named is not None  # named, not just failed
                if not ok:
                    failures.append(f"{rel} {label}: {' '.join(map(str, args[:2]))} exit {out.code}: "
                                    f"{(err or out.out)[-200:]}")
    assert cases > 150
    assert not failures, "\n".join(failures[:40])
