"""`connect(answer_within=...)` bounds the first ping only: later requests may stay silent for the
client's `timeout` (a 1 GB `docker save` on a busy machine is). With one short timeout for both,
`runner reproduce --ship-images` failed its image export on a loaded 2-core machine ("Read timed
out. (read timeout=10)"). Against the real engine: a request that answers after ~4 s (the wait
for a container sleeping 4 s)."""

from __future__ import annotations

import time

import pytest
from images_helpers import LOCAL_BASE

from runner.engine.docker_client import connect

pytestmark = pytest.mark.docker


def _wait_for_sleeper(client) -> float:
    container = client.containers.run(LOCAL_BASE, ["sleep", "4"], detach=True)
    try:
        start = time.monotonic()
        response = client.api._post(client.api._url("/containers/{0}/wait", container.id))  # the client's timeout
        response.raise_for_status()
        return time.monotonic() - start
    finally:
        container.remove(force=True)


def test_a_short_answer_time_is_for_the_ping_not_for_every_request():
    assert _wait_for_sleeper(connect(timeout=30, answer_within=2)) > 2


def test_the_client_timeout_still_bounds_a_silent_request():
    with pytest.raises(Exception, match="timed out"):
        _wait_for_sleeper(connect(timeout=2))
