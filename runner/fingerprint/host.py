"""The host a run executes on: CPU, memory, OS and kernel, and the container engine.

Every probe is guarded on its own: a file that does not exist (a VM without cpufreq, a
kernel without NUMA) gives None for that field, never an error. Identifying values (the
host name) are recorded as they are; redaction scrubs them before anything is written.
"""

from __future__ import annotations

import os
import platform
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import psutil

T = TypeVar("T")

AUTO = "auto"
_SYS_CPU = Path("/sys/devices/system/cpu")
_SYS_NODE = Path("/sys/devices/system/node")


def _guard(fn: Callable[[], T]) -> T | None:
    try:
        return fn()
    except (OSError, ValueError, KeyError, IndexError, AttributeError, RuntimeError):
        return None


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace").strip()


def parse_cpuinfo(text: str) -> dict[str, Any]:
    """Model, vendor, flags, sockets, cores and threads from /proc/cpuinfo text (x86, arm, ppc64le)."""
    blocks = [b for b in text.split("\n\n") if b.strip()]
    procs: list[dict[str, str]] = []
    header: dict[str, str] = {}
    for block in blocks:
        fields = {}
        for line in block.splitlines():
            key, sep, value = line.partition(":")
            if sep:
                fields[key.strip().lower()] = value.strip()
        if "processor" in fields:
            procs.append(fields)
        else:
            header.update(fields)
    first = procs[0] if procs else header
    model = first.get("model name") or first.get("cpu") or header.get("model") or header.get("hardware")
    flags = first.get("flags") or first.get("features") or ""
    sockets = {p.get("physical id") for p in procs if "physical id" in p}
    cores = {(p.get("physical id"), p.get("core id")) for p in procs if "core id" in p}
    return {
        "model": model,
        "vendor": first.get("vendor_id") or header.get("machine"),
        "flags": sorted(set(flags.split())),
        "sockets": len(sockets) or None,
        "cores": len(cores) or None,
        "threads": len(procs) or None,
    }


def cpu_info() -> dict[str, Any]:
    info = _guard(lambda: parse_cpuinfo(_read(Path("/proc/cpuinfo")))) or {}
    freq = _guard(psutil.cpu_freq)
    info.update({
        "architecture": platform.machine(),
        "threads": info.get("threads") or os.cpu_count(),
        "cores": info.get("cores") or _guard(lambda: psutil.cpu_count(logical=False)),
        "usable_threads": len(_guard(lambda: os.sched_getaffinity(0)) or ()) or None,
        "frequency_mhz": {"min": freq.min or None, "max": freq.max or None} if freq else None,
        "governors": _governors(),
        "numa_nodes": _numa_nodes(),
    })
    return info


def _governors() -> list[str] | None:
    """The set of cpufreq scaling governors in use (None: no cpufreq, as in most VMs)."""
    found = set()
    for policy in sorted(_SYS_CPU.glob("cpufreq/policy*")) or sorted(_SYS_CPU.glob("cpu[0-9]*/cpufreq")):
        gov = _guard(lambda p=policy: _read(p / "scaling_governor"))
        if gov:
            found.add(gov)
    return sorted(found) or None


def _numa_nodes() -> list[dict[str, Any]] | None:
    nodes = []
    for node in sorted(_SYS_NODE.glob("node[0-9]*"), key=lambda p: int(p.name[4:])):
        mem_kb = None
        meminfo = _guard(lambda n=node: _read(n / "meminfo")) or ""
        for line in meminfo.splitlines():
            if "MemTotal:" in line:
                mem_kb = _guard(lambda ln=line: int(ln.split()[-2]))
        nodes.append({"node": int(node.name[4:]), "cpus": _guard(lambda n=node: _read(n / "cpulist")),
                      "memory_bytes": mem_kb * 1024 if mem_kb else None})
    return nodes or None


