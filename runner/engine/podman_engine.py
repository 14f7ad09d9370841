"""The podman engine: the Docker engine's locked-down container, run by Podman (clusters where
Docker is not allowed).

Talks to podman through its CLI (argv lists, never a shell): podman is daemonless, so the CLI
needs nothing running beside it, which is what a Slurm node offers; the Docker-compatible API
(`podman system service`) would need a long-lived service per node and user, started and
stopped around each job. The container is the one `sandbox.py` describes, with every option
the Docker engine sets: no network, all capabilities dropped, no-new-privileges, read-only root
(and no extra tmpfs podman would add on /run and /var/tmp), a /tmp tmpfs, the pids limit,
read-only data/code/config/weights mounts, never root inside.

Rootless podman (a cluster user's, where Docker is not allowed) runs the container in a user
namespace: `--userns=keep-id --user UID:GID` makes the container's user the host user, so /out is
written as that user and read back by it. Its resource limits depend on the host (`podman info`,
asked once): rootful podman sets them all; rootless podman on cgroup v1 ignores --memory, --cpus
and --pids-limit with a warning and runs anyway; on cgroup v2 it sets those whose controller is
delegated to the user. A run asking for a limit podman would ignore is refused (one line naming
the spec field), never run without it; the sandbox's own pids limit then rests on `--ulimit nproc`
alone, which describe() records.

Images come from Docker (`docker save` streamed into `podman load`): Podman's image ID of a
loaded image is the sha256 of its config, the same ID Docker gives it, so rows and `bundle diff`
compare one ID whichever engine ran the run (checked on load: a mismatch is an error).
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.engine.base import STOP_GRACE_S, Launch, Limits, RunOutcome, RunRequest, classify_exit, workload_env
from runner.engine.sandbox import (
    CODE_MOUNT,
    LABEL_BUNDLE,
    LABEL_TOOL,
    TMPFS,
    container_launch,
    container_user,
    give_output_to_container,
    take_output_back,
)
from runner.errors import EngineError

CLI_TIMEOUT_S = 60.0  # one podman command (create, inspect, logs, rm); image loads get longer
LOAD_TIMEOUT_S = 1800.0
INSTALL_FIX = "install podman (`apt-get install -y podman`) or choose --engine docker"
# Rootful podman raises RLIMIT_NOFILE/NPROC to 1048576 by default; a host without CAP_SYS_RESOURCE
# (a container, some clusters) refuses that, so the run gets limits below the host's instead.
NOFILE = 8192
# Podman adds these to every container's environment; Docker does not: the run sees the same variables.
UNSET_ENV = ("--unsetenv", "TERM", "--unsetenv", "container")
# Each limit of a Launch and the cgroup controller that enforces it.
LIMIT_CONTROLLERS = {"memory": "memory", "cpus": "cpu", "pids": "pids"}
# The limits a spec sets (the pids limit is the sandbox's own, not a spec field).
SPEC_FIELDS = {"memory": "resources.memory", "cpus": "resources.cpus"}
LIMITS_FIX = ("run podman as root, or on a cgroup v2 host delegate the cpu, memory and pids controllers to the user "
              "(systemd Delegate=yes), or leave {field} unset, or use --engine docker (or --engine local: "
              "not isolated)")


@dataclass(frozen=True)
class PodmanHost:
    """Where podman runs containers, as `podman info` says. It decides whose user the container runs
    as and which limits hold: podman warns about a limit it cannot set and runs the container anyway."""

    rootless: bool
    cgroups: str | None  # "v1" | "v2"; None: podman did not say
    controllers: tuple[str, ...] = ()  # cgroup v2: the controllers podman may use (delegated to a rootless user)

    @classmethod
    def from_info(cls, info: dict[str, Any]) -> PodmanHost:
        """From `podman info --format json`; without an answer, podman run by a non-root user is rootless."""
        host = info.get("host") or {}
        rootless = (host.get("security") or {}).get("rootless")
        return cls(rootless=bool(rootless) if rootless is not None else os.geteuid() != 0,
                   cgroups=host.get("cgroupVersion"), controllers=tuple(host.get("cgroupControllers") or ()))

    def enforced(self, limit: str) -> bool:
        """Whether podman sets `limit` (memory, cpus, pids): rootful always; rootless only on cgroup
        v2 with the limit's controller delegated (on v1 it ignores every limit)."""
        if not self.rootless:
            return True
        return self.cgroups == "v2" and LIMIT_CONTROLLERS[limit] in self.controllers

    def why_not(self, limit: str) -> str:
        """Why `limit` does not hold here, for the refusal line."""
        if self.cgroups == "v2":
            return (f"the {LIMIT_CONTROLLERS[limit]} cgroup controller is not delegated to this user "
                    f"(delegated: {', '.join(self.controllers) or 'none'})")
        return f"rootless podman on cgroup {self.cgroups or '(version unknown)'} ignores resource limits"


