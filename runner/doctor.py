"""`runner doctor`: what this machine offers a run, each line OK / WARN / FAIL with the fix."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

MIN_FREE_BYTES = 10 * 2**30


@dataclass
class Check:
    name: str
    status: str  # OK | WARN | FAIL
    detail: str
    fix: str = ""


def check_engine() -> tuple[Check, object | None]:
    from runner.engine.docker_client import connect
    from runner.errors import EngineError

    try:
        client = connect(answer_within=10)
        version = client.version()
    except EngineError as e:
        return Check("container engine", "FAIL", e.message, e.fix or ""), None
    v = version.get
    detail = f"Docker {v('Version')} (API {v('ApiVersion')}, {v('Os')}/{v('Arch')})"
    return Check("container engine", "OK", detail), client


def check_podman() -> Check:
    """The second engine (`--engine podman`): optional, so its absence is a WARN."""
    return podman_check()[0]


def podman_check() -> tuple[Check, object | None]:
    """The podman check and the engine when podman answers (None when it does not)."""
    from runner.engine.podman_engine import PodmanEngine
    from runner.errors import EngineError

    try:
        podman = PodmanEngine.connect()
        facts = podman.describe()
    except EngineError as e:
        return Check("podman", "WARN", e.message, "only needed for --engine podman: apt-get install -y podman"), None
    mode = "rootless" if facts.get("rootless") else "rootful"
    detail = (f"Podman {facts.get('version')} ({mode}, {facts.get('oci_runtime')}, "
              f"{facts.get('storage_driver')} storage, cgroups {facts.get('cgroup_version')})")
    ignored = [k for k, held in (facts.get("limits_enforced") or {}).items() if not held]
    if ignored:  # rootless on cgroup v1, or a controller not delegated: specs setting these are refused
        return Check("podman", "WARN", f"{detail}; cannot enforce: {', '.join(ignored)}",
                     "run podman as root, or delegate the cpu, memory and pids controllers to your user on a "
                     "cgroup v2 host (systemd Delegate=yes); specs setting resources.memory/cpus are refused"), podman
    return Check("podman", "OK", detail), podman


def check_gpus() -> Check:
    from runner.fingerprint.gpu import gpu_fingerprint

    info = gpu_fingerprint()
    if not info.get("available"):
        return Check("GPUs (NVML)", "WARN", f"none: {info.get('reason', 'no NVIDIA driver')}",
                     "only cpu and ppc64le variants can run here")
    names = ", ".join(g.get("name", "?") for g in info.get("devices", []))
    return Check("GPUs (NVML)", "OK", f"{info.get('count')} x {names}; driver {info.get('driver_version')}")


def check_disk(path: Path) -> Check:
    probe = path if path.exists() else Path.cwd()
    free = shutil.disk_usage(probe).free
    status = "OK" if free >= MIN_FREE_BYTES else "WARN"
    return Check("free disk", status, f"{free / 2**30:.1f} GiB free at {probe.resolve()}",
                 "" if status == "OK" else "free space: images take 1-6 GiB each")


def check_datasets(data_root: Path) -> Check:
    if not data_root.is_dir():
        return Check("datasets", "WARN", f"no data root at {data_root}",
                     "`runner data fetch cifar10 --dest datasets` (or `runner data synth`)")
    found = sorted(p.name for p in data_root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not found:
        return Check("datasets", "WARN", f"{data_root} is empty", "`runner data fetch cifar10 --dest datasets`")
    return Check("datasets", "OK", f"{data_root}: {', '.join(found)}")


def check_images(client: object | None, podman: object | None = None) -> Check:
    """Docker's images; podman's own storage where podman runs alone (no Docker engine)."""
    if client is None and podman is None:
        return Check("images", "WARN", "unknown (no engine)", "start the engine first")
    from runner.images.catalog import load_catalog

    entries = [entry for entry in load_catalog() if entry.buildable]
    if client is not None:
        from runner.images.inspect import image_state

        states, where, fix = [image_state(client, e) for e in entries], "", "`runner images build NAME`"
    else:
        from runner.images.podman_store import podman_image_state

        states = [podman_image_state(podman, e) for e in entries]
        where, fix = " (podman's storage)", "`runner images build NAME --engine podman`, or `runner images " \
                                            "import FILE --engine podman` of an archive from `runner images export`"
    present = [s.entry.name for s in states if s.status == "present"]
    missing = [f"{s.entry.name} ({s.status})" for s in states if s.status != "present"]
    status = "OK" if present else "WARN"
    detail = f"present{where}: {', '.join(present) or 'none'}; missing or stale: {', '.join(missing) or 'none'}"
    return Check("images", status, detail, "" if not missing else fix)


def check_executors() -> Check:
    """inline is always there; Slurm when its commands are on PATH and the controller answers."""
    from runner.errors import ExecutorError
    from runner.executor.slurm_cli import SlurmCli

    cli = SlurmCli(timeout_s=10)
    if cli.path("sbatch") is None:
        return Check("executors", "OK", "inline; slurm: not here (no sbatch on PATH)")
    try:
        partitions = cli.partitions()
    except ExecutorError as e:
        return Check("executors", "WARN", f"inline; slurm: {e.message}", "start slurmctld (test machines: "
                     ".ci/slurm-up.sh), or run with executor: inline")
    listing = ", ".join(f"{p.name}{'*' if p.default else ''} ({p.available}"
                        f"{'; GRES ' + '/'.join(sorted(p.gres)) if p.gres else ''})" for p in partitions.values())
    return Check("executors", "OK", f"inline; slurm: partitions {listing or 'none'}")


def run_checks(data_root: Path) -> list[Check]:
    engine, client = check_engine()
    podman_line, podman = podman_check()
    if client is None and podman is not None:  # podman alone (a cluster without Docker): not a failure
        engine = Check("container engine", "WARN", f"no Docker engine ({engine.detail}); podman runs the images "
                       "in its own storage", "engine auto (the spec's default) and podman use it; start dockerd "
                       "to build images with Docker")
    return [engine, podman_line, check_executors(), check_gpus(), check_disk(Path("results")),
            check_datasets(data_root), check_images(client, podman)]