def memory_info() -> dict[str, Any]:
    vm = _guard(psutil.virtual_memory)
    swap = _guard(psutil.swap_memory)
    return {"total_bytes": vm.total if vm else None, "swap_bytes": swap.total if swap else None}


def os_release(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip():
            out[key.strip()] = value.strip().strip('"')
    return out


def os_info() -> dict[str, Any]:
    rel = _guard(lambda: os_release(_read(Path("/etc/os-release")))) or {}
    libc = _guard(platform.libc_ver)
    return {
        "system": platform.system(),
        "kernel": platform.release(),
        "kernel_version": platform.version(),
        "distribution": rel.get("PRETTY_NAME"),
        "distribution_id": rel.get("ID"),
        "distribution_version": rel.get("VERSION_ID"),
        "libc": "-".join(x for x in libc if x) if libc else None,
        "cgroup_version": cgroup_version(),
        "hostname": socket.gethostname(),
        "python": platform.python_version(),
    }


def cgroup_version(root: Path = Path("/sys/fs/cgroup")) -> str | None:
    """"2" (unified), "1" (legacy), "hybrid" (v1 controllers plus a v2 hierarchy), None if unknown."""
    if (root / "cgroup.controllers").exists():
        return "2"
    if (root / "unified").is_dir() and any((root / c).is_dir() for c in ("cpu", "memory", "cpuset")):
        return "hybrid"
    if any((root / c).is_dir() for c in ("cpu", "memory", "cpuset")):
        return "1"
    return None


ENGINE_FIELDS = {
    "ServerVersion": "version", "Driver": "storage_driver", "CgroupVersion": "cgroup_version",
    "CgroupDriver": "cgroup_driver", "DefaultRuntime": "default_runtime", "OperatingSystem": "os",
    "KernelVersion": "kernel", "Architecture": "architecture", "NCPU": "cpus", "MemTotal": "memory_bytes",
    "Name": "hostname",
}


def engine_info(client: Any) -> dict[str, Any]:
    """Container engine facts from a docker SDK client (`client.version()` and `client.info()`)."""
    if client is None:
        return {"available": False, "reason": "no container engine used (local engine)"}
    try:
        info = client.info()
        version = client.version()
    except Exception as e:  # noqa: BLE001 - the SDK raises many types; record the reason, not a crash
        return {"available": False, "reason": f"engine did not answer: {type(e).__name__}: {e}"}
    out: dict[str, Any] = {"available": True, "name": "docker"}
    out.update({ours: info.get(theirs) for theirs, ours in ENGINE_FIELDS.items()})
    out["api_version"] = version.get("ApiVersion")
    out["runtimes"] = sorted((info.get("Runtimes") or {}).keys()) or None
    out["security_options"] = info.get("SecurityOptions")
    return out


def _connect() -> Any:
    """A client from `runner.engine.docker_client.connect`, or None when no engine answers."""
    try:
        from runner.engine.docker_client import connect
    except ImportError:
        return None
    from runner.errors import EngineError

    try:
        return connect(answer_within=5)
    except EngineError:
        return None


def host_fingerprint(client: Any = AUTO) -> dict[str, Any]:
    """CPU, memory, OS and engine of this host. `client`: a docker client, None (no engine) or "auto"."""
    if client == AUTO:
        client = _connect()
    return {"cpu": cpu_info(), "memory": memory_info(), "os": os_info(), "engine": engine_info(client)}


def host_summary(fp: dict[str, Any]) -> dict[str, Any]:
    """The few host facts repeated on every results row."""
    cpu, osi, eng = fp.get("cpu") or {}, fp.get("os") or {}, fp.get("engine") or {}
    return {
        "host_cpu_model": cpu.get("model"),
        "host_cpu_threads": cpu.get("threads"),
        "host_memory_bytes": (fp.get("memory") or {}).get("total_bytes"),
        "host_os": osi.get("distribution"),
        "host_kernel": osi.get("kernel"),
        "engine_version": eng.get("version") if eng.get("available") else None,
    }
