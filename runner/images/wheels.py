"""The wheel cache: every locked wheel on the host, checked against its lockfile hash.

Wheels are fetched on the host (the only place that reaches PyPI) into `<cache>/wheels/`:
local files (find-links folder, file:// mirrors) are copied; remote ones are downloaded by the
host's pip (so its proxy, certificate and index settings apply) as `name @ URL --hash=...`
requirements. A wheel whose file is gone from its local folder is fetched by name and version
from the host's indexes instead; the hash decides either way. Every file is checked against the
lockfile before it is used, also when it was cached by an earlier build.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote, urlparse

from runner.errors import ImageError
from runner.images.catalog import CatalogEntry
from runner.images.lockfile import Lockfile, PipPin, sha256_file
from runner.images.resolve_pip import PIP_TIMEOUT_S, target_args

Log = Callable[[str], None]


def _cached_ok(path: Path, pin: PipPin) -> bool:
    return path.is_file() and sha256_file(path) in pin.sha256


def _install_verified(src: Path, dest: Path, pin: PipPin) -> None:
    """Copy `src` into the cache as `dest` (atomically) if its hash is one the lockfile allows."""
    digest = sha256_file(src)
    if digest not in pin.sha256:
        raise ImageError(f"{src.name} has sha256 {digest}, the lockfile allows {', '.join(pin.sha256)}",
                         field=pin.name, line=pin.line,
                         fix="the file changed since the lock: check its source, then runner images lock")
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", dir=dest.parent)
    os.close(fd)
    try:
        shutil.copyfile(src, tmp)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _pip_download(entry: CatalogEntry, requirements: list[str], dest: Path) -> None:
    with tempfile.NamedTemporaryFile("w", suffix=".txt", dir=dest, delete=False) as req:
        req.write("\n".join(requirements) + "\n")
    argv = [sys.executable, "-m", "pip", "download", "--no-deps", "--require-hashes", "--quiet", "--no-input",
            "--dest", str(dest), *target_args(entry), "-r", req.name]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=PIP_TIMEOUT_S, check=False)
    finally:
        Path(req.name).unlink(missing_ok=True)
    if done.returncode != 0:
        errors = [line for line in done.stderr.splitlines() if line.startswith("ERROR")] or done.stderr.splitlines()
        raise ImageError(f"pip could not download the wheels of {entry.name}: {' '.join(errors[-2:])}",
                         file=entry.lockfile, fix="check the host's network and pip settings (`pip config list`)")


def fetch_wheels(entry: CatalogEntry, lock: Lockfile, cache_dir: Path, log: Log | None = None) -> list[Path]:
    """Every wheel of `lock` in `<cache_dir>/wheels`, hash-checked; returns their paths in lock order."""
    say = log or (lambda _msg: None)
    wheels = cache_dir / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    remote: list[tuple[PipPin, str]] = []
    for pin in lock.pip:
        if not pin.filename:
            raise ImageError(f"{pin.name}=={pin.version} has no `# from:` line", file=lock.path, line=pin.line,
                             field=pin.name, fix=f"regenerate it: runner images lock {entry.name}")
        dest = wheels / pin.filename
        paths[pin.name] = dest
        if _cached_ok(dest, pin):
            continue
        parsed = urlparse(pin.url or "")
        local = Path(unquote(parsed.path)) if parsed.scheme == "file" else None
        if local is not None and local.is_file():
            say(f"copy {pin.filename}")
            _install_verified(local, dest, pin)
        elif local is not None:  # the folder it was locked from is not on this machine
            remote.append((pin, pin.requirement))
        else:
            remote.append((pin, f"{pin.name} @ {pin.url}"))
    if remote:
        say(f"download {len(remote)} wheel(s) with the host's pip: {', '.join(p.filename or '' for p, _ in remote)}")
        with tempfile.TemporaryDirectory(dir=wheels, prefix=".download-") as tmp:
            reqs = [f"{spec} " + " ".join(f"--hash=sha256:{h}" for h in pin.sha256) for pin, spec in remote]
            _pip_download(entry, reqs, Path(tmp))
            got = {p.name: p for p in Path(tmp).iterdir() if p.suffix == ".whl"}
            for pin, _ in remote:
                src = got.get(pin.filename or "")
                if src is None:
                    raise ImageError(f"pip did not deliver {pin.filename}", file=lock.path, line=pin.line,
                                     field=pin.name, fix=f"regenerate the lock: runner images lock {entry.name}")
                _install_verified(src, paths[pin.name], pin)
    return [paths[pin.name] for pin in lock.pip]
