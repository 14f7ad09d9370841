"""Checks that text rendered for a narrow terminal never splits a name inside a word."""

from __future__ import annotations

import re
from collections.abc import Iterable


def fragments(text: str, names: Iterable[str]) -> list[str]:
    """Tokens of `text` that begin or end one of `names` but are neither the name nor whole `_`-parts of it.

    A word split across lines leaves its head at the end of one line and its tail at the start
    of another: `mean_im` and `r_s` are fragments of `mean_images_per_s`; `epochs` is not a
    fragment of `epochs_completed` (a whole part); `py-73d9` is one of `py-73d91376b5b3`.
    Tokens shorter than 3 characters (or 5 for names with a `-`, hex ids) are too common to judge.
    """
    names = [n for n in names if n]
    found = []
    for token in set(re.split(r"[\s│|,;:()]+", text)):
        token = token.strip("…").rstrip(".")
        for name in names:
            shortest = 5 if "-" in name else 3
            if token == name or len(token) < shortest or not (name.startswith(token) or name.endswith(token)):
                continue
            parts = name.split("_")
            whole = {"_".join(parts[i:j]) for i in range(len(parts)) for j in range(i + 1, len(parts) + 1)}
            if token not in whole:
                found.append(token)
    return sorted(found)


def widest_line(text: str) -> int:
    return max((len(line.rstrip()) for line in text.splitlines()), default=0)
