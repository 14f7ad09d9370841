"""The real-engine fixtures (the CPU images, built once per session) for the Slurm tests that run
containers through Slurm."""

from tests.reproduce.conftest import cpu_images, docker_client  # noqa: F401 - fixtures, used by name
