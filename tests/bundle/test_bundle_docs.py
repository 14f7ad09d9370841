"""docs/bundle.md lists every column of every table with its declared unit."""

from __future__ import annotations

import re

from runner.bundle.schemas import TABLES, unit
from tests.helpers import REPO


def test_docs_list_every_column_with_its_unit():
    text = (REPO / "docs" / "bundle.md").read_text()
    for name, schema in TABLES.items():
        section = text.split(f"### `{name}`", 1)[1].split("###", 1)[0]
        documented = dict(re.findall(r"^\| `(\w+)` \| [^|]+ \| ([^|]*) \|", section, re.M))
        assert list(documented) == schema.names, name
        for column in schema.names:
            assert documented[column].strip() == unit(schema, column), (name, column)
