"""Load an experiment spec from YAML, turning every problem into one SpecError line.

PyYAML's composed node tree gives each key its line, so validation errors can point at
`file:line: field` instead of a pydantic dump.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from runner.errors import SpecError
from runner.spec.model import Experiment

MAX_SPEC_BYTES = 1_000_000

Loc = tuple[str | int, ...]


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (YAML silently keeps the last one otherwise)."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (first on line {seen[key] + 1})", key_node.start_mark
            )
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _line_index(node: yaml.Node | None, path: Loc = (), out: dict[Loc, int] | None = None) -> dict[Loc, int]:
    """Map each key path in the document to its 1-based line."""
    out = {} if out is None else out
    if node is None:
        return out
    out.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value
            out[(*path, key)] = key_node.start_mark.line + 1
            _line_index(value_node, (*path, key), out)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _line_index(item, (*path, i), out)
    return out


def _nearest_line(lines: dict[Loc, int], loc: Loc) -> int | None:
    for end in range(len(loc), -1, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return None


def _fix_for(err: dict) -> str:
    kind = err.get("type", "")
    ctx = err.get("ctx") or {}
    if kind == "extra_forbidden":
        return "remove the key or check its spelling (docs/spec.md lists every field)"
    if kind == "value_error":
        return "see the field in docs/spec.md"
    if kind == "missing":
        return "add the field"
    if kind in ("enum", "literal_error"):
        return f"use one of {ctx.get('expected', 'the allowed values')}"
    if kind in ("greater_than", "greater_than_equal", "less_than_equal", "less_than"):
        return "use a value in the allowed range"
    if kind.endswith("_type") or kind.endswith("_parsing"):
        return "use a value of the right type"
    if kind == "too_short":
        return "give at least one item"
    return "see docs/spec.md"


def _field_name(loc: Loc) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif item in ("random_crop", "horizontal_flip", "brightness", "resize") and parts:
            continue  # pydantic's discriminator tag, not a key the user wrote
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts) or "<document>"


def validation_to_spec_error(exc: ValidationError, file: Path, lines: dict[Loc, int],
                             prefix: Loc = ()) -> SpecError:
    """The first validation error, as one SpecError line with file, line and field."""
    errors = sorted(exc.errors(include_url=False), key=lambda e: e["type"] != "extra_forbidden")
    err = errors[0]
    loc = tuple(x for x in err["loc"] if x != "__root__")
    full = (*prefix, *loc)
    msg = err["msg"].removeprefix("Value error, ")
    more = len(exc.errors()) - 1
    if more:
        msg += f" (and {more} more problem{'s' if more > 1 else ''})"
    return SpecError(msg, file=file, line=_nearest_line(lines, full), field=_field_name(full),
                     fix=_fix_for(err))


def read_yaml(path: Path) -> tuple[dict, dict[Loc, int]]:
    """The spec document as a dict, and the line of every key."""
    if not path.exists():
        raise SpecError("no such file", file=path, fix="check the path to the experiment spec")
    if path.is_dir():
        raise SpecError("is a directory, not a spec file", file=path, fix="name a .yaml file")
    size = path.stat().st_size
    if size > MAX_SPEC_BYTES:
        raise SpecError(f"spec is {size} bytes, above the {MAX_SPEC_BYTES} limit", file=path,
                        fix="a spec describes runs; it should not embed data")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise SpecError(f"not UTF-8 text ({e.reason})", file=path, fix="save the spec as UTF-8") from None
    try:
        node = yaml.compose(text, Loader=_UniqueKeyLoader)
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark else None
        problem = e.problem or e.context or "invalid YAML"
        raise SpecError(f"YAML syntax error: {problem}", file=path, line=line,
                        fix="check indentation, colons and quotes on that line") from None
    except yaml.YAMLError as e:
        raise SpecError(f"YAML error: {e}", file=path, fix="check the YAML syntax") from None
    if data is None:
        raise SpecError("the spec is empty", file=path, fix="start from experiments/smoke.yaml")
    if not isinstance(data, dict):
        raise SpecError(f"the spec must be a mapping of fields, got a {type(data).__name__}", file=path,
                        line=1, fix="start from experiments/smoke.yaml")
    bad_keys = [k for k in _all_keys(data) if not isinstance(k, str)]
    if bad_keys:
        raise SpecError(f"key {bad_keys[0]!r} is not a string", file=path, fix="quote the key")
    return data, _line_index(node)


def _all_keys(obj: Any):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield k
            yield from _all_keys(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _all_keys(v)


def load_experiment(path: str | Path) -> tuple[Experiment, dict[Loc, int]]:
    """Parse and validate a spec; return it with the line index (the planner uses it for errors)."""
    path = Path(path)
    data, lines = read_yaml(path)
    try:
        exp = Experiment.model_validate_json(json.dumps(data, default=str))
    except ValidationError as e:
        raise validation_to_spec_error(e, path, lines) from None
    problems = exp.consistency_problems()
    if problems:
        loc, message, fix = problems[0]
        raise SpecError(message, file=path, line=_nearest_line(lines, loc), field=_field_name(loc), fix=fix)
    return exp, lines


def load_spec(path: str | Path) -> Experiment:
    return load_experiment(path)[0]
