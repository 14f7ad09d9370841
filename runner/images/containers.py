"""Run one short command in an image and collect its output (verification, resolution, checks).

A container is created, started, waited for and always removed; stdout and stderr come back
separately. The network is off unless the caller needs the Debian archive.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from runner.engine.docker_client import api_errors

if TYPE_CHECKING:
    import docker


@dataclass(frozen=True)
class CommandResult:
    exit_code: int
    stdout: str
    stderr: str

    def tail(self, lines: int = 5) -> str:
        text = (self.stderr.strip() or self.stdout.strip()).splitlines()
        return " | ".join(text[-lines:])


def run_command(client: docker.DockerClient, image: str, argv: list[str], *, network: str = "none",
                timeout: float = 1800, environment: dict[str, str] | None = None) -> CommandResult:
    """Run `argv` (no shell unless argv asks for one) in `image`; never raises on a non-zero exit."""
    with api_errors(f"running {argv[0]} in {image}"):
        container = client.containers.create(image, command=argv, entrypoint=[], network_mode=network,
                                             environment=environment or {}, detach=True)
    try:
        with api_errors(f"running {argv[0]} in {image}"):
            container.start()
            status = container.wait(timeout=timeout)
            stdout = container.logs(stdout=True, stderr=False).decode("utf-8", "replace")
            stderr = container.logs(stdout=False, stderr=True).decode("utf-8", "replace")
        return CommandResult(int(status.get("StatusCode", -1)), stdout, stderr)
    finally:
        try:
            container.remove(force=True)
        except Exception:  # noqa: BLE001 - removal is best effort; the result (or error) matters more
            pass
