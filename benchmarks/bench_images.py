"""Image figures: cold build vs an unchanged rebuild, and image size vs installed package size.

    .venv/bin/python benchmarks/bench_images.py [--base local/debian:bookworm] [NAME ...]

Cold: `runner images build --no-cache` (the engine's layer cache ignored, so apt and pip run
again; the host's wheel cache is warm, so no wheel is downloaded). Warm: the same build again
with nothing changed, which must hit the layer cache for every step (target: < 15 s).

Installed size: what the locked packages occupy once installed: `du` of the venv plus Debian's
Installed-Size of the pinned system packages. The image adds the base underneath; the ratio
image / (base + installed) says how much the build wastes (caches, a wheelhouse left in a layer,
duplicated files). Target for the CPU images: within 1.3x.
"""

from __future__ import annotations

import argparse
import time

from rich.console import Console
from rich.table import Table

from runner.engine.docker_client import connect
from runner.images.build import build_image
from runner.images.catalog import load_catalog
from runner.images.containers import run_command
from runner.images.lockfile import read_lockfile

MB = 1e6


def installed_bytes(client, image_id: str, debian: list[str]) -> tuple[int, int]:
    """(venv bytes, Debian system packages bytes) inside the image."""
    venv = run_command(client, image_id, ["du", "-sb", "/opt/venv"])
    venv_bytes = int(venv.stdout.split()[0])
    dpkg = run_command(client, image_id, ["dpkg-query", "-W", "-f", "${Installed-Size}\\n", *debian])
    debian_bytes = sum(int(x) for x in dpkg.stdout.split()) * 1024  # Installed-Size is in KiB
    return venv_bytes, debian_bytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", default=["pytorch-cpu", "tensorflow-cpu"])
    parser.add_argument("--base", default="local/debian:bookworm")
    args = parser.parse_args()

    client = connect()
    catalog = load_catalog()
    console = Console(width=140)
    rows = []
    for name in args.names:
        entry = catalog.get(name)
        lock = read_lockfile(entry.lockfile, name)
        console.print(f"[bold]{name}[/]: cold build (--no-cache) ...")
        t0 = time.perf_counter()
        build_image(client, entry, base=args.base, nocache=True)
        cold = time.perf_counter() - t0
        console.print(f"[bold]{name}[/]: rebuild, nothing changed ...")
        t0 = time.perf_counter()
        image_id = build_image(client, entry, base=args.base)
        warm = time.perf_counter() - t0
        image = client.images.get(image_id).attrs["Size"]
        base = client.images.get(args.base).attrs["Size"]
        venv, debian = installed_bytes(client, image_id, [p.package for p in lock.debian])
        rows.append((name, cold, warm, image, base, venv, debian))

    table = Table(title="runner images: build time and size", title_justify="left")
    for col in ("image", "cold build s", "unchanged rebuild s", "image MB", "base MB", "venv MB", "debian MB",
                "image/(base+installed)", "(image-base)/installed"):
        table.add_column(col, justify="left" if col == "image" else "right")
    for name, cold, warm, image, base, venv, debian in rows:
        installed = venv + debian
        table.add_row(name, f"{cold:.0f}", f"{warm:.1f}", f"{image / MB:.0f}", f"{base / MB:.0f}",
                      f"{venv / MB:.0f}", f"{debian / MB:.0f}", f"{image / (base + installed):.3f}",
                      f"{(image - base) / installed:.3f}")
    console.print(table)


if __name__ == "__main__":
    main()
