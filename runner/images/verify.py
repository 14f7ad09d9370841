"""`runner images verify NAME`: is the tagged image exactly what the catalog and lockfile describe?

Checks, each reported on its own line:
- the image's labels name this entry, its framework, version and variant, and the sha256 of the
  catalog entry and lockfile as they are now;
- the image's platform is the entry's;
- `pip freeze --all --local`, run inside the image with the network off, lists exactly the
  lockfile's pins (no more, no fewer, same versions);
- `dpkg-query` inside the image reports every Debian pin of the lockfile at its version.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from runner.errors import ImageError
from runner.images import labels as L
from runner.images.catalog import CatalogEntry
from runner.images.lockfile import Lockfile, normalize_name, read_lockfile
from runner.images.store import ImageStore, as_store

if TYPE_CHECKING:
    import docker

_FREEZE_LINE = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>\S+)$")


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


@dataclass
class VerifyReport:
    entry: CatalogEntry
    image_id: str
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    def add(self, name: str, ok: bool, detail: str) -> None:
        self.checks.append(Check(name, ok, detail))


def _diff(expected: dict[str, str], found: dict[str, str], limit: int = 4) -> str:
    missing = sorted(set(expected) - set(found))
    extra = sorted(set(found) - set(expected))
    changed = sorted(k for k in set(expected) & set(found) if expected[k] != found[k])
    parts = []
    if missing:
        parts.append("missing " + ", ".join(f"{k}=={expected[k]}" for k in missing[:limit]))
    if extra:
        parts.append("not locked " + ", ".join(f"{k}=={found[k]}" for k in extra[:limit]))
    if changed:
        parts.append("differs " + ", ".join(f"{k} {found[k]} (lock {expected[k]})" for k in changed[:limit]))
    return "; ".join(parts)


def parse_freeze(output: str) -> dict[str, str]:
    pins = {}
    for line in output.splitlines():
        m = _FREEZE_LINE.match(line.strip())
        if m:
            pins[normalize_name(m["name"])] = m["version"]
    return pins


def _check_labels(report: VerifyReport, labels: dict[str, str], entry: CatalogEntry, lock: Lockfile) -> None:
    expected = L.identity_labels(entry, lock)
    for key, want in expected.items():
        got = labels.get(key)
        if key == L.LOCK_SHA256:
            detail = "matches the lockfile" if got == want else "the lockfile changed since the build"
        elif key == L.CATALOG_ENTRY:
            detail = "matches the catalog entry" if got == want else "the catalog entry changed since the build"
        elif key == L.RECIPE_SHA256:
            detail = "matches the Dockerfiles" if got == want else "the Dockerfiles changed since the build"
        else:
            detail = f"{got}" if got == want else f"{got!r}, expected {want!r}"
        report.add(f"label {key}", got == want, detail)


def verify_image(engine: ImageStore | docker.DockerClient, entry: CatalogEntry) -> VerifyReport:
    """Run every check on the image tagged for `entry` in `engine`'s storage (a Docker client or an
    ImageStore); raises ImageError only if there is no image."""
    store = as_store(engine)
    lock = read_lockfile(entry.lockfile, entry.name)
    attrs = store.attrs(entry.tag)
    if attrs is None:
        flag = store.engine_flag
        raise ImageError(f"no image tagged {entry.tag} in {store.name}'s storage",
                         fix=f"runner images build {entry.name}{flag} (or runner images import FILE{flag})")
    report = VerifyReport(entry, attrs["Id"])
    _check_labels(report, (attrs.get("Config") or {}).get("Labels") or {}, entry, lock)
    platform = f"{attrs.get('Os')}/{attrs.get('Architecture')}"
    report.add("platform", platform == entry.platform,
               platform if platform == entry.platform else f"{platform}, expected {entry.platform}")

    freeze = store.run(attrs["Id"], ["python", "-m", "pip", "freeze", "--all", "--local",
                                               "--disable-pip-version-check"])
    if freeze.exit_code != 0:
        report.add("pip freeze", False, f"failed: {freeze.tail(2)}")
    else:
        found, expected = parse_freeze(freeze.stdout), lock.pip_versions()
        report.add("pip freeze", found == expected,
                   f"{len(found)} packages equal the lockfile's pins" if found == expected else _diff(expected, found))

    if lock.debian:
        argv = ["dpkg-query", "-W", "-f", "${Package}=${Version}\\n", *(p.package for p in lock.debian)]
        dpkg = store.run(attrs["Id"], argv)
        found = dict(line.split("=", 1) for line in dpkg.stdout.splitlines() if "=" in line)
        expected = lock.debian_versions()
        found = {k.split(":", 1)[0]: v for k, v in found.items()}
        ok = dpkg.exit_code == 0 and found == expected
        detail = f"{len(found)} packages at the lockfile's versions" if ok else (_diff(expected, found) or dpkg.tail(2))
        report.add("debian packages", ok, detail)
    return report
