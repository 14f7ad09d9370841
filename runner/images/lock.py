"""`runner images lock`: resolve an entry (Debian closure + wheels) and write its lockfile."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from runner.errors import ImageError
from runner.images.catalog import CatalogEntry
from runner.images.lockfile import DebianPin, Lockfile, PipPin, format_lockfile, read_lockfile, write_atomic
from runner.images.paths import default_cache_dir
from runner.images.resolve_debian import resolve_debian
from runner.images.resolve_pip import resolve_pip
from runner.images.store import ImageStore, as_store

if TYPE_CHECKING:
    import docker

Log = Callable[[str], None]


def debian_upstream(version: str) -> str:
    """`1:1.24.2-1+deb12u1` -> `1.24.2`; `1.13.1+dfsg-4` -> `1.13.1` (epoch, revision, repack suffix dropped)."""
    upstream = version.split(":", 1)[-1].rsplit("-", 1)[0]
    return upstream.split("+", 1)[0].split("~", 1)[0]


def check_framework_pin(entry: CatalogEntry, pip: list[PipPin], debian: list[DebianPin]) -> None:
    """The resolved framework must be the version the catalog promises."""
    where = dict(file=entry.catalog_path, field=f"{entry.field_prefix}.framework_version")
    if entry.package_source == "pip":
        versions = {p.name: p.version for p in pip}
        got = versions.get(entry.package_name.lower().replace("_", "-"))
        public = got.split("+", 1)[0] if got else None
    else:
        versions = {p.package: p.version for p in debian}
        got = versions.get(entry.package_name)
        public = debian_upstream(got) if got else None
    if got is None:
        raise ImageError(f"{entry.framework_package} is not among the packages resolved for {entry.name}",
                         fix="add it to requirements (pip) or debian", **where)
    if public != entry.framework_version:
        raise ImageError(f"{entry.framework_package} resolved to {got}, the catalog says {entry.framework_version}",
                         fix="pin the framework exactly in requirements, or correct framework_version", **where)


def lock_image(engine: ImageStore | docker.DockerClient, entry: CatalogEntry, base: str | None = None, *,
               cache_dir: Path | None = None, log: Log | None = None) -> Lockfile:
    """Resolve `entry` and write its lockfile; returns the lockfile as read back. apt resolves in the
    base, run by `engine` (a Docker client or an ImageStore); pip resolves on the host."""
    store = as_store(engine)
    say = log or (lambda _msg: None)
    if not entry.buildable:
        raise ImageError(f"{entry.name} is a {entry.recipe} recipe; it is locked on a machine that reaches "
                         "its channel, not here", file=entry.catalog_path, field=f"{entry.field_prefix}.recipe",
                         fix="see docs/images.md, 'TensorFlow on POWER'")
    work = (cache_dir or default_cache_dir()) / "tmp"
    reference = base or entry.base
    say(f"{entry.name}: base {reference}")
    base_image = store.prepare_base(reference, entry.platform, work)
    say(f"{entry.name}: resolving Debian packages {' '.join(entry.debian)} with apt in the base")
    debian = resolve_debian(store, entry, base_image.id)
    say(f"{entry.name}: resolving {' '.join(entry.requirements)} with the host's pip")
    pip = resolve_pip(entry)
    check_framework_pin(entry, pip, debian)
    resolved_on = f"{reference} ({base_image.source_id})"
    text = format_lockfile(entry.name, entry.lock_inputs_sha256(), pip, debian, resolved_on)
    write_atomic(entry.lockfile, text)
    lock = read_lockfile(entry.lockfile, entry.name)
    say(f"{entry.name}: {len(lock.pip)} wheels, {len(lock.debian)} Debian packages -> {entry.lockfile}")
    return lock
