"""Container telemetry through the Docker engine's stats API."""

from __future__ import annotations

import time

import pytest

from runner.telemetry.docker_stats import cpu_percent, memory_without_cache
from runner.telemetry.sampler import TelemetrySampler

IMAGE = "local/debian:bookworm"


def test_memory_without_cache_v1_and_v2():
    assert memory_without_cache({"usage": 1000, "stats": {"total_inactive_file": 300}}) == 700  # cgroup v1
    assert memory_without_cache({"usage": 1000, "stats": {"inactive_file": 100}}) == 900  # cgroup v2
    assert memory_without_cache({"usage": 1000, "stats": {}}) == 1000
    assert memory_without_cache({}) is None


def test_cpu_percent_like_docker_stats():
    stats = {"cpu_stats": {"cpu_usage": {"total_usage": 3_000_000_000}, "system_cpu_usage": 20_000_000_000,
                           "online_cpus": 2},
             "precpu_stats": {"cpu_usage": {"total_usage": 2_000_000_000}, "system_cpu_usage": 18_000_000_000}}
    assert cpu_percent(stats) == 100.0  # 1 s of CPU over 2 s of (2-CPU) host time = one core
    assert cpu_percent({"cpu_stats": stats["cpu_stats"], "precpu_stats": {}}) is None  # first reading


@pytest.mark.docker
def test_a_busy_container_then_a_removed_one():
    import docker

    client = docker.from_env(timeout=30)
    try:
        client.images.get(IMAGE)
    except docker.errors.ImageNotFound:
        pytest.skip(f"{IMAGE} not built (.ci/provision.sh makes it)")
    container = client.containers.run(IMAGE, ["sh", "-c", "while :; do :; done"], detach=True,
                                      network_mode="none", mem_limit="256m")
    try:
        sampler = TelemetrySampler(interval_s=0.25, nvml=None, container=container, host=False).start()
        time.sleep(4.0)
        rows = sampler.stop()
        assert sampler.cost_per_sample_s is not None and sampler.cost_per_sample_s < 0.01  # never waits
        container.remove(force=True)
        gone = TelemetrySampler(interval_s=0.1, nvml=None, container=container, host=False).start()
        time.sleep(0.5)
        gone.stop()  # a container that no longer exists: counted, not raised
    finally:
        try:
            container.remove(force=True)
        except docker.errors.NotFound:
            pass
    good = [r for r in rows if r["cpu_pct"] is not None]
    assert 2 <= len(good) <= 5  # the engine reads about once a second; one row per reading
    assert max(r["cpu_pct"] for r in good) > 10.0  # a shell loop spinning (idle reads ~0; the CI box may be busy)
    assert all(r["source"] == "container" and r["mem_limit_bytes"] == 256 * 2**20 for r in good)
    assert all(r["mem_bytes"] and r["mem_bytes"] > 0 for r in good)
    assert sampler.errors == {}
    assert gone.errors == {"container": 1} and gone.samples == []


@pytest.mark.docker
def test_a_busy_containers_own_cpu_is_not_other_load():
    """Host busy includes the container's spinning; other load is the host less the container's own CPU."""
    import docker
    import psutil

    client = docker.from_env(timeout=30)
    try:
        client.images.get(IMAGE)
    except docker.errors.ImageNotFound:
        pytest.skip(f"{IMAGE} not built (.ci/provision.sh makes it)")
    container = client.containers.run(IMAGE, ["sh", "-c", "while :; do :; done"], detach=True,
                                      network_mode="none", mem_limit="256m")
    try:
        sampler = TelemetrySampler(interval_s=0.5, nvml=None, container=container).start()
        time.sleep(4.0)
        rows = sampler.stop()
    finally:
        container.remove(force=True)
    host = [r for r in rows if r["source"] == "host" and r["other_cpu_pct"] is not None]
    assert len(host) >= 3, rows
    own = [r["cpu_pct"] for r in rows if r["source"] == "container" and r["cpu_pct"] is not None]
    own_share = sum(own) / len(own) / psutil.cpu_count()  # the container's CPU as % of all the host's cores
    busy = sum(r["host_cpu_pct"] for r in host) / len(host)
    other = sum(r["other_cpu_pct"] for r in host) / len(host)
    assert own_share > 0.1 * 100 / psutil.cpu_count()  # the loop spins (less than a core on a saturated box)
    assert busy >= own_share * 0.8  # the host's busy time includes the container's
    assert other < busy - 0.5 * own_share  # ... and the container's share is the run's own, not other load
