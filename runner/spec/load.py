"""Load an experiment spec from YAML, turning every problem into one SpecError line.

Hostile input costs bounded time and memory: the file is read through `read_bounded` (a regular
file, at most MAX_SPEC_BYTES: a FIFO or /dev/zero is refused before a byte is read), then its
tokens are scanned (libyaml's C scanner where PyYAML has it) and refused before anything is
composed if they hold an alias, anchor or tag (a spec needs none; aliases are how a 353-byte
file expands to gigabytes), nest deeper than MAX_DEPTH, put more than MAX_ITEMS entries in one
mapping or list, or hold more than MAX_NODES tokens. Only then is the node tree composed (once),
giving each key its line so validation errors point at `file:line: field`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from runner.errors import SpecError
from runner.fileio import read_bounded
from runner.spec.limits import MAX_DEPTH, MAX_ITEMS, MAX_NODES, MAX_NUMBER_CHARS, MAX_SPEC_BYTES
from runner.spec.model import Experiment

Loc = tuple[str | int, ...]

# libyaml's scanner and composer when PyYAML was built with it (measured: a 100,000-item list is
# scanned in 0.09 s in C); the pure-Python ones otherwise, with the same limits.
_BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

_OPEN = (yaml.BlockMappingStartToken, yaml.BlockSequenceStartToken, yaml.FlowMappingStartToken,
         yaml.FlowSequenceStartToken)
_CLOSE = (yaml.BlockEndToken, yaml.FlowMappingEndToken, yaml.FlowSequenceEndToken)
_ENTRY = (yaml.KeyToken, yaml.BlockEntryToken, yaml.FlowEntryToken)
_NUMBER_TAGS = ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")
_REFUSED = {yaml.AliasToken: "an alias (*name)", yaml.AnchorToken: "an anchor (&name)",
            yaml.TagToken: "a tag (!tag)"}


class _UniqueKeyLoader(_BaseLoader):  # type: ignore[misc,valid-type]
    """SafeLoader that refuses duplicate keys (YAML silently keeps the last one otherwise)."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {shorten(repr(key))} (first on line {seen[key] + 1})",
                key_node.start_mark
            )
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _refuse(path: Path, line: int, message: str, fix: str) -> SpecError:
    return SpecError(message, file=path, line=line + 1, fix=fix)


def scan_limits(text: str, path: Path) -> None:
    """Refuse aliases, anchors, tags, deep nesting and huge collections before composing."""
    loader = _UniqueKeyLoader(text)
    try:
        depth, nodes = 0, 0
        counts = [[0, False]]  # per open collection: entries so far, is a flow sequence
        while (token := loader.get_token()) is not None:
            nodes += 1
            kind = type(token)
            if kind in _REFUSED:
                raise _refuse(path, token.start_mark.line, f"YAML {_REFUSED[kind]} is not allowed in a spec",
                              "write the value out; a spec needs no anchors, aliases or tags")
            if kind is yaml.ScalarToken and token.plain and len(token.value) > MAX_NUMBER_CHARS and \
                    loader.resolve(yaml.ScalarNode, token.value, (True, False)) in _NUMBER_TAGS:
                raise _refuse(path, token.start_mark.line, f"a number written with {len(token.value)} "
                              f"characters (at most {MAX_NUMBER_CHARS})", "no spec value needs that many digits")
            if kind in _OPEN:
                depth += 1
                counts.append([0, kind is yaml.FlowSequenceStartToken])
                if depth > MAX_DEPTH:
                    raise _refuse(path, token.start_mark.line, f"nested more than {MAX_DEPTH} levels deep",
                                  "a spec is a few levels deep; check the brackets")
            elif kind in _CLOSE:
                depth -= 1
                if len(counts) > 1:
                    counts.pop()
            elif kind in _ENTRY and (kind is not yaml.FlowEntryToken or counts[-1][1]):
                counts[-1][0] += 1
                if counts[-1][0] > MAX_ITEMS:
                    raise _refuse(path, token.start_mark.line, f"more than {MAX_ITEMS} entries in one list "
                                  "or mapping", "a spec describes runs; it should not embed data")
            if nodes > MAX_NODES:
                raise _refuse(path, token.start_mark.line, f"more than {MAX_NODES} YAML tokens",
                              "a spec describes runs; it should not embed data")
    except yaml.scanner.ScannerError as e:
        if "nesting depth" not in str(e.problem):
            raise
        # libyaml scans ahead over flow brackets and stops at its own limit (1000) first
        raise _refuse(path, e.problem_mark.line if e.problem_mark else 0,
                      f"nested more than {MAX_DEPTH} levels deep",
                      "a spec is a few levels deep; check the brackets") from None
    finally:
        loader.dispose()


