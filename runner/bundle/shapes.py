"""The shape of each bundle document that readers dig into, checked where the document is read.

A bundle is input: a corrupt or edited one may hold any JSON, and a hash only says the file is
the one the manifest names, not that its writer was runner. The readers (`bundle diff`,
`verify`, `publish`, `compare`, `report`, reruns) walk nested fields: `host.json`'s `cpu.flags`,
the manifest's `fingerprint.host`, an image record's `repo_tags`. Each document's containers
(and the few leaves a reader joins or splits as text) are declared here as TypedDicts and
checked with pydantic, strictly: a field may be absent and extra fields pass, but a field of the
wrong JSON type is one line naming it ("cpu.flags is a number, expected a list"), never a crash
deep in a reader. pydantic (already the spec's validator) over a hand-written walker: its
TypedDict support gives absent-or-typed fields and the failing field's path for free.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Annotated, Any

from pydantic import StringConstraints, TypeAdapter, ValidationError
from typing_extensions import TypedDict  # pydantic reads typing's TypedDict only from Python 3.12

from runner.spec.run_id import RUN_ID_FORM, RUN_ID_PATTERN, shown_id

Obj = dict[str, Any]
RunId = Annotated[str, StringConstraints(pattern=RUN_ID_PATTERN)]  # it names paths: runs/<id>/


class _FingerprintCode(TypedDict, total=False):
    git: Obj | None


class _Fingerprint(TypedDict, total=False):
    code: _FingerprintCode | None
    dataset: Obj | None
    environment: list[str] | None
    gpu: Obj | None
    host: Obj | None


class _Spec(TypedDict, total=False):
    references: list[Any] | None  # the rest of the spec is walked generically (diff's flatten)


class _ManifestRun(TypedDict, total=False):
    id: RunId
    files: list[str]


class Manifest(TypedDict, total=False):
    """manifest.json and bundle.json (its hashed copy of the same facts)."""

    fingerprint: _Fingerprint
    runs: list[_ManifestRun]
    spec: _Spec
    tables: dict[str, Obj]


class _Cpu(TypedDict, total=False):
    flags: list[str] | None
    frequency_mhz: Obj | None


class Host(TypedDict, total=False):
    """environment/host.json (fingerprint/host.py)."""

    cpu: _Cpu
    engine: Obj
    memory: Obj
    os: Obj


class _GpuDevice(TypedDict, total=False):
    name: str | None


class Gpu(TypedDict, total=False):
    """environment/gpu.json (fingerprint/gpu.py)."""

    devices: list[_GpuDevice]


class _Image(TypedDict, total=False):
    repo_tags: list[Any] | None
    name: str | None


class ImageRecord(TypedDict, total=False):
    """environment/images/<name>.json: the image (or local Python) a framework ran in."""

    image: _Image | None
    packages: list[str] | None
    framework: str | None


class Code(TypedDict, total=False):
    """environment/code.json."""

    dirs: list[str] | None
    git: Obj | None


class _RunEnvironment(TypedDict, total=False):
    node: Obj | None


class RunEnvironment(TypedDict, total=False):
    """runs/<id>/environment.json."""

    environment: _RunEnvironment
    telemetry: Obj | None
    events_skipped_lines: list[Any] | None


# Bundle-relative path patterns (matched from the right) -> the declared shape. Every other
# document is read as any JSON value (its readers take it whole or check it themselves).
SHAPES: tuple[tuple[str, Any], ...] = (
    ("manifest.json", Manifest),
    ("bundle.json", Manifest),
    ("environment/host.json", Host),
    ("environment/gpu.json", Gpu),
    ("environment/code.json", Code),
    ("environment/images/*.json", ImageRecord),
    ("runs/*/environment.json", RunEnvironment),
)
_ADAPTERS = {pattern: TypeAdapter(shape) for pattern, shape in SHAPES}

_JSON_TYPES = {dict: "an object", list: "a list", str: "a string", bool: "true or false", int: "a number",
               float: "a number", type(None): "null"}
_EXPECTED = {"dict_type": "an object", "typed_dict_type": "an object", "list_type": "a list",
             "string_type": "a string", "string_pattern_mismatch": f"a run id ({RUN_ID_FORM})"}


def shape_of(path: str | PurePosixPath) -> str | None:
    """The SHAPES pattern a document's path matches (its bundle-relative tail), or None."""
    p = PurePosixPath(path)
    return next((pattern for pattern, _ in SHAPES if p.match(pattern)), None)


def shape_problem(path: str | PurePosixPath, doc: Any) -> str | None:
    """None when `doc` has the shape declared for `path` (or none is declared), else one line:
    the first wrong field, what it is and what it should be."""
    pattern = shape_of(path)
    return None if pattern is None else shape_problem_of(_ADAPTERS[pattern], doc)


def shape_problem_of(adapter: TypeAdapter, doc: Any) -> str | None:
    """None when `doc` validates (strictly) against `adapter`, else its first wrong field in one line."""
    try:
        adapter.validate_python(doc, strict=True)
    except ValidationError as e:
        err = e.errors()[0]
        where = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in err["loc"]).lstrip(".")
        got = _JSON_TYPES.get(type(err["input"]), type(err["input"]).__name__)
        if err["type"] == "string_pattern_mismatch":  # the value says more than its type
            got = shown_id(err["input"])
        want = _EXPECTED.get(err["type"], err["msg"].lower())
        return f"{where or 'the document'} is {got}, expected {want}"
    return None
