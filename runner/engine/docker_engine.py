"""The docker engine: one run in its framework image, locked down.

The container is described once for every container engine (`sandbox.py`): network off, all
capabilities dropped, no-new-privileges, read-only root filesystem with a
tmpfs for scratch, the dataset and the workload code mounted read-only, only the run's output
folder writable, never root inside. Containers carry the bundle and run ids as labels and are
always removed, also on Ctrl-C.
"""

from __future__ import annotations

import contextlib
import math
import time
from pathlib import Path

from runner.engine.base import STOP_GRACE_S, Launch, RunOutcome, RunRequest, classify_exit, workload_env
from runner.engine.docker_client import api_errors, short_reason
from runner.engine.sandbox import (  # noqa: F401 - re-exported: tests and tools import them from here
    CODE_MOUNT,
    CONFIG_MOUNT,
    DATA_MOUNT,
    LABEL_BUNDLE,
    LABEL_RUN,
    LABEL_TOOL,
    OUT_MOUNT,
    TMPFS,
    UNPRIVILEGED_UID,
    WEIGHTS_MOUNT,
    container_launch,
    container_user,
    give_output_to_container,
    take_output_back,
)
from runner.errors import EngineError


def _bytes(size: str | None) -> str | None:
    return size.lower() if size else None


class DockerRun:
    def __init__(self, engine: DockerEngine, launch: Launch, container) -> None:
        self._engine, self._launch, self._container = engine, launch, container
        self._started = time.monotonic()
        self._killed: str | None = None
        self._stop_sent = False
        self._exit: int | None = None

    @property
    def sample_target(self):
        return self._container

    def poll(self) -> int | None:
        if self._exit is None:
            with api_errors(f"asking the engine about container {self._container.short_id}"):
                self._container.reload()
            state = self._container.attrs["State"]
            if state["Status"] in ("exited", "dead"):
                self._exit = int(state["ExitCode"])
        return self._exit

    def kill(self, reason: str) -> None:
        """SIGTERM (the workload records run_end "interrupted"), SIGKILL after the grace period.

        A container already gone is fine; any other engine error is raised as EngineError.
        """
        import docker.errors

        self._killed = self._killed or reason
        self._stop_sent = True
        with api_errors(f"stopping container {self._container.short_id}"):
            try:
                self._container.stop(timeout=int(math.ceil(self._engine.stop_grace_s)))
            except docker.errors.NotFound:
                pass  # already removed

    def finish(self) -> RunOutcome:
        """Wait (bounded) for the exit, collect the log, always remove the container."""
        try:
            exit_code = self._wait()
            with api_errors(f"reading container {self._container.short_id}"):
                self._container.reload()
                oom = bool(self._container.attrs["State"].get("OOMKilled"))
                log = self._container.logs(stdout=True, stderr=True).decode("utf-8", "replace")
        finally:
            left = self._remove()
            take_output_back(self._launch)
        if self._stop_sent and exit_code == 137 and not oom and "SIGKILL" not in (self._killed or ""):
            self._note(f"did not stop within {self._engine.stop_grace_s:g} s of SIGTERM: killed (SIGKILL)")
        reason = classify_exit(exit_code, self._killed, oom)
        extra: dict = {"oom_killed": oom}
        if left:  # the run's result stands; the leftover is recorded with it (and in a failed run's reason)
            extra["container_left"] = left
            reason = f"{reason}; {left}" if reason else None
        return RunOutcome(exit_code=exit_code, reason=reason, log=log,
                          wall_s=time.monotonic() - self._started, container_id=self._container.id, extra=extra)

    def _wait(self) -> int:
        """The exit code. A container still running after the grace period is killed (SIGKILL),
        and the run's reason says so; one that survives SIGKILL too is an EngineError."""
        import docker.errors

        grace = self._engine.stop_grace_s
        code = self._wait_once(grace)
        if code is not None:
            return code
        self._note(f"still running {grace:g} s after it should have ended: killed (SIGKILL)")
        with api_errors(f"killing container {self._container.short_id}"):
            try:
                self._container.kill()
            except docker.errors.NotFound:
                pass
            except docker.errors.APIError as e:
                if e.status_code != 409:  # 409: not running any more
                    raise
        code = self._wait_once(grace)
        if code is None:
            raise EngineError(f"container {self._container.short_id} did not exit {grace:g} s after SIGKILL",
                              fix="check the engine (`docker ps`, `runner doctor`); remove it with docker rm -f")
        return code

    def _note(self, note: str) -> None:
        self._killed = f"{self._killed}; {note}" if self._killed else note

    def _wait_once(self, timeout: float) -> int | None:
        """The exit code, or None when the container is still running after `timeout` seconds."""
        import requests.exceptions

        with api_errors(f"waiting for container {self._container.short_id}"):
            try:
                result = self._container.wait(timeout=timeout)
            except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError) as e:
                if "timed out" not in str(e).lower():
                    raise  # the engine is gone: api_errors makes it an EngineError
                return None
        return int(result.get("StatusCode", -1))

    def _remove(self) -> str | None:
        """Remove the container; a note for the run's reason when the engine refused."""
        import docker.errors
        import requests.exceptions

        try:
            self._container.remove(force=True)
        except docker.errors.NotFound:
            pass
        except (docker.errors.APIError, requests.exceptions.RequestException) as e:
            return f"container {self._container.short_id} could not be removed ({short_reason(e)})"
        return None


