"""Lockfiles: images/locks/<name>.txt, in pip's `--require-hashes` requirements format.

A lockfile is a valid pip requirements file (pip reads it inside the image), plus structured
comment lines pip ignores:

    # inputs: <sha256>                   the catalog fields it was resolved from (outdated if they change)
    # debian: <package>=<version>        one line per Debian package of the system layer
    # from: <url>                        where the next pinned wheel was resolved from
    torch==2.13.0+cpu \\
        --hash=sha256:<64 hex>

`runner images lock` writes it; everything else reads it with `read_lockfile`, which refuses a
pin without a hash, a pin that is not `==`, and duplicates.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from runner.bundle import fsutil
from runner.errors import ImageError

_REQ = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[A-Za-z0-9.+!_-]+)(?P<rest>(\s.*)?)$")
_HASH = re.compile(r"^--hash=sha256:(?P<hex>[0-9a-f]{64})$")
_DEBIAN = re.compile(r"^(?P<name>[a-z0-9][a-z0-9.+-]+)=(?P<version>[A-Za-z0-9.+:~-]+)$")


def normalize_name(name: str) -> str:
    """PEP 503 normalized distribution name: `Jinja2` -> `jinja2`, `typing_extensions` -> `typing-extensions`."""
    return re.sub(r"[-_.]+", "-", name).lower()


def sha256_file(path: Path) -> str:
    return fsutil.sha256_file(path)[1]


@dataclass(frozen=True)
class PipPin:
    name: str  # normalized
    version: str
    sha256: tuple[str, ...]
    url: str | None = None
    line: int | None = None

    @property
    def filename(self) -> str | None:
        """The wheel's file name, from the URL it was resolved from."""
        if not self.url:
            return None
        return unquote(urlparse(self.url).path).rsplit("/", 1)[-1] or None

    @property
    def requirement(self) -> str:
        return f"{self.name}=={self.version}"


@dataclass(frozen=True)
class DebianPin:
    package: str
    version: str

    @property
    def spec(self) -> str:
        return f"{self.package}={self.version}"


@dataclass(frozen=True)
class Lockfile:
    path: Path
    sha256: str  # of the file's bytes: the image label io.runner.lock_sha256
    inputs_sha256: str | None
    pip: tuple[PipPin, ...]
    debian: tuple[DebianPin, ...]

    def pip_versions(self) -> dict[str, str]:
        return {p.name: p.version for p in self.pip}

    def debian_versions(self) -> dict[str, str]:
        return {p.package: p.version for p in self.debian}


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """(first line number, text) with backslash continuations joined."""
    out: list[tuple[int, str]] = []
    buf, start = "", 0
    for number, raw in enumerate(text.splitlines(), start=1):
        if not buf:
            start = number
        stripped = raw.rstrip()
        if stripped.endswith("\\") and not stripped.lstrip().startswith("#"):
            buf += stripped[:-1] + " "
            continue
        out.append((start, buf + stripped))
        buf = ""
    if buf:
        out.append((start, buf))
    return out


def read_lockfile(path: Path, image: str | None = None) -> Lockfile:
    """Parse and check a lockfile; `image` names the entry in the fix hint."""
    fix_lock = f"runner images lock {image}" if image else "runner images lock NAME"
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ImageError("lockfile not found", file=path, fix=f"make it: {fix_lock}") from None
    text = data.decode("utf-8")
    pins: dict[str, PipPin] = {}
    debian: dict[str, DebianPin] = {}
    inputs: str | None = None
    pending_url: str | None = None
    for number, line in _logical_lines(text):
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith("#"):
            comment = stripped[1:].strip()
            key, _, value = comment.partition(":")
            value = value.strip()
            if key == "from" and value:
                pending_url = value
            elif key == "inputs" and value:
                inputs = value
            elif key == "debian" and value:
                m = _DEBIAN.match(value)
                if not m:
                    raise ImageError(f"{value!r} is not PACKAGE=VERSION", file=path, line=number,
                                     field="debian", fix=f"regenerate it: {fix_lock}")
                if m["name"] in debian:
                    raise ImageError(f"Debian package {m['name']} is pinned twice", file=path, line=number,
                                     field=m["name"], fix=f"regenerate it: {fix_lock}")
                debian[m["name"]] = DebianPin(m["name"], m["version"])
            continue
        m = _REQ.match(stripped)
        if not m:
            raise ImageError(f"{stripped.split()[0]!r} is not pinned as NAME==VERSION", file=path, line=number,
                             fix=f"every requirement is pinned exactly with a hash; regenerate: {fix_lock}")
        name = normalize_name(m["name"])
        hashes: list[str] = []
        for option in m["rest"].split():
            h = _HASH.match(option)
            if not h:
                raise ImageError(f"unsupported option {option!r} on {name}", file=path, line=number,
                                 field=name, fix=f"only --hash=sha256:... is allowed; regenerate: {fix_lock}")
            hashes.append(h["hex"])
        if not hashes:
            raise ImageError(f"{name}=={m['version']} has no --hash", file=path, line=number, field=name,
                             fix=f"every pin needs a sha256 hash for --require-hashes; regenerate: {fix_lock}")
        if name in pins:
            raise ImageError(f"{name} is pinned twice", file=path, line=number, field=name,
                             fix=f"regenerate it: {fix_lock}")
        pins[name] = PipPin(name, m["version"], tuple(hashes), pending_url, number)
        pending_url = None
    return Lockfile(path=path, sha256=hashlib.sha256(data).hexdigest(), inputs_sha256=inputs,
                    pip=tuple(pins.values()), debian=tuple(debian.values()))


def format_lockfile(image: str, inputs_sha256: str, pip: list[PipPin], debian: list[DebianPin],
                    resolved_on: str) -> str:
    """The text `runner images lock` writes: deterministic for the same resolution."""
    lines = [
        f"# Lockfile of the runner image {image}. Written by `runner images lock {image}`; do not edit.",
        "# pip --require-hashes format; inside the image:",
        "#   pip install --no-index --require-hashes --only-binary=:all: --find-links WHEELHOUSE -r THIS_FILE",
        f"# inputs: {inputs_sha256}",
        "#",
        f"# Debian packages of the system layer, resolved on {resolved_on}:",
    ]
    lines += [f"# debian: {p.spec}" for p in sorted(debian, key=lambda p: p.package)]
    lines.append("#")
    for pin in sorted(pip, key=lambda p: p.name):
        if pin.url:
            lines.append(f"# from: {pin.url}")
        hashes = " \\\n".join(f"    --hash=sha256:{h}" for h in pin.sha256)
        lines.append(f"{pin.requirement} \\\n{hashes}")
    return "\n".join(lines) + "\n"


def write_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` through a temporary file in the same folder and os.replace."""
    fsutil.write_atomic(path, text.encode("utf-8"))
