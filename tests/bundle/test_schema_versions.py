"""Every released bundle schema's columns, frozen: a column added without a version bump fails here.

A bundle of every earlier version must still verify (runner.audit.verify) and read; that only holds
if what a version declares never changes once bundles of it exist. To add a column: bump
BUNDLE_SCHEMA_VERSION, put the column in ADDED_IN at the new version, and add the new version's line
below. Never edit a released version's line.
"""

from __future__ import annotations

import hashlib

from runner.bundle.schemas import BUNDLE_SCHEMA_VERSION, declared, tables_in

RELEASED = {  # version -> sha256 over "table:column:type" lines of every table it declares
    1: "063958476203e34bf8f15c266ab36e74eda46c64e18aea99f8b7e0670ffd81ec",
    2: "7b4b7cc8043766858f84fe1bf1d8764fe4cf39c6ec45bda538705294a007c46d",
    3: "ef7ea4e60a272ba7cbc9e84c4c5f40e1a0fc937954c57a92ae62e8bfd8279c33",  # as declared at dd66a06
    4: "b014ed76597740a012d919745aafc04597e974802d37088e171ad911b12ca359",
}


def columns_digest(version: int) -> str:
    lines = [f"{t}:{f.name}:{f.type}" for t in tables_in(version) for f in declared(t, version)]
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def test_every_released_version_declares_what_it_always_did():
    assert max(RELEASED) == BUNDLE_SCHEMA_VERSION, "a new version needs its line in RELEASED"
    changed = {v: columns_digest(v) for v in RELEASED if columns_digest(v) != RELEASED[v]}
    assert not changed, (f"released schemas changed: {changed}; bump BUNDLE_SCHEMA_VERSION and list new "
                         "columns in ADDED_IN instead")