ROOTFUL = PodmanHost(rootless=False, cgroups=None)


def unenforced_limits(limits: Limits, host: PodmanHost) -> list[str]:
    """The spec limits (memory, cpus) a run asks for that podman here would ignore."""
    return [name for name in SPEC_FIELDS if getattr(limits, name) and not host.enforced(name)]


def limit_refusal(name: str, value: object, host: PodmanHost, file: str | Path | None = None) -> EngineError:
    """The one line refusing a limit podman would ignore: the run must not go without it unsaid."""
    field = SPEC_FIELDS[name]
    return EngineError(f"podman here cannot enforce {field} ({value}): {host.why_not(name)}", file=file,
                       field=field, fix=LIMITS_FIX.format(field=field))


def user_options(host: PodmanHost) -> list[str]:
    """Never root inside. Rootless, keep-id maps the host user to the same uid inside, so what the run
    writes to /out belongs to the host user (without it, the uid would be one of the user's subuids)."""
    uid, gid = container_user()
    return [*(["--userns=keep-id"] if host.rootless else []), "--user", f"{uid}:{gid}"]


def _tail(text: str, n: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else "..." + text[-n:]


def _ulimits(pids: int | None) -> list[str]:
    nofile_soft, nofile_hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    nproc_soft, nproc_hard = resource.getrlimit(resource.RLIMIT_NPROC)

    def below(want: int, soft: int) -> int:
        return want if soft == resource.RLIM_INFINITY else max(64, min(want, soft - 1))

    nofile = below(NOFILE, nofile_soft)
    nproc = below(pids or 4096, nproc_soft)
    return ["--ulimit", f"nofile={nofile}:{nofile}", "--ulimit", f"nproc={nproc}:{nproc}"]


def _check_path(path: Path) -> str:
    text = str(path)
    if ":" in text or "," in text:
        raise EngineError(f"podman cannot bind-mount {text!r} (a ':' or ',' in the path)",
                          file=text, fix="move the data, results or cache to a path without ':' or ','")
    return text


def sandbox_options(launch: Launch, host: PodmanHost = ROOTFUL) -> list[str]:
    """`podman run` options for a Launch: the Docker engine's lockdown, option for option. Where podman
    cannot set the pids limit (rootless), it is left out, so `--ulimit nproc` is the process cap."""
    lim = launch.limits
    opts = [*user_options(host), "--network", "none", "--cap-drop", "ALL",
            "--security-opt", "no-new-privileges", "--read-only", "--read-only-tmpfs=false",
            *[a for path, spec in TMPFS.items() for a in ("--tmpfs", f"{path}:{spec}")],
            "--workdir", launch.workdir, *_ulimits(lim.pids), *UNSET_ENV]
    if lim.pids and host.enforced("pids"):
        opts += ["--pids-limit", str(lim.pids)]
    if lim.shm:
        opts += ["--shm-size", lim.shm.lower()]
    if lim.memory:
        opts += ["--memory", lim.memory.lower()]
    if lim.cpus:
        opts += ["--cpus", f"{lim.cpus:g}"]
    for index in launch.devices:  # CDI names (nvidia-container-toolkit's `nvidia-ctk cdi generate`)
        opts += ["--device", f"nvidia.com/gpu={index}"]
    for key, value in launch.env.items():
        opts += ["--env", f"{key}={value}"]
    for key, value in launch.labels.items():
        opts += ["--label", f"{key}={value}"]
    for m in launch.mounts:
        opts += ["--volume", f"{_check_path(m.source)}:{m.target}:{'ro' if m.read_only else 'rw'}"]
    return opts


class PodmanRun:
    """A detached container followed by a `podman wait` child (so polling costs no podman call)."""

    def __init__(self, engine: PodmanEngine, launch: Launch, name: str, container_id: str) -> None:
        self._engine, self._launch, self._name, self._id = engine, launch, name, container_id
        self._started = time.monotonic()
        self._killed: str | None = None
        self._stop_sent = False
        self._exit: int | None = None
        self._waiter = subprocess.Popen([engine.podman, "wait", name], stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
                                        start_new_session=True, cwd=work_dir())  # Ctrl-C is for us
        pid = engine.cli("inspect", "--format", "{{.State.Pid}}", name, check=False).stdout.strip()
        self._pid = int(pid) if pid.isdigit() and int(pid) > 0 else None

    @property
    def sample_target(self) -> int | None:
        return self._pid  # the container's init process on this host: the sampler reads its tree

    def poll(self) -> int | None:
        if self._exit is None and self._waiter.poll() is not None:
            self._exit = self._waiter_code()
        return self._exit

    def kill(self, reason: str) -> None:
        """SIGTERM (the workload records run_end "interrupted"), SIGKILL after the grace period."""
        self._killed = self._killed or reason
        self._stop_sent = True
        grace = self._engine.stop_grace_s
        proc = self._engine.cli("stop", "--time", str(max(1, round(grace))), self._name, check=False,
                                timeout=grace + CLI_TIMEOUT_S)
        if proc.returncode != 0 and "no such container" not in proc.stderr.lower():
            raise EngineError(f"stopping container {self._name} failed: {_tail(proc.stderr)}",
                              fix=f"podman rm -f {self._name}")

    def finish(self) -> RunOutcome:
        """Wait (bounded) for the exit, collect the log, always remove the container."""
        try:
            exit_code = self._wait()
            state = self._engine.inspect(self._name)
            oom = bool(state.get("OOMKilled"))
            logs = self._engine.cli("logs", self._name, check=False, merge=True).stdout
        finally:
            left = self._remove()
            take_output_back(self._launch)
        grace = self._engine.stop_grace_s
        if self._stop_sent and exit_code == 137 and not oom and "SIGKILL" not in (self._killed or ""):
            self._note(f"did not stop within {grace:g} s of SIGTERM: killed (SIGKILL)")
        reason = classify_exit(exit_code, self._killed, oom)
        extra: dict = {"oom_killed": oom, "container_name": self._name}
        if left:
            extra["container_left"] = left
            reason = f"{reason}; {left}" if reason else None
        return RunOutcome(exit_code=exit_code, reason=reason, log=logs, wall_s=time.monotonic() - self._started,
                          container_id=self._id, extra=extra)

    def _wait(self) -> int:
        grace = self._engine.stop_grace_s
        try:
            self._waiter.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self._note(f"still running {grace:g} s after it should have ended: killed (SIGKILL)")
            self._engine.cli("kill", self._name, check=False)
            try:
                self._waiter.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self._waiter.kill()
                raise EngineError(f"container {self._name} did not exit {grace:g} s after SIGKILL",
                                  fix=f"check it: podman ps -a; remove it: podman rm -f {self._name}") from None
        except KeyboardInterrupt:
            self.kill("interrupted")
            raise
        return self._waiter_code()

    def _waiter_code(self) -> int:
        out, err = self._waiter.communicate()
        text = out.strip().splitlines()[-1] if out.strip() else ""
        if self._waiter.returncode == 0 and text.lstrip("-").isdigit():
            return int(text)
        state = self._engine.inspect(self._name)  # the waiter failed: ask once more
        if state.get("Status") in ("exited", "stopped") and isinstance(state.get("ExitCode"), int):
            return int(state["ExitCode"])
        raise EngineError(f"podman lost container {self._name}: {_tail(err) or 'no exit code'}",
                          fix="check `podman ps -a` and `runner doctor`")

    def _note(self, note: str) -> None:
        self._killed = f"{self._killed}; {note}" if self._killed else note

    def _remove(self) -> str | None:
        proc = self._engine.cli("rm", "--force", self._name, check=False)
        if proc.returncode != 0 and "no such container" not in proc.stderr.lower():
            return f"container {self._name} could not be removed ({_tail(proc.stderr, 200)})"
        return None


def work_dir() -> str:
    """The working folder of every podman process. conmon (podman's container monitor) writes files
    such as `oom` into its working folder: never the user's current folder."""
    path = Path(tempfile.gettempdir()) / f"runner-podman-{os.getuid()}"
    path.mkdir(mode=0o700, exist_ok=True)
    return str(path)


class PodmanEngine:
    name = "podman"
    isolated = True

    def __init__(self, podman: str = "podman", docker=None, stop_grace_s: float = STOP_GRACE_S,
                 host: PodmanHost | None = None) -> None:
        self.podman = podman
        self.docker = docker  # the Docker client images are built with and moved from (None: podman's own only)
        self.stop_grace_s = stop_grace_s
        self._info: dict | None = None
        self._host = host  # None: asked of `podman info` when first needed

    @classmethod
    def connect(cls, docker=None, podman: str | None = None, stop_grace_s: float = STOP_GRACE_S) -> PodmanEngine:
        """An engine whose podman answers `podman version`; EngineError with the fix otherwise."""
        exe = podman or shutil.which("podman")
        if exe is None:
            raise EngineError("podman is not installed (not on PATH)", field="--engine", fix=INSTALL_FIX)
        engine = cls(exe, docker, stop_grace_s)
        engine.version()
        return engine

    # -- the CLI -----------------------------------------------------------------------------
    def cli(self, *args: str, check: bool = True, timeout: float = CLI_TIMEOUT_S, merge: bool = False,
            stdin=None) -> subprocess.CompletedProcess:
        try:
            proc = subprocess.run([self.podman, *args], stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT if merge else subprocess.PIPE,
                                  stdin=stdin if stdin is not None else subprocess.DEVNULL,
                                  text=True, errors="replace", timeout=timeout, cwd=work_dir())
        except FileNotFoundError:
            raise EngineError(f"podman is not installed ({self.podman})", fix=INSTALL_FIX) from None
        except subprocess.TimeoutExpired:
            raise EngineError(f"`podman {args[0]}` did not answer within {timeout:g} s",
                              fix="check podman (`podman info`, `runner doctor`)") from None
        if check and proc.returncode != 0:
            raise EngineError(f"`podman {args[0]}` failed: {_tail(proc.stderr or proc.stdout)}",
                              fix="check podman (`podman info`, `runner doctor`)")
        return proc

    def version(self) -> dict:
        out = self.cli("version", "--format", "json").stdout
        try:
            return json.loads(out).get("Client", {})
        except json.JSONDecodeError:
            raise EngineError(f"`podman version` did not print JSON: {_tail(out)}", fix=INSTALL_FIX) from None

    def info(self) -> dict:
        """`podman info`, asked once ({} when podman does not answer with JSON)."""
        if self._info is None:
            self._info = {}
            with contextlib.suppress(EngineError, json.JSONDecodeError):
                self._info = json.loads(self.cli("info", "--format", "json").stdout)
        return self._info

    def host(self) -> PodmanHost:
        """Rootless or not, cgroup version, delegated controllers: asked once."""
        if self._host is None:
            self._host = PodmanHost.from_info(self.info())
        return self._host

    def check_limits(self, plan: Any) -> None:
        """Before anything is written: the first run asking for a limit podman here would ignore is
        refused, one line naming the spec field (runner.reproduce.session calls this when present)."""
        host = self.host()
        for run in plan.runs:
            res = run.resolved["resources"]
            for name in unenforced_limits(Limits(cpus=res.get("cpus"), memory=res.get("memory")), host):
                raise limit_refusal(name, res[name], host, getattr(plan, "spec_path", None))

    def inspect(self, name: str) -> dict:
        proc = self.cli("inspect", "--type", "container", "--format", "{{json .State}}", name, check=False)
        try:
            return json.loads(proc.stdout) if proc.returncode == 0 else {}
        except json.JSONDecodeError:
            return {}

    # -- the Engine interface ----------------------------------------------------------------
    def describe(self) -> dict:
        version, info, facts = self.version(), self.info(), self.host()
        host, store = info.get("host", {}), info.get("store", {})
        enforced = {limit: facts.enforced(limit) for limit in LIMIT_CONTROLLERS}
        doc = {"kind": "podman", "isolated": True, "version": version.get("Version"),
               "api_version": version.get("APIVersion"), "rootless": facts.rootless,
               "user": "the host user (--userns=keep-id)" if facts.rootless else "65534 when the host user is root",
               "cgroup_manager": host.get("cgroupManager"), "cgroups": facts.cgroups,
               "cgroup_version": facts.cgroups, "cgroup_controllers": list(facts.controllers),
               "limits_enforced": enforced, "oci_runtime": (host.get("ociRuntime") or {}).get("name"),
               "storage_driver": store.get("graphDriverName"),
               "images_from": "docker (docker save | podman load; same image IDs)" if self.docker
               else "podman's own storage (built there by podman, or runner images import --engine podman)"}
        if not enforced["pids"]:
            doc["pids_limit"] = "not enforced by a cgroup here: the process cap is --ulimit nproc alone"
        return doc

    def sampler_kwargs(self, target: object) -> dict:
        return {"pid": target}  # the container's process tree (podman stats would cost a podman call a tick)

    def launch(self, request: RunRequest) -> Launch:
        return container_launch(request, self.name)

    def start(self, request: RunRequest) -> PodmanRun:
        return self.run(self.launch(request))

    def run(self, launch: Launch) -> PodmanRun:
        if launch.image is None:
            raise EngineError(f"run {launch.run_id} has no image", fix="build it: runner images build")
        host = self.host()
        for limit in unenforced_limits(launch.limits, host):  # refused, never run without it (a Slurm node too)
            raise limit_refusal(limit, getattr(launch.limits, limit), host)
        name = f"runner-{launch.run_id}-{uuid.uuid4().hex[:8]}"
        give_output_to_container(launch)
        args = ["run", "--detach", "--name", name, "--pull", "never", *sandbox_options(launch, host),
                "--entrypoint", launch.argv[0], launch.image, *launch.argv[1:]]
        proc = self.cli(*args, check=False)
        if proc.returncode != 0:
            self.cli("rm", "--force", name, check=False)  # created, never started: leave nothing behind
            err = proc.stderr or proc.stdout
            if "image not known" in err or "no such image" in err.lower():
                raise EngineError(f"image {launch.image} is not in podman's storage on {socket.gethostname()}",
                                  fix="let `runner reproduce --engine podman` move it from Docker or build it "
                                      "there, or `runner images import FILE --engine podman` on that node")
            raise EngineError(f"starting the container of run {launch.run_id} failed: {_tail(err)}",
                              fix="check podman (`podman info`, `runner doctor`)")
        try:
            return PodmanRun(self, launch, name, proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else name)
        except BaseException:  # no handle to follow it: leave nothing running behind
            self.cli("rm", "--force", name, check=False)
            raise

    def remove_leftovers(self, bundle_id: str) -> int:
        """Remove every container of a bundle (after an interruption); returns how many."""
        ids = self.cli("ps", "--all", "--quiet", "--filter", f"label={LABEL_BUNDLE}={bundle_id}").stdout.split()
        if ids:
            self.cli("rm", "--force", *ids, check=False)
        return len(ids)

    # -- images ------------------------------------------------------------------------------
    def has_image(self, image_id: str) -> bool:
        return self.cli("image", "exists", image_id, check=False).returncode == 0

    def load_archive(self, path: Path, expect_id: str) -> str:
        """`podman load` of a checked docker-archive tarball (runner.images.podman_store); the loaded ID."""
        from runner.images.podman_store import import_into_podman

        return import_into_podman(self, path, expect_id).image_id

    def image_id(self, image: str) -> str:
        out = self.cli("image", "inspect", "--format", "{{.Id}}", image).stdout.strip()
        return out if out.startswith("sha256:") else f"sha256:{out}"

    def ensure_image(self, image_id: str) -> str:
        """Make Docker's image `image_id` available to podman (streamed `docker save` -> `podman load`);
        returns podman's ID for it, which must be the same ID."""
        if not self.has_image(image_id):
            if self.docker is None:
                raise EngineError(f"image {image_id[:19]} is not in podman's storage and no Docker engine "
                                  "answers to move it from", fix="podman load -i ARCHIVE (runner images export)")
            self._load_from_docker(image_id)
        got = self.image_id(image_id)
        if got != image_id:
            raise EngineError(f"podman gives image {image_id[:19]} the ID {got[:19]}",
                              fix="report this: runner records Docker's image ID for podman runs")
        return got

    def image_facts(self, image_id: str) -> dict:
        """What podman says of the image for the bundle: the facts Docker's inspect gives (id, tags,
        labels, size, platform; runner.images.inspect.fingerprint_of) and podman's own id and digest."""
        from runner.images.inspect import fingerprint_of
        from runner.images.podman_store import podman_attrs

        try:
            attrs = podman_attrs(self, image_id)
        except EngineError as e:
            return {"podman_error": e.describe()}
        if attrs is None:
            return {"podman_error": f"no image {image_id} in podman's storage"}
        return fingerprint_of(attrs) | {"podman_id": attrs["Id"], "podman_digest": attrs.get("Digest"),
                                        "podman_size": attrs.get("Size")}

    def _load_from_docker(self, image_id: str) -> None:
        from runner.engine.docker_client import api_errors

        with tempfile.TemporaryFile() as out:  # podman's messages; a file, so a full pipe never blocks the load
            load = subprocess.Popen([self.podman, "load"], stdin=subprocess.PIPE, stdout=out, stderr=subprocess.STDOUT,
                                    cwd=work_dir())
            try:
                with api_errors(f"saving image {image_id[:19]} from Docker"):
                    for chunk in self.docker.images.get(image_id).save(named=False):
                        load.stdin.write(chunk)
                load.stdin.close()
                load.wait(timeout=LOAD_TIMEOUT_S)
            except BaseException:
                load.kill()
                load.wait()
                raise
            out.seek(0)
            said = out.read().decode("utf-8", "replace")
        if load.returncode != 0:
            raise EngineError(f"`podman load` of image {image_id[:19]} failed: {_tail(said)}",
                              fix="check podman's storage (`podman info`)")

    # -- describe-only workload commands -----------------------------------------------------
    def workload_tool(self, image_id: str, argv: list[str], code_dir: Path, timeout: float = 600) -> str:
        """stdout of `python3 -m runner.workload ...` (info, models) in `image_id`, locked down like a run;
        always removed. Raises EngineError on a non-zero exit."""
        name = f"runner-tool-{uuid.uuid4().hex[:12]}"
        args = ["run", "--name", name, *user_options(self.host()), "--network", "none", "--cap-drop", "ALL",
                "--security-opt", "no-new-privileges", "--read-only", "--read-only-tmpfs=false",
                "--tmpfs", "/tmp:rw,size=256m", *_ulimits(None), *UNSET_ENV, "--label", f"{LABEL_TOOL}=1",
                "--volume", f"{_check_path((code_dir / 'runner').resolve())}:{CODE_MOUNT}/runner:ro",
                *[a for k, v in workload_env(None, CODE_MOUNT, "/tmp").items() for a in ("--env", f"{k}={v}")],
                "--entrypoint", "python3", image_id, *argv]
        try:
            proc = self.cli(*args, check=False, timeout=timeout)
        finally:
            self.cli("rm", "--force", name, check=False)
        if proc.returncode != 0:
            raise EngineError(f"`python3 {' '.join(argv)}` in {image_id[:19]} exited {proc.returncode}: "
                              f"{_tail(proc.stderr)}", fix="check the image: runner images verify")
        return proc.stdout

