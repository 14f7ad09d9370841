"""Pin the Debian packages of an image's system layer: the whole closure, not just the names listed.

apt itself resolves, inside a throwaway container of the base (network on: apt reaches Debian's
archive over plain HTTP): `apt-get install -s` prints the packages it would install, one
`Inst NAME [OLD] (VERSION SUITE [ARCH])` line each. Packages the base already has are pinned by
the base's digest and do not appear. apt checks what it downloads against the archive's signed
Release files, so name=version pins are enough; there is no per-file hash to record.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from runner.errors import ImageError
from runner.images.catalog import CatalogEntry
from runner.images.lockfile import DebianPin

if TYPE_CHECKING:
    from runner.images.store import ImageStore

_INST = re.compile(r"^Inst (?P<name>\S+) (?:\[\S+\] )?\((?P<version>\S+) ")

# The packages come in as "$@" of the shell, never pasted into the script.
_SIMULATE = 'apt-get update -qq && exec apt-get install -s --no-install-recommends "$@"'


def parse_simulation(output: str) -> list[DebianPin]:
    """DebianPins from `apt-get install -s` output."""
    pins = {}
    for line in output.splitlines():
        m = _INST.match(line)
        if m:
            name = m["name"].split(":", 1)[0]  # `libfoo:ppc64el` on multi-arch output
            pins[name] = DebianPin(name, m["version"])
    return sorted(pins.values(), key=lambda p: p.package)


def resolve_debian(store: ImageStore, entry: CatalogEntry, base_id: str) -> list[DebianPin]:
    """Ask apt in the base which exact packages `entry.debian` brings in."""
    if not entry.debian:
        return []
    result = store.run(base_id, ["sh", "-ec", _SIMULATE, "sh", *entry.debian], network=True, timeout=1800)
    if result.exit_code != 0:
        raise ImageError(f"apt cannot resolve {' '.join(entry.debian)} for {entry.name}: {result.tail(3)}",
                         file=entry.catalog_path, field=f"{entry.field_prefix}.debian",
                         fix="check the package names and that the container reaches the Debian archive")
    return parse_simulation(result.stdout)
