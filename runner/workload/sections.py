"""One strict reader for the run.json sections that are frozen dataclasses (model, optimizer,
schedule): a mapping, no unknown keys, the required ones present; errors name the file and the
dotted field, and keep the field a dataclass's own validation names."""

from __future__ import annotations

from dataclasses import fields
from typing import Any, TypeVar

from runner.errors import RunnerError

T = TypeVar("T")


def from_section(cls: type[T], d: Any, section: str, error: type[RunnerError], *,
                 required: tuple[str, ...] = (), source: str | None = None) -> T:
    """`cls(**d)`, after checking `d` as the `section` of run.json; raises `error`."""
    if not isinstance(d, dict):
        raise error(f"the {section} section must be a mapping", file=source, field=section)
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise error(f"unknown key(s) {', '.join(unknown)}", file=source, field=f"{section}.{unknown[0]}",
                    fix=f"use only: {', '.join(sorted(known))}")
    for key in required:
        if key not in d:
            raise error(f"missing `{key}`", file=source, field=f"{section}.{key}")
    try:
        return cls(**d)
    except error as e:
        e.file = source
        raise
