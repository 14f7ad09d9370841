"""The dataset cache under runners started together: two real processes resolving the same spec's
dataset on an empty cache both succeed with the same hash (one waits for the other); a runner
that waits too long says so in one line naming an option `reproduce` has."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runner.errors import DatasetError
from tests.helpers import REPO

TINY = REPO / "tests" / "specs" / "tiny.yaml"

RESOLVE = """
import sys
from pathlib import Path
from runner.reproduce.dataset import resolve_dataset
from runner.spec.load import load_spec
spec = Path(sys.argv[1])
r = resolve_dataset(load_spec(spec).dataset, Path("data"), Path(sys.argv[2]), spec)
print(r.source_root_hash, r.prepared)
"""


@pytest.mark.parametrize("attempt", range(5))
def test_two_runners_on_an_empty_cache_both_succeed(tmp_path, attempt):
    cache = tmp_path / "cache"
    env = os.environ | {"PYTHONPATH": str(REPO)}  # this checkout's runner, whatever is installed
    procs = [subprocess.Popen([sys.executable, "-c", RESOLVE, str(TINY), str(cache)], cwd=tmp_path, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [p.communicate(timeout=300) for p in procs]
    for proc, (_out, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, err
    hashes = {out.split()[0] for out, _ in results}
    assert len(hashes) == 1
    # one complete entry each, no staging folder left behind
    assert sorted(p.name for p in (cache / "synthetic").iterdir() if not p.name.endswith(".lock")) == \
        ["cifar10-256-64-1-g2"]
    assert [p.name for p in (cache / "prepared").iterdir() if not p.name.endswith(".lock")] == \
        [f"cifar10-{hashes.pop()[:16]}"]


def test_a_runner_waits_a_bounded_time_then_names_a_real_option(cli, tmp_path, monkeypatch):
    from filelock import FileLock

    import runner.reproduce.dataset as dataset
    from runner.spec.load import load_spec

    monkeypatch.setattr(dataset, "CACHE_WAIT_S", 0.5)
    (tmp_path / "cache" / "synthetic").mkdir(parents=True)
    held = FileLock(tmp_path / "cache" / "synthetic" / ".cifar10-256-64-1-g2.lock")
    held.acquire()  # another runner is creating the entry
    try:
        t0 = time.monotonic()
        with pytest.raises(DatasetError) as exc:
            dataset.resolve_dataset(load_spec(TINY).dataset, tmp_path, tmp_path / "cache", TINY)
        assert time.monotonic() - t0 < 5
    finally:
        held.release()
    line = exc.value.describe()
    assert "another runner has been creating this cache entry for 0.5 s" in line and "--cache" in line
    assert "--cache" in cli("reproduce", "--help").out  # the option the fix names exists


def test_a_staging_folder_left_by_a_killed_runner_is_cleared(tmp_path):
    from runner.reproduce.dataset import resolve_dataset
    from runner.spec.load import load_spec

    stale = tmp_path / "cache" / "synthetic" / ".cifar10-256-64-1-g2.abc123.tmp"
    stale.mkdir(parents=True)
    (stale / "half-written").write_bytes(b"x")
    resolve_dataset(load_spec(TINY).dataset, tmp_path, tmp_path / "cache", TINY)
    assert not stale.exists()


def test_a_damaged_cache_entry_says_how_to_renew_it(tmp_path):
    from runner.reproduce.dataset import resolve_dataset
    from runner.spec.load import load_spec

    ds = load_spec(TINY).dataset
    first = resolve_dataset(ds, tmp_path, tmp_path / "cache", TINY)
    victim = next(Path(first.prepared).glob("train_x.npy"))
    victim.chmod(0o644)
    data = bytearray(victim.read_bytes())
    data[-1] ^= 0xFF
    victim.write_bytes(bytes(data))
    with pytest.raises(DatasetError) as exc:
        resolve_dataset(ds, tmp_path, tmp_path / "cache", TINY)
    line = exc.value.describe()
    assert "cached entry is damaged" in line and f"remove {first.prepared}" in line and "\n" not in line
