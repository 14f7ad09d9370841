"""execution.ship_images without a cluster: the spec field and flag, the archive cache the session
keeps (reuse, replacement of a damaged entry, hostile files in its place), and the node side
(load only when missing, once per node, a wrong or broken archive is a failed run). The real
engines and the real cluster: test_slurm_ship_images.py."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import tempfile
import threading
import time
from pathlib import Path

import pytest

from runner.engine.base import Launch, Mount
from runner.errors import ImageError, SpecError, UsageError
from runner.executor.image_ship import archive_path, deliver, ship_image
from runner.executor.slurm_batch import JobShape, SlurmSettings, job_time
from runner.images.archive import Exported
from tests.helpers import plan_with_execution


def test_ship_images_is_a_slurm_setting_recorded_with_the_executor(tmp_path):
    plan = plan_with_execution(tmp_path, {"engine": "podman", "executor": "slurm", "ship_images": True})
    settings = SlurmSettings.from_execution(plan.experiment.execution)
    assert settings.ship_images is True
    assert settings.describe()["ship_images"] is True  # environment/executor.json's sbatch section
    assert SlurmSettings().describe()["ship_images"] is False  # said either way


@pytest.mark.parametrize(("execution", "says"), [
    ({"ship_images": True}, "applies to the Slurm executor only"),
    ({"engine": "local", "executor": "slurm", "ship_images": True}, "engine: local` runs none"),
    ({"engine": "docker", "executor": "slurm", "ship_images": "sometimes"}, "execution.ship_images"),
])
def test_ship_images_where_it_cannot_take_effect_is_refused_at_plan_time(tmp_path, execution, says):
    with pytest.raises(SpecError) as e:
        plan_with_execution(tmp_path, execution)
    line = e.value.describe()
    assert says in line and "\n" not in line


def test_the_flag_goes_through_the_spec_model(tmp_path):
    from runner.executor.choose import ExecutionFlags

    inline = plan_with_execution(tmp_path, {"engine": "docker"}).experiment.execution
    with pytest.raises(UsageError, match="applies to the Slurm executor only") as e:
        ExecutionFlags(ship_images=True).apply(inline)
    assert e.value.describe().startswith("--ship-images: ")  # the flag the user gave is named
    slurm = ExecutionFlags(executor="slurm", ship_images=True).apply(inline)
    assert slurm.ship_images and slurm.executor == "slurm"
    assert ExecutionFlags(ship_images=False).apply(slurm).ship_images is False  # --no-ship-images


def test_the_job_time_leaves_room_for_a_load():
    shape = JobShape(cpus=1, mem_mb=None, gpus=0, time_s=300)
    assert job_time(SlurmSettings(), shape) == "7"  # 300 s + 120 s
    assert job_time(SlurmSettings(ship_images=True), shape) == "12"  # + 300 s for the archive's load
    assert job_time(SlurmSettings(time="1:00:00", ship_images=True), shape) == "1:00:00"  # the user's own


def test_the_launch_carries_its_archive_to_the_node(tmp_path):
    launch = Launch(run_id="r", bundle_id="b", engine="podman", argv=("python3",), env={},
                    mounts=(Mount(tmp_path, "/out", False),), out_dir=tmp_path, image="sha256:" + "a" * 64,
                    image_archive="/shared/cache/images/" + "a" * 64 + ".tar")
    assert Launch.from_dict(json.loads(json.dumps(launch.as_dict()))) == launch
    old = launch.as_dict()
    del old["image_archive"]  # a task file written before the field existed
    assert Launch.from_dict(old).image_archive is None


# --- the archive cache (host side) ---------------------------------------------------------------

def _docker_archive(config: bytes) -> tuple[bytes, str]:
    """A minimal docker-archive (manifest.json + config) and its image id."""
    digest = hashlib.sha256(config).hexdigest()
    manifest = json.dumps([{"Config": f"{digest}.json", "RepoTags": ["t/x:1"], "Layers": []}]).encode()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in (("manifest.json", manifest), (f"{digest}.json", config)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue(), f"sha256:{digest}"


class FakeExport:
    """Writes what `runner images export` writes: the tarball and its sha256 file."""

    def __init__(self, archives: dict[str, bytes]) -> None:
        self.archives, self.calls = archives, []

    def __call__(self, image_id: str, out: Path) -> Exported:
        self.calls.append(image_id)
        if out.exists():
            raise UsageError("the output file exists; export never overwrites", file=out)
        data = self.archives[image_id]
        out.write_bytes(data)
        digest = hashlib.sha256(data).hexdigest()
        out.with_name(out.name + ".sha256").write_text(f"{digest}  {out.name}\n")
        return Exported(out, digest, image_id, len(data))


def test_an_image_is_written_once_and_reused_by_later_sessions(tmp_path):
    data, image_id = _docker_archive(b'{"a": 1}')
    export = FakeExport({image_id: data})
    first = ship_image(export, image_id, tmp_path / "images")
    assert not first.reused and first.path == archive_path(tmp_path / "images", image_id)
    assert first.sha256 == hashlib.sha256(data).hexdigest() and first.size == len(data)
    again = ship_image(export, image_id, tmp_path / "images")
    assert again.reused and again.sha256 == first.sha256 and export.calls == [image_id]
    assert first.facts() == {"file": first.path.name, "sha256": first.sha256, "size": len(data)}


@pytest.mark.parametrize("damage", ["other image", "garbage", "no sha256 file", "symlink", "fifo"])
def test_a_damaged_or_hostile_cache_entry_is_replaced_never_followed(tmp_path, damage):
    data, image_id = _docker_archive(b'{"a": 1}')
    other, _ = _docker_archive(b'{"b": 2}')
    folder = tmp_path / "images"
    folder.mkdir()
    path = archive_path(folder, image_id)
    sidecar = path.with_name(path.name + ".sha256")
    outside = tmp_path / "outside.tar"
    outside.write_bytes(other)
    if damage == "other image":
        path.write_bytes(other)
        sidecar.write_text(hashlib.sha256(other).hexdigest() + "\n")
    elif damage == "garbage":
        path.write_bytes(b"\0" * 10_000)
        sidecar.write_text("0" * 64 + "\n")
    elif damage == "no sha256 file":
        path.write_bytes(data)
    elif damage == "symlink":
        path.symlink_to(outside)
        sidecar.write_text(hashlib.sha256(other).hexdigest() + "\n")
    elif damage == "fifo":
        os.mkfifo(path)
        os.mkfifo(sidecar)
    shipped = ship_image(FakeExport({image_id: data}), image_id, folder)
    assert not shipped.reused and path.read_bytes() == data and not path.is_symlink()
    assert outside.read_bytes() == other  # a link's target is never written through


def test_another_session_writing_the_same_archive_meanwhile_is_reused(tmp_path):
    data, image_id = _docker_archive(b'{"a": 1}')
    other_session = FakeExport({image_id: data})

    def racing(image_id_: str, out: Path) -> Exported:
        other_session(image_id_, out)  # the other one finished first ...
        return FakeExport({image_id: data})(image_id_, out)  # ... so ours is refused: never overwrites

    shipped = ship_image(racing, image_id, tmp_path)
    assert shipped.reused and shipped.path.read_bytes() == data


def test_not_an_image_id_is_refused():
    with pytest.raises(ImageError, match="is not an image id"):
        archive_path(Path("/x"), "sha256:../../etc/passwd")


# --- the node side ------------------------------------------------------------------------------

class FakeNodeEngine:
    def __init__(self, present: bool = False, loads_as: str | None = None, load_s: float = 0.0) -> None:
        self.present, self.loads_as, self.load_s, self.loads = present, loads_as, load_s, 0
        self.lock = threading.Lock()

    def has_image(self, image_id: str) -> bool:
        return self.present

    def load_archive(self, path: Path, expect_id: str) -> str:
        with self.lock:
            self.loads += 1
        time.sleep(self.load_s)
        self.present = True
        return self.loads_as or expect_id


IMAGE = "sha256:" + "c" * 64


def test_a_node_that_has_the_image_loads_nothing(tmp_path):
    engine = FakeNodeEngine(present=True)
    assert deliver(engine, IMAGE, tmp_path / "x.tar", tmp_path) == {"id": IMAGE, "source": "node storage"}
    assert engine.loads == 0


def test_a_node_that_lacks_it_loads_the_archive_once_for_all_its_tasks(tmp_path):
    engine = FakeNodeEngine(load_s=0.3)
    facts: list[dict] = []
    tasks = [threading.Thread(target=lambda: facts.append(deliver(engine, IMAGE, tmp_path / "x.tar", tmp_path)))
             for _ in range(3)]
    for t in tasks:
        t.start()
    for t in tasks:
        t.join()
    assert engine.loads == 1
    loaded = [f for f in facts if f["source"] == "archive"]
    assert len(loaded) == 1 and loaded[0]["archive"] == "x.tar" and loaded[0]["load_s"] >= 0.3
    assert sum(f["source"] == "node storage" for f in facts) == 2


def test_an_archive_that_loads_as_another_image_fails_the_run(tmp_path):
    with pytest.raises(ImageError, match="the run needs"):
        deliver(FakeNodeEngine(loads_as="sha256:" + "d" * 64), IMAGE, tmp_path / "x.tar", tmp_path)


def test_the_node_turns_a_load_failure_into_a_failed_outcome_naming_the_image(tmp_path, monkeypatch):
    import runner.executor.slurm_node as node

    class Broken(FakeNodeEngine):
        def load_archive(self, path: Path, expect_id: str) -> str:
            raise ImageError("not a docker-archive tarball (ReadError: bad)", file=path, fix="export it again")

    monkeypatch.setattr(node, "node_engine", lambda name: Broken())
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the node's lock file lands here
    launch = Launch(run_id="r", bundle_id="b", engine="docker", argv=("true",), env={}, mounts=(),
                    out_dir=tmp_path, image=IMAGE, image_archive=str(tmp_path / "x.tar"))
    outcome = node.run_here(launch, telemetry_hz=1.0)
    assert not outcome.ok
    assert outcome.reason.startswith("the node could not load the run's image from its archive: ")
    assert "not a docker-archive tarball" in outcome.reason and "\n" not in outcome.reason
    assert outcome.node == {"image": {"id": IMAGE, "source": "archive", "archive": "x.tar"}}
