"""Which image each framework's runs use, built when missing (per the --build policy).

A framework with no image for the spec's variant (no catalog entry, or, under `--build never`, an
image that is missing or stale; or a build that failed) does not stop the sweep: its runs become
failed rows with the one-line reason, which names the fix (`runner images build NAME`).

The images live in Docker's storage, or, where podman runs alone (no Docker engine: the cluster
case), in podman's own (runner.images.podman_store.PodmanStore): the same pipeline builds, checks
and reuses them in either.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from rich.console import Console

from runner.errors import EngineError, ImageError
from runner.spec.plan import Plan

if TYPE_CHECKING:
    from pathlib import Path

    import docker

    from runner.executor.image_ship import Shipped
    from runner.images.store import ImageStore


@dataclass(frozen=True)
class ImageChoice:
    framework: str
    name: str | None  # catalog entry; None for the local engine
    image_id: str | None
    error: str | None = None  # why this framework's runs cannot start
    archive: Shipped | None = None  # execution.ship_images: where the nodes load it from


def resolve_images(engine: ImageStore | docker.DockerClient | None, plan: Plan, build: str, base: str | None,
                   console: Console, pinned: dict[str, str] | None = None) -> dict[str, ImageChoice]:
    """engine: the store the images live in (a Docker client, or an ImageStore; None: the local
    engine, no image). pinned: framework -> image id a bundle recorded; used as is when the store has it."""
    variant = plan.experiment.variant.value
    frameworks = [f.value for f in plan.experiment.frameworks]
    if engine is None:  # local engine: the host's own Python runs every framework
        return {fw: ImageChoice(fw, None, None) for fw in frameworks}
    from runner.images.build import ensure_image
    from runner.images.catalog import load_catalog
    from runner.images.store import as_store

    store = as_store(engine)
    where = "" if store.name == "docker" else f", in {store.name}'s storage"
    catalog = load_catalog()
    choices = {}
    for fw in frameworks:
        try:
            entry = catalog.for_run(fw, variant)
        except ImageError as e:
            choices[fw] = ImageChoice(fw, None, None, error=e.describe())
            console.print(f"[yellow]{fw}: {e.describe()}; its runs will be failed rows[/]")
            continue
        recorded = (pinned or {}).get(fw)
        try:
            if recorded and store.attrs(recorded) is not None:
                console.print(f"image {entry.name}: the recorded {recorded[:19]}{where}")
                choices[fw] = ImageChoice(fw, entry.name, recorded)
                continue
            image_id = ensure_image(store, entry, build, base,
                                    log=lambda line: console.print(f"  [dim]{line}[/]", highlight=False))
        except (ImageError, EngineError) as e:
            choices[fw] = ImageChoice(fw, entry.name, None, error=e.describe())
            console.print(f"[yellow]{fw}: {e.describe()}; its runs will be failed rows[/]")
            continue
        if recorded:
            console.print(f"[yellow]image {entry.name}: the recorded {recorded[:19]} is not in {store.name}'s "
                          f"storage; rebuilt from the lockfile as {image_id[:19]}"
                          f"{' (identical)' if image_id == recorded else ' (DIFFERENT: see the provenance diff)'}[/]")
        console.print(f"image {entry.name}: {image_id[:19]}{where}")
        choices[fw] = ImageChoice(fw, entry.name, image_id)
    return choices


def ship_images(engine: object, images: dict[str, ImageChoice], folder: Path,
                console: Console) -> dict[str, ImageChoice]:
    """Each resolved image written as an archive to `folder` (shared with the nodes), or reused
    from there (runner.executor.image_ship). An image that cannot be written: its runs are failed rows."""
    import dataclasses

    from runner.errors import RunnerError
    from runner.executor.image_ship import ship_image

    docker = getattr(engine, "docker", None)
    if docker is not None:  # Docker built it (engine docker, or podman beside Docker)
        from runner.images.archive import export_image

        def export(image_id: str, out: Path) -> object:
            return export_image(docker, image_id, out)
    else:  # podman alone: its own storage
        from runner.images.podman_store import export_from_podman

        def export(image_id: str, out: Path) -> object:
            return export_from_podman(engine, image_id, out)  # type: ignore[arg-type]

    shipped = dict(images)
    for fw, choice in images.items():
        if choice.error or choice.image_id is None:
            continue
        try:
            archive = ship_image(export, choice.image_id, folder)
        except (RunnerError, OSError) as e:
            reason = e.describe() if isinstance(e, RunnerError) else f"writing the image archive: {e}"
            shipped[fw] = dataclasses.replace(choice, error=f"ship_images: {reason}")
            console.print(f"[yellow]{fw}: {shipped[fw].error}; its runs will be failed rows[/]")
            continue
        shipped[fw] = dataclasses.replace(choice, archive=archive)
        console.print(f"image {choice.name}: archive for the nodes {'reused' if archive.reused else 'written'}, "
                      f"{archive.path.name[:16]}... ({archive.size / 2**20:,.0f} MiB)")
    return shipped
