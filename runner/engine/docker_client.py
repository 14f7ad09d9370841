"""The host's one way to the container engine: the Docker SDK for Python.

`connect()` returns a client or raises EngineError naming the fix. The helpers below are
what other parts reuse: the engine's version and facts (for fingerprints and `doctor`),
the engine's platform, and `api_errors()`, which turns the SDK's exceptions into EngineError
so no docker exception escapes to the CLI.

The SDK is imported inside the functions: `runner --help` must not pay for it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from runner.errors import EngineError

if TYPE_CHECKING:
    import docker

# Seconds one HTTP request to the engine may stay silent. Builds, saves and loads stream for
# minutes (a TensorFlow wheel install prints nothing for a minute), so the default is generous;
# an engine that is not running fails at once whatever this says.
DEFAULT_TIMEOUT = 600

START_ENGINE_FIX = (
    "start dockerd (as root: `dockerd >/var/log/dockerd.log 2>&1 &`, then wait for "
    "/var/run/docker.sock) or set DOCKER_HOST to a running engine"
)

# `uname -m` / Go architecture names -> the platform names images carry.
_ARCH_ALIASES = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64",
                 "ppc64le": "ppc64le", "ppc64el": "ppc64le", "s390x": "s390x"}


def normalize_arch(name: str) -> str:
    """`x86_64` -> `amd64`, `ppc64el` -> `ppc64le`; unknown names pass through."""
    return _ARCH_ALIASES.get(name, name)


def short_reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= 240 else text[:237] + "..."


def connect(timeout: float = DEFAULT_TIMEOUT, base_url: str | None = None,
            answer_within: float | None = None) -> docker.DockerClient:
    """A client for the engine at `base_url` (default: DOCKER_HOST, else the local socket).

    answer_within: seconds the first ping may take (a quick "no engine" where none runs); the
    client's requests afterwards may stay silent for `timeout` (a 1 GB `docker save` on a busy
    machine is silent for longer than a ping should be: with one short timeout for both,
    `--ship-images` failed its export on a loaded 2-core machine). Raises EngineError with the fix
    when nothing answers.
    """
    import docker
    import docker.errors

    where = base_url or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    first = int(answer_within if answer_within is not None else timeout)
    try:
        if base_url is not None:
            client = docker.DockerClient(base_url=base_url, timeout=first)
        else:
            client = docker.from_env(timeout=first)
        client.ping()
        client.api.timeout = int(timeout)  # the SDK reads it on every request
    except docker.errors.DockerException as e:
        raise EngineError(f"no container engine answers at {where}: {short_reason(e)}",
                          fix=START_ENGINE_FIX) from None
    except OSError as e:  # requests' connection errors are OSErrors
        raise EngineError(f"no container engine answers at {where}: {short_reason(e)}",
                          fix=START_ENGINE_FIX) from None
    return client


@contextmanager
def api_errors(action: str, fix: str | None = None) -> Iterator[None]:
    """Turn the SDK's errors inside the block into one EngineError: '<action> failed: ...'."""
    import docker.errors
    import requests.exceptions

    try:
        yield
    except docker.errors.APIError as e:
        reason = e.explanation if isinstance(e.explanation, str) else str(e)
        raise EngineError(f"{action} failed: {short_reason(Exception(reason))}", fix=fix) from None
    except (docker.errors.DockerException, requests.exceptions.RequestException) as e:
        raise EngineError(f"{action} failed: {short_reason(e)}", fix=fix or START_ENGINE_FIX) from None


@dataclass(frozen=True)
class EngineInfo:
    """The engine facts a fingerprint records."""

    name: str
    version: str
    api_version: str
    os: str
    arch: str
    kernel: str | None
    storage_driver: str | None
    cgroup_version: str | None
    runtimes: tuple[str, ...]
    default_runtime: str | None
    cpus: int | None
    memory_bytes: int | None

    @property
    def platform(self) -> str:
        return f"{self.os}/{self.arch}"

    def as_dict(self) -> dict[str, object]:
        out = {k: getattr(self, k) for k in self.__dataclass_fields__}
        out["runtimes"] = list(self.runtimes)
        out["platform"] = self.platform
        return out


def engine_info(client: docker.DockerClient) -> EngineInfo:
    """Version and facts of the engine behind `client`."""
    with api_errors("asking the engine for its version"):
        version = client.version()
        info = client.info()
    return EngineInfo(
        name="docker",
        version=str(version.get("Version", "")),
        api_version=str(version.get("ApiVersion", "")),
        os=str(version.get("Os", "linux")),
        arch=normalize_arch(str(version.get("Arch", ""))),
        kernel=version.get("KernelVersion"),
        storage_driver=info.get("Driver"),
        cgroup_version=info.get("CgroupVersion"),
        runtimes=tuple(sorted((info.get("Runtimes") or {}).keys())),
        default_runtime=info.get("DefaultRuntime"),
        cpus=info.get("NCPU"),
        memory_bytes=info.get("MemTotal"),
    )