def _line_index(root: yaml.Node | None) -> dict[Loc, int]:
    """Map each key path in the document to its 1-based line (iterative: depth is capped anyway)."""
    out: dict[Loc, int] = {}
    stack: list[tuple[yaml.Node, Loc]] = [] if root is None else [(root, ())]
    while stack:
        node, path = stack.pop()
        out.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                key = (*path, key_node.value)
                out[key] = key_node.start_mark.line + 1
                stack.append((value_node, key))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((item, (*path, i)) for i, item in enumerate(node.value))
    return out


def nearest_line(lines: dict[Loc, int], loc: Loc) -> int | None:
    for end in range(len(loc), -1, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return None


_nearest_line = nearest_line  # the name other modules imported first


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
        return "use a value in the allowed range (docs/spec.md, limits)"
    if kind == "finite_number":
        return "use a finite number"
    if kind.endswith("_type") or kind.endswith("_parsing"):
        return "use a value of the right type"
    if kind == "too_short":
        return "give at least one item"
    if kind == "too_long":
        return "shorten it (docs/spec.md, limits)"
    return "see docs/spec.md"


def shorten(text: str, limit: int = 200) -> str:
    """Cut a user-supplied piece of an error line (a 200,000-character key stays one short line)."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def field_name(loc: Loc) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif item in ("random_crop", "horizontal_flip", "brightness", "resize") and parts:
            continue  # pydantic's discriminator tag, not a key the user wrote
        else:
            parts.append(("." if parts else "") + shorten(str(item), 100))
    return "".join(parts) or "<document>"


_field_name = field_name


def validation_to_spec_error(exc: ValidationError, file: Path, lines: dict[Loc, int],
                             prefix: Loc = ()) -> SpecError:
    """The first validation error, as one SpecError line with file, line and field."""
    errors = sorted(exc.errors(include_url=False), key=lambda e: e["type"] != "extra_forbidden")
    err = errors[0]
    loc = tuple(x for x in err["loc"] if x != "__root__")
    full = (*prefix, *loc)
    msg = shorten(err["msg"].removeprefix("Value error, "), 500)
    more = len(exc.errors()) - 1
    if more:
        msg += f" (and {more} more problem{'s' if more > 1 else ''})"
    return SpecError(msg, file=file, line=nearest_line(lines, full), field=field_name(full), fix=_fix_for(err))


def read_yaml(path: Path) -> tuple[dict, dict[Loc, int]]:
    """The spec document as a dict, and the line of every key."""
    raw = read_bounded(path, MAX_SPEC_BYTES, SpecError, what="spec file",
                       fix="name a regular .yaml file of at most 1 MB (a spec should not embed data)")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise SpecError(f"not UTF-8 text ({e.reason})", file=path, fix="save the spec as UTF-8") from None
    try:
        scan_limits(text, path)
        loader = _UniqueKeyLoader(text)
        try:
            node = loader.get_single_node()
            data = None if node is None else loader.construct_document(node)
        finally:
            loader.dispose()
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
        raise SpecError(f"key {shorten(repr(bad_keys[0]))} is not a string", file=path, fix="quote the key")
    return data, _line_index(node)


def _all_keys(obj: Any):
    """Every mapping key in the document (recursion is bounded: scan_limits capped the depth)."""
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
        raise SpecError(message, file=path, line=nearest_line(lines, loc), field=field_name(loc), fix=fix)
    return exp, lines


def load_spec(path: str | Path) -> Experiment:
    return load_experiment(path)[0]
