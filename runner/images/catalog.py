"""The image catalog (images/images.toml): which images exist and what goes into each.

Loading validates every entry and rejects unknown keys, so a typo is an ImageError naming the
file, the entry's line and the field, never a surprise at build time. Each entry has a sha256
over its own fields (labelled on the image as `io.runner.catalog_entry`): an image built from an
older version of its entry shows up as stale.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.errors import ImageError

SCHEMA = 1
FRAMEWORKS = ("pytorch", "tensorflow", "mxnet")
VARIANTS = ("cpu", "cuda", "ppc64le")
PLATFORMS = ("linux/amd64", "linux/ppc64le")
RECIPES = ("pip", "conda")
TAG_REPOSITORY = "runner"  # images are tagged runner/<name>:<framework_version>

_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_PINNED = re.compile(r"^[a-z0-9][a-z0-9._/:-]*@sha256:[0-9a-f]{64}$")
_PACKAGE = re.compile(r"^(pip|debian|conda):[A-Za-z0-9][A-Za-z0-9._+-]*$")
_DEBIAN_NAME = re.compile(r"^[a-z0-9][a-z0-9.+-]+$")
_MINOR = re.compile(r"^\d+\.\d+$")

_STR_FIELDS = ("framework", "framework_version", "framework_package", "variant", "platform", "python",
               "glibc", "base", "recipe", "dockerfile", "lockfile")
_LIST_FIELDS = ("debian", "requirements")
_OPTIONAL_FIELDS = ("note", "import_version")
_FIELDS = set(_STR_FIELDS) | set(_LIST_FIELDS) | set(_OPTIONAL_FIELDS)


def default_catalog_path() -> Path:
    """images/images.toml of the checkout this `runner` package lives in."""
    return Path(__file__).resolve().parents[2] / "images" / "images.toml"


def entry_sha256(name: str, table: Mapping[str, Any]) -> str:
    """sha256 over the entry's name and fields, independent of key order and comments."""
    canonical = json.dumps({"name": name, **table}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class CatalogEntry:
    """One image: what it is, where its Dockerfile and lockfile are, what it is built from."""

    name: str
    framework: str
    framework_version: str
    framework_package: str
    variant: str
    platform: str
    python: str
    glibc: str
    base: str
    recipe: str
    dockerfile: Path
    lockfile: Path
    debian: tuple[str, ...]
    requirements: tuple[str, ...]
    note: str | None
    sha256: str
    catalog_path: Path
    import_version: str | None = None

    @property
    def reported_version(self) -> str:
        """What `<framework>.__version__` says in the image (local labels like +cpu dropped)."""
        return self.import_version or self.framework_version

    @property
    def arch(self) -> str:
        return self.platform.split("/", 1)[1]

    @property
    def tag(self) -> str:
        """The tag the built image carries: runner/<name>:<framework_version>."""
        return f"{TAG_REPOSITORY}/{self.name}:{self.framework_version}"

    @property
    def buildable(self) -> bool:
        """True for the pip recipe, which `runner images build` makes; conda recipes are docs."""
        return self.recipe == "pip"

    @property
    def package_source(self) -> str:
        return self.framework_package.split(":", 1)[0]

    @property
    def package_name(self) -> str:
        return self.framework_package.split(":", 1)[1]

    @property
    def field_prefix(self) -> str:
        return f"images.{self.name}"

    def lock_inputs_sha256(self) -> str:
        """sha256 of what resolution depends on: a lockfile made from other inputs is outdated."""
        inputs = {"requirements": list(self.requirements), "debian": list(self.debian),
                  "platform": self.platform, "python": self.python, "glibc": self.glibc, "base": self.base}
        return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class Catalog:
    """All entries of one catalog file, in file order."""

    path: Path
    entries: Mapping[str, CatalogEntry]

    @property
    def root(self) -> Path:
        return self.path.parent

    def __iter__(self) -> Iterator[CatalogEntry]:
        return iter(self.entries.values())

    def __len__(self) -> int:
        return len(self.entries)

    def names(self) -> list[str]:
        return list(self.entries)

    def get(self, name: str) -> CatalogEntry:
        try:
            return self.entries[name]
        except KeyError:
            raise ImageError(f"no image named {name!r} in the catalog", file=self.path, field="images",
                             fix=f"use one of: {', '.join(self.entries)}") from None

    def for_run(self, framework: str, variant: str) -> CatalogEntry:
        """The one entry a run of `framework` on `variant` uses."""
        found = [e for e in self if e.framework == framework and e.variant == variant]
        if not found:
            offered = sorted({f"{e.framework}/{e.variant}" for e in self})
            raise ImageError(f"the catalog has no {variant} image for {framework}", file=self.path,
                             field="images", fix=f"choose one of: {', '.join(offered)}")
        return found[0]  # load_catalog guarantees there is at most one


def _line_of(text: str, name: str) -> int | None:
    pattern = re.compile(rf"^[ \t]*\[[ \t]*images\.\"?{re.escape(name)}\"?\s*\]", re.MULTILINE)
    m = pattern.search(text)
    return text.count("\n", 0, m.start()) + 1 if m else None


class _EntryReader:
    """Validates one [images.NAME] table; every problem names the file, line and field."""

    def __init__(self, path: Path, text: str, name: str, table: Any) -> None:
        self.path, self.name, self.table = path, name, table
        self.line = _line_of(text, name)

    def fail(self, field: str | None, message: str, fix: str) -> ImageError:
        where = f"images.{self.name}" + (f".{field}" if field else "")
        return ImageError(message, file=self.path, line=self.line, field=where, fix=fix)

    def read(self) -> CatalogEntry:
        if not _NAME.match(self.name):
            raise self.fail(None, "image names are lowercase letters, digits and dashes",
                            "rename the entry, e.g. [images.pytorch-cpu]")
        if not isinstance(self.table, dict):
            raise self.fail(None, "an image entry must be a table", "write it as [images.NAME] with fields")
        unknown = sorted(set(self.table) - _FIELDS)
        if unknown:
            raise self.fail(unknown[0], f"unknown field {unknown[0]!r}",
                            f"remove it; known fields: {', '.join(sorted(_FIELDS))}")
        values = {f: self._str(f) for f in _STR_FIELDS}
        lists = {f: self._list(f) for f in _LIST_FIELDS}
        for field in _OPTIONAL_FIELDS:
            value = self.table.get(field)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise self.fail(field, "must be a non-empty string", f'write {field} = "..."')
        self._check(values, lists)
        root = self.path.parent
        return CatalogEntry(
            name=self.name, framework=values["framework"], framework_version=values["framework_version"],
            framework_package=values["framework_package"], variant=values["variant"],
            platform=values["platform"], python=values["python"], glibc=values["glibc"],
            base=values["base"], recipe=values["recipe"],
            dockerfile=(root / values["dockerfile"]).resolve(), lockfile=(root / values["lockfile"]).resolve(),
            debian=tuple(lists["debian"]), requirements=tuple(lists["requirements"]),
            note=self.table.get("note"), sha256=entry_sha256(self.name, self.table), catalog_path=self.path,
            import_version=self.table.get("import_version"),
        )

    def _str(self, field: str) -> str:
        if field not in self.table:
            raise self.fail(field, "missing", f"add {field} = \"...\" (see the comment at the top of the catalog)")
        value = self.table[field]
        if not isinstance(value, str) or not value.strip():
            raise self.fail(field, "must be a non-empty string", f'write {field} = "..."')
        return value

    def _list(self, field: str) -> list[str]:
        if field not in self.table:
            raise self.fail(field, "missing", f"add {field} = [...] (may be empty for a conda recipe)")
        value = self.table[field]
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            raise self.fail(field, "must be a list of non-empty strings", f'write {field} = ["..."]')
        return value

    def _check(self, v: dict[str, str], lists: dict[str, list[str]]) -> None:
        for field, allowed in (("framework", FRAMEWORKS), ("variant", VARIANTS), ("platform", PLATFORMS),
                               ("recipe", RECIPES)):
            if v[field] not in allowed:
                raise self.fail(field, f"{v[field]!r} is not one of {', '.join(allowed)}",
                                f"set {field} to one of: {', '.join(allowed)}")
        if (v["variant"] == "ppc64le") != (v["platform"] == "linux/ppc64le"):
            raise self.fail("platform", f"variant {v['variant']} does not fit platform {v['platform']}",
                            "the ppc64le variant runs on linux/ppc64le, the others on linux/amd64")
        if not _PINNED.match(v["base"]):
            raise self.fail("base", f"base image {v['base']!r} is not pinned by digest",
                            "write it as name:tag@sha256:<64 hex digits>")
        if not _PACKAGE.match(v["framework_package"]):
            raise self.fail("framework_package", f"{v['framework_package']!r} is not SOURCE:NAME",
                            "write pip:<dist>, debian:<package> or conda:<package>")
        for field in ("python", "glibc"):
            if not _MINOR.match(v[field]):
                raise self.fail(field, f"{v[field]!r} is not MAJOR.MINOR", f'write e.g. {field} = "3.11"')
        bad = [p for p in lists["debian"] if not _DEBIAN_NAME.match(p)]
        if bad:
            raise self.fail("debian", f"{bad[0]!r} is not a Debian package name",
                            "list bare package names; the lockfile pins their versions")
        if v["recipe"] == "pip":
            source = v["framework_package"].split(":", 1)[0]
            if source not in ("pip", "debian"):
                raise self.fail("framework_package", "the pip recipe installs from pip or Debian",
                                "use pip:<dist> or debian:<package>, or recipe = \"conda\"")
            if "python3" not in lists["debian"]:
                raise self.fail("debian", "the pip recipe needs Debian's python3",
                                'add "python3" to debian')
            names = {re.split(r"[\s\[<>=!~;@]", r.strip(), maxsplit=1)[0].lower() for r in lists["requirements"]}
            if "pip" not in names:
                raise self.fail("requirements", "pip is not among the requirements",
                                'add "pip": it installs the wheels inside the image and is locked like them')


def load_catalog(path: str | Path | None = None) -> Catalog:
    """Read and validate the catalog at `path` (default: images/images.toml of this checkout)."""
    catalog_path = Path(path) if path is not None else default_catalog_path()
    try:
        text = catalog_path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ImageError("image catalog not found", file=catalog_path,
                         fix="pass --catalog PATH to a catalog (the repository's is images/images.toml)") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        m = re.search(r"\(at line (\d+), column \d+\)", str(e))  # tomllib gives no lineno before 3.14
        raise ImageError(f"not valid TOML: {e}", file=catalog_path, line=int(m[1]) if m else None,
                         fix="fix the TOML syntax at that line") from None
    unknown = sorted(set(data) - {"schema", "images"})
    if unknown:
        raise ImageError(f"unknown top-level key {unknown[0]!r}", file=catalog_path, field=unknown[0],
                         fix="the catalog holds `schema` and [images.NAME] tables only")
    if data.get("schema") != SCHEMA:
        raise ImageError(f"schema is {data.get('schema')!r}, this runner reads schema {SCHEMA}",
                         file=catalog_path, field="schema", fix=f"set schema = {SCHEMA}")
    images = data.get("images")
    if not isinstance(images, dict) or not images:
        raise ImageError("the catalog lists no images", file=catalog_path, field="images",
                         fix="add at least one [images.NAME] table")
    entries: dict[str, CatalogEntry] = {}
    seen: dict[tuple[str, str], str] = {}
    for name, table in images.items():
        entry = _EntryReader(catalog_path, text, name, table).read()
        key = (entry.framework, entry.variant)
        if key in seen:
            raise ImageError(f"{name} and {seen[key]} are both {entry.framework}/{entry.variant}",
                             file=catalog_path, line=_line_of(text, name), field=f"images.{name}",
                             fix="keep one entry per framework and variant")
        seen[key] = name
        entries[name] = entry
    return Catalog(path=catalog_path.resolve(), entries=entries)
