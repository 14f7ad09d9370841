"""Host CPU load: busy and steal from CPU-time deltas, other load = host busy less the run's own."""

from __future__ import annotations

import subprocess
import sys
import time

import psutil
import pytest

from runner.telemetry.host import attribute_other_load, busy_and_steal_pct
from runner.telemetry.sampler import TelemetrySampler
from runner.telemetry.schema import SAMPLE_FIELD_NAMES
from runner.telemetry.summary import host_load_summary

SPIN = "import time\nend = time.time() + 30\nwhile time.time() < end:\n    pass\n"


def times(**kw: float):
    base = dict.fromkeys(psutil.cpu_times()._fields, 0.0)
    return psutil.cpu_times().__class__(**(base | kw))


def test_busy_and_steal_from_two_readings():
    before = times(user=100.0, system=50.0, idle=800.0, iowait=10.0, steal=5.0)
    after = times(user=160.0, system=70.0, idle=900.0, iowait=10.0, steal=15.0, guest=20.0)
    # span: 80 busy (user + system; guest is inside user) + 100 idle + 10 steal = 190
    busy, steal = busy_and_steal_pct(before, after)
    assert busy == pytest.approx(100 * 80 / 190) and steal == pytest.approx(100 * 10 / 190)
    assert busy_and_steal_pct(after, after) is None


def test_other_load_is_host_busy_less_the_runs_own():
    row = {"host_cpu_pct": 75.0, "host_cpus": 4}
    attribute_other_load(row, 100.0)  # the run used one core of four = 25 % of the host
    assert row["other_cpu_pct"] == pytest.approx(50.0)
    quiet = {"host_cpu_pct": 20.0, "host_cpus": 4}
    attribute_other_load(quiet, 100.0)  # windows differ a little: never below 0
    assert quiet["other_cpu_pct"] == 0.0
    unknown = {"host_cpu_pct": 20.0, "host_cpus": 4}
    attribute_other_load(unknown, None)
    assert "other_cpu_pct" not in unknown


def test_a_cpu_hog_beside_a_real_process_is_other_load():
    """A real run (a process tree) and a real hog beside it: the hog is other load, the run is not."""
    run = subprocess.Popen([sys.executable, "-c", SPIN])
    hog = subprocess.Popen([sys.executable, "-c", SPIN])
    try:
        time.sleep(0.3)
        sampler = TelemetrySampler(interval_s=0.2, nvml=None, pid=run.pid).start()
        time.sleep(2.0)
        rows = sampler.stop()
    finally:
        for p in (run, hog):
            p.kill()
            p.wait()
    host = [r for r in rows if r["source"] == "host"]
    assert len(host) >= 5 and all(set(r) == set(SAMPLE_FIELD_NAMES) for r in host)
    assert all(r["host_cpus"] == psutil.cpu_count() and r["host_load_1m"] is not None for r in host)
    summary = host_load_summary(rows)
    # the hog keeps one core of the host busy: 100 / cores % of the machine (the box may be busier still)
    assert summary["host_other_cpu_mean_pct"] > 0.5 * 100 / psutil.cpu_count()
    assert summary["host_other_cpu_max_pct"] >= summary["host_other_cpu_mean_pct"]
    assert summary["host_steal_mean_pct"] is not None
    assert sampler.errors == {}


def test_without_host_rows_the_summary_is_empty():
    assert host_load_summary([{"source": "gpu"}]) == dict.fromkeys(
        ("host_other_cpu_mean_pct", "host_other_cpu_max_pct", "host_steal_mean_pct", "host_steal_max_pct"))
