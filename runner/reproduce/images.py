"""Which image each framework's runs use, built when missing (per the --build policy).

A framework with no image for the spec's variant (no catalog entry, or, under `--build never`, an
image that is missing or stale; or a build that failed) does not stop the sweep: its runs become
failed rows with the one-line reason, which names the fix (`runner images build NAME`).

Where podman runs alone (no Docker engine: the cluster case), nothing is built: each framework's
image is the one podman holds under the catalog's tag, checked against the lockfile like Docker's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from rich.console import Console

from runner.errors import EngineError, ImageError, UsageError
from runner.spec.plan import Plan

if TYPE_CHECKING:
    from runner.engine.podman_engine import PodmanEngine


@dataclass(frozen=True)
class ImageChoice:
    framework: str
    name: str | None  # catalog entry; None for the local engine
    image_id: str | None
    error: str | None = None  # why this framework's runs cannot start


def _recorded(client, image_id: str) -> bool:
    import docker.errors

    try:
        client.images.get(image_id)
        return True
    except docker.errors.ImageNotFound:
        return False


def resolve_images(client, plan: Plan, build: str, base: str | None, console: Console,
                   pinned: dict[str, str] | None = None) -> dict[str, ImageChoice]:
    """pinned: framework -> image id a bundle recorded; used as is when the engine has it."""
    variant = plan.experiment.variant.value
    frameworks = [f.value for f in plan.experiment.frameworks]
    if client is None:  # local engine: the host's own Python runs every framework
        return {fw: ImageChoice(fw, None, None) for fw in frameworks}
    from runner.images.build import ensure_image
    from runner.images.catalog import load_catalog

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
        if recorded and _recorded(client, recorded):
            console.print(f"image {entry.name}: the recorded {recorded[:19]}")
            choices[fw] = ImageChoice(fw, entry.name, recorded)
            continue
        try:
            image_id = ensure_image(client, entry, build, base,
                                    log=lambda line: console.print(f"  [dim]{line}[/]", highlight=False))
        except ImageError as e:
            choices[fw] = ImageChoice(fw, entry.name, None, error=e.describe())
            console.print(f"[yellow]{fw}: {e.describe()}; its runs will be failed rows[/]")
            continue
        if recorded:
            console.print(f"[yellow]image {entry.name}: the recorded {recorded[:19]} is not on this engine; "
                          f"rebuilt from the lockfile as {image_id[:19]}"
                          f"{' (identical)' if image_id == recorded else ' (DIFFERENT: see the provenance diff)'}[/]")
        console.print(f"image {entry.name}: {image_id[:19]}")
        choices[fw] = ImageChoice(fw, entry.name, image_id)
    return choices


def resolve_podman_images(engine: PodmanEngine, plan: Plan, build: str, console: Console,
                          pinned: dict[str, str] | None = None) -> dict[str, ImageChoice]:
    """Each framework's image where podman runs alone (no Docker engine builds or holds images): the
    one podman holds under the catalog's tag, if it is a build of the current lockfile (a bundle's
    recorded image instead, when podman has it). Anything else is the framework's failed rows, with
    the fix (carry the image over as an archive). `--build always` is refused: nothing here builds."""
    from runner.images.catalog import load_catalog
    from runner.images.podman_store import usable_image

    if build == "always":
        raise UsageError("--build always needs a Docker engine to build with; podman here runs only the "
                         "images in its storage", field="--build",
                         fix="drop --build always, or build where Docker runs and `runner images import FILE "
                             "--engine podman` here")
    catalog = load_catalog()
    choices = {}
    for f in plan.experiment.frameworks:
        fw, entry = f.value, None
        try:
            entry = catalog.for_run(fw, plan.experiment.variant.value)
            recorded = (pinned or {}).get(fw)
            if recorded and engine.has_image(recorded):
                console.print(f"image {entry.name}: the recorded {recorded[:19]}, in podman's storage")
                choices[fw] = ImageChoice(fw, entry.name, recorded)
                continue
            image_id = usable_image(engine, entry)
        except (ImageError, EngineError) as e:
            choices[fw] = ImageChoice(fw, entry.name if entry else None, None, error=e.describe())
            console.print(f"[yellow]{fw}: {e.describe()}; its runs will be failed rows[/]")
            continue
        console.print(f"image {entry.name}: {image_id[:19]}, in podman's storage")
        choices[fw] = ImageChoice(fw, entry.name, image_id)
    return choices
