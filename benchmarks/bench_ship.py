"""What `execution.ship_images` costs: the session's archive and the node's load, measured.

1. The session, first time: the image exported from Docker to `<cache>/images/<id>.tar` (+ sha256).
2. The session, every later time: the cache entry found and checked (its image id read from the
   archive's config; the bytes are not hashed on the host).
3. A node that holds the image: the engine asked for the id (Docker, podman).
4. A node that lacks it: the archive checked (members, sha256, image id) and loaded into an empty
   podman storage of this benchmark's own (CONTAINERS_STORAGE_CONF), with the load's s/GiB.

Run: .venv/bin/python benchmarks/bench_ship.py [--image runner/pytorch-cpu:2.13.0] [--rounds 3]
Needs a Docker engine holding the image (`runner images build pytorch-cpu`) and Debian's podman.
No target: the figures go into docs/slurm.md beside the Slurm job's fixed cost.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from runner.engine.docker_client import connect  # noqa: E402
from runner.engine.docker_engine import DockerEngine  # noqa: E402
from runner.engine.podman_engine import PodmanEngine  # noqa: E402
from runner.executor.image_ship import deliver, ship_image  # noqa: E402
from runner.images.archive import export_image  # noqa: E402


def timed(fn, *args):
    t0 = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t0


def one_round(client, image_id: str, tmp: Path) -> dict:
    """From nothing: export (cold), reuse (warm, 5x), load into an empty podman storage, find it (5x)."""
    folder = tmp / "cache" / "images"

    def export(i: str, out: Path):
        return export_image(client, i, out)

    shipped, cold = timed(ship_image, export, image_id, folder)
    warm = []
    for _ in range(5):
        again, t = timed(ship_image, export, image_id, folder)
        assert again.reused
        warm.append(t)
    storage = tmp / "podman"
    storage.mkdir()
    conf = storage / "storage.conf"
    conf.write_text(f'[storage]\ndriver = "overlay"\ngraphroot = "{storage}/graph"\nrunroot = "{storage}/run"\n')
    os.environ["CONTAINERS_STORAGE_CONF"] = str(conf)  # podman's CLI calls inherit it
    try:
        podman = PodmanEngine.connect()
        facts = deliver(podman, image_id, shipped.path)
        assert facts["source"] == "archive", facts
        present = [timed(deliver, podman, image_id, shipped.path)[1] for _ in range(5)]
    finally:
        subprocess.run(["podman", "rmi", "--all", "--force"], capture_output=True, timeout=600)
        del os.environ["CONTAINERS_STORAGE_CONF"]
        shutil.rmtree(storage, ignore_errors=True)
        shutil.rmtree(folder.parent, ignore_errors=True)
    return {"cold": cold, "warm": warm, "load": facts["load_s"], "present": present, "size": shipped.size}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--image", default="runner/pytorch-cpu:2.13.0", help="a Docker image (tag or id)")
    p.add_argument("--rounds", type=int, default=3, help="cold export + load rounds (each from nothing)")
    args = p.parse_args()
    client = connect()
    try:
        image_id = client.images.get(args.image).id
    except Exception as e:  # noqa: BLE001 - said, benchmark ends
        print(f"no image {args.image} on the Docker engine ({type(e).__name__}); build it: "
              "runner images build pytorch-cpu --base local/debian:bookworm")
        return 2
    with tempfile.TemporaryDirectory(prefix="bench-ship-") as tmp:
        rounds = [one_round(client, image_id, Path(tmp) / str(r)) for r in range(args.rounds)]
    docker_engine = DockerEngine(client)
    docker_has = [timed(docker_engine.has_image, image_id)[1] for _ in range(5)]
    cold, loads = [r["cold"] for r in rounds], [r["load"] for r in rounds]
    warm = [t for r in rounds for t in r["warm"]]
    present = [t for r in rounds for t in r["present"]]
    size = rounds[0]["size"]
    gib = size / 2**30
    med = statistics.median
    print(f"ship_images, image {args.image} ({image_id[:19]}, archive {size / 2**20:,.0f} MiB), "
          f"{args.rounds} rounds, load average {os.getloadavg()[0]:.1f}, {os.cpu_count()} CPUs")
    print(f"  session, first time (docker save to the cache): {med(cold):6.1f} s  "
          f"(rounds {' '.join(f'{x:.1f}' for x in cold)}; {gib / med(cold):.2f} GiB/s)")
    print(f"  session, archive reused (id read from its config): {med(warm) * 1e3:6.1f} ms")
    print(f"  node holds the image (engine asked for the id): docker {med(docker_has) * 1e3:.1f} ms, "
          f"podman {med(present) * 1e3:.1f} ms")
    print(f"  node lacks it (checked + podman load into an empty storage): {med(loads):6.1f} s  "
          f"(rounds {' '.join(f'{x:.1f}' for x in loads)}; {med(loads) / gib:.1f} s/GiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
