"""fetch against a local http.server: resume with Range, checksum before rename, offline errors."""

from __future__ import annotations

import hashlib
import socket

import pytest

from runner.data.fetch import fetch
from runner.data.sources import open_source
from runner.errors import DatasetError
from tests.data.range_server import RangeServer


@pytest.fixture
def server(synth10_master):
    s = RangeServer(synth10_master.archive.read_bytes())
    yield s
    s.close()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_download_verifies_and_renames(server, tmp_path):
    seen = []
    path = fetch("cifar10", tmp_path, url=server.url, sha256=_sha(server.payload), progress=lambda d, t: seen.append(d))
    assert path == tmp_path / "cifar-10-python.tar.gz" and path.read_bytes() == server.payload
    assert not (tmp_path / "cifar-10-python.tar.gz.part").exists()
    assert seen[-1] == len(server.payload) and server.ranges == [None]
    # the downloaded archive reads like any other (the checksum is taken from the caller here)
    (tmp_path / "cifar-10-python.tar.gz.sha256").write_text(f"{_sha(server.payload)}  cifar-10-python.tar.gz\n")
    assert open_source(path).read().train_x.shape == (60, 32, 32, 3)


def test_an_interrupted_download_resumes_with_a_range_request(server, tmp_path):
    server.cut_first = 1
    path = fetch("cifar10", tmp_path, url=server.url, sha256=_sha(server.payload))
    assert path.read_bytes() == server.payload
    half = len(server.payload) // 2
    assert server.ranges == [None, f"bytes={half}-"]


def test_interrupted_every_time_keeps_the_part_and_the_next_call_resumes(server, tmp_path):
    server.cut_first = 10
    with pytest.raises(DatasetError) as exc:
        fetch("cifar10", tmp_path, url=server.url, sha256=_sha(server.payload), retries=1)
    line = exc.value.describe()
    assert "interrupted" in line and "run the same fetch again to resume" in line and "\n" not in line
    part = tmp_path / "cifar-10-python.tar.gz.part"
    kept = part.stat().st_size
    assert 0 < kept < len(server.payload)
    assert not (tmp_path / "cifar-10-python.tar.gz").exists()
    server.cut_first = 0
    server.ranges.clear()
    path = fetch("cifar10", tmp_path, url=server.url, sha256=_sha(server.payload))
    assert path.read_bytes() == server.payload and server.ranges == [f"bytes={kept}-"]


def test_a_server_ignoring_range_restarts_the_part(server, tmp_path):
    (tmp_path / "cifar-10-python.tar.gz.part").write_bytes(b"stale bytes from elsewhere")
    server.ignore_range = True
    path = fetch("cifar10", tmp_path, url=server.url, sha256=_sha(server.payload))
    assert path.read_bytes() == server.payload


def test_a_complete_part_is_finished_without_new_bytes(server, tmp_path):
    (tmp_path / "cifar-10-python.tar.gz.part").write_bytes(server.payload)
    path = fetch("cifar10", tmp_path, url=server.url, sha256=_sha(server.payload))
    assert path.read_bytes() == server.payload and server.ranges == [f"bytes={len(server.payload)}-"]


def test_wrong_checksum_removes_the_part_and_never_renames(server, tmp_path):
    with pytest.raises(DatasetError, match="does not match the expected checksum"):
        fetch("cifar10", tmp_path, url=server.url, sha256="0" * 64)
    assert list(tmp_path.iterdir()) == []


def test_default_check_is_the_official_md5(server, tmp_path):
    with pytest.raises(DatasetError, match="expected checksum"):
        fetch("cifar10", tmp_path, url=server.url)  # a synthetic archive is not the official one
    assert list(tmp_path.iterdir()) == []


def test_an_existing_verified_archive_needs_no_network(server, tmp_path):
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(server.payload)
    path = fetch("cifar10", tmp_path, url="http://127.0.0.1:9/never", sha256=_sha(server.payload))
    assert path.read_bytes() == server.payload
    with pytest.raises(DatasetError, match="already exists but does not match"):
        fetch("cifar10", tmp_path, url="http://127.0.0.1:9/never", sha256="1" * 64)


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_offline_is_one_clear_line(tmp_path):
    with pytest.raises(DatasetError) as exc:
        fetch("cifar10", tmp_path, url=f"http://127.0.0.1:{_closed_port()}/cifar-10-python.tar.gz")
    line = exc.value.describe()
    assert line.count("\n") == 0 and "cannot download" in line and "offline?" in line and "fix:" in line


def test_http_errors_and_unfetchable_datasets(server, tmp_path):
    with pytest.raises(DatasetError, match="HTTP 404"):
        fetch("cifar10", tmp_path, url=server.url.replace("cifar-10", "missing"))
    with pytest.raises(DatasetError, match="cannot be fetched"):
        fetch("imagenet", tmp_path)
    with pytest.raises(DatasetError, match="64 hex digits"):
        fetch("cifar10", tmp_path, url=server.url, sha256="abc")
