"""Which image each framework's runs use, built when missing (per the --build policy).

A framework with no image for the spec's variant (no catalog entry, or, under `--build never`, an
image that is missing or stale; or a build that failed) does not stop the sweep: its runs become
failed rows with the one-line reason, which names the fix (`runner images build NAME`).
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.console import Console

from runner.errors import ImageError
from runner.spec.plan import Plan


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
