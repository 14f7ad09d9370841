"""A run's id: its framework's first two letters, '-', 12 hex digits of its content hash.

The planner makes ids (spec.plan.run_hash); bundles carry them into paths (`runs/<id>/`,
`logs/<id>.log`), container and job names. A bundle is input, so every reader checks an id
against RUN_ID_PATTERN before anything is built from it: a forged id such as `a/b` or one with a
newline is refused, not followed.
"""

from __future__ import annotations

import re

RUN_ID_PATTERN = r"^[a-z]{2}-[0-9a-f]{12}$"
RUN_ID_FORM = "two letters, '-', 12 hex digits, e.g. py-0123456789ab"
_RUN_ID = re.compile(RUN_ID_PATTERN)


def make_run_id(framework: str, content_hash: str) -> str:
    return f"{framework[:2]}-{content_hash}"


def is_run_id(text: object) -> bool:
    return isinstance(text, str) and _RUN_ID.fullmatch(text) is not None


def shown_id(text: str, limit: int = 40) -> str:
    """A refused id as an error line shows it: quoted, escapes visible, cut at `limit` characters."""
    return repr(text[:limit]) + ("..." if len(text) > limit else "")