class DockerEngine:
    name = "docker"
    isolated = True

    def __init__(self, client, stop_grace_s: float = STOP_GRACE_S) -> None:
        self.client = client
        self.stop_grace_s = stop_grace_s  # SIGTERM -> SIGKILL, and how long finish() waits for an exit

    def describe(self) -> dict:
        with api_errors("asking the engine for its version"):
            version = self.client.version()
        return {"kind": "docker", "isolated": True, "version": version.get("Version"),
                "api_version": version.get("ApiVersion")}

    @property
    def docker(self):
        """The client images are built with (runner.images)."""
        return self.client

    def sampler_kwargs(self, target: object) -> dict:
        return {"container": target}  # Docker's stats API

    def workload_tool(self, image_id: str, argv: list[str], code_dir: Path, timeout: float = 600) -> str:
        """stdout of a describe-only workload command (info, models) in the image; see run_workload_tool."""
        return run_workload_tool(self.client, image_id, argv, code_dir, timeout)

    def remove_leftovers(self, bundle_id: str) -> int:
        return remove_containers(self.client, bundle_id)

    def has_image(self, image_id: str) -> bool:
        import docker.errors

        with api_errors(f"looking up image {image_id[:19]}"):  # other API errors: one EngineError line
            try:
                self.client.images.get(image_id)
            except docker.errors.ImageNotFound:
                return False
        return True

    def load_archive(self, path: Path, expect_id: str) -> str:
        """Load a docker-archive tarball after checking it (runner.images.archive); the loaded ID."""
        from runner.images.archive import import_image

        return import_image(self.client, path, expect_id).image_id

    def launch(self, request: RunRequest) -> Launch:
        return container_launch(request, self.name)

    def start(self, request: RunRequest) -> DockerRun:
        return self.run(self.launch(request))

    def run(self, launch: Launch) -> DockerRun:
        import docker.errors
        from docker.types import DeviceRequest

        uid, gid = container_user()
        give_output_to_container(launch)
        devices = [DeviceRequest(device_ids=[str(i) for i in launch.devices], capabilities=[["gpu"]])] \
            if launch.devices else None
        lim = launch.limits
        kwargs = {
            "image": launch.image,
            "entrypoint": [launch.argv[0]],
            "command": list(launch.argv[1:]),
            "user": f"{uid}:{gid}",
            "network_mode": "none",
            "cap_drop": ["ALL"],
            "security_opt": ["no-new-privileges"],
            "read_only": True,
            "tmpfs": dict(TMPFS),
            "shm_size": _bytes(lim.shm),
            "mem_limit": _bytes(lim.memory),
            "nano_cpus": int(lim.cpus * 1e9) if lim.cpus else None,
            "pids_limit": lim.pids,
            "device_requests": devices,
            "environment": dict(launch.env),
            "working_dir": launch.workdir,
            "labels": dict(launch.labels),
            "volumes": {str(m.source): {"bind": m.target, "mode": "ro" if m.read_only else "rw"}
                        for m in launch.mounts},
        }
        with api_errors(f"creating the container of run {launch.run_id}", fix="check `runner doctor`"):
            try:
                container = self.client.containers.create(**{k: v for k, v in kwargs.items() if v is not None})
            except docker.errors.ImageNotFound:
                raise EngineError(f"image {launch.image} is not on this engine",
                                  fix="runner images build (or runner images import)") from None
        try:
            with api_errors(f"starting the container of run {launch.run_id}", fix="check `runner doctor`"):
                container.start()
        except EngineError:
            with contextlib.suppress(docker.errors.DockerException, OSError):
                container.remove(force=True)  # created, never started: leave nothing behind
            raise
        return DockerRun(self, launch, container)


def run_workload_tool(client, image_id: str, argv: list[str], code_dir: Path, timeout: float = 600) -> str:
    """stdout of `python3 -m runner.workload ...` in `image_id`, locked down like a run.

    For the workload's describe-only commands (`info`, `models`): no data, no output folder;
    `code_dir` holds the `runner` package to mount read-only. Waits at most `timeout` seconds and
    always removes the container (docker-py's `containers.run(remove=True)` leaves it behind when
    the start fails or the wait times out). Raises the SDK's errors (ContainerError on a non-zero exit).
    """
    import docker.errors
    import requests.exceptions

    uid, gid = container_user()
    container = client.containers.create(
        image_id, entrypoint=["python3"], command=argv, network_mode="none", user=f"{uid}:{gid}",
        cap_drop=["ALL"], security_opt=["no-new-privileges"], read_only=True, tmpfs={"/tmp": "rw,size=256m"},
        environment=workload_env(None, CODE_MOUNT, "/tmp"), labels={LABEL_TOOL: "1"},
        volumes={str((code_dir / "runner").resolve()): {"bind": f"{CODE_MOUNT}/runner", "mode": "ro"}})
    try:
        container.start()
        status = int(container.wait(timeout=timeout).get("StatusCode", -1))
        if status != 0:
            err = container.logs(stdout=False, stderr=True)
            raise docker.errors.ContainerError(container, status, argv, image_id, err)
        return container.logs(stdout=True, stderr=False).decode("utf-8", "replace")
    finally:
        with contextlib.suppress(docker.errors.DockerException, requests.exceptions.RequestException):
            container.remove(force=True)


def remove_containers(client, bundle_id: str) -> int:
    """Remove every container of a bundle (after an interruption); returns how many."""
    import docker.errors

    with api_errors("removing the containers of an interrupted run"):
        containers = client.containers.list(all=True, filters={"label": f"{LABEL_BUNDLE}={bundle_id}"})
        for c in containers:
            try:
                c.remove(force=True)
            except docker.errors.NotFound:
                pass  # removed meanwhile (its run's finish() got there first)
    return len(containers)
