"""Resolve an entry's requirements to exact wheels with the HOST's pip, as the image will see them.

pip runs on the host because only the host reaches PyPI (through a proxy whose CA only the host
trusts) and its own settings (find-links folder, index mirrors, constraints) decide what exists
here. `pip install --dry-run --report` resolves for the image's platform and Python without
installing anything; the report names each wheel's URL and sha256. For local files (find-links,
file:// mirrors) the sha256 is computed here from the file itself.

Caveat: pip evaluates environment markers (platform_machine, ...) against the host. That is exact
for linux/amd64 images on this x86_64 host; for ppc64le only marker-free requirements (the pip
wheel) are resolved this way, the rest comes from Debian.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import unquote, urlparse

from runner.errors import ImageError
from runner.images.catalog import CatalogEntry
from runner.images.lockfile import PipPin, normalize_name, sha256_file

PIP_TIMEOUT_S = 1800
_WHEEL_ARCH = {"linux/amd64": "x86_64", "linux/ppc64le": "ppc64le"}


def platform_tags(platform: str, glibc: str) -> list[str]:
    """Every manylinux tag a wheel may carry to run on `platform` with this glibc, newest first.

    pip's --platform matches a tag exactly (it expands only manylinux2014/2010), so the list is
    spelled out: manylinux_2_36 ... manylinux_2_17, then manylinux2014 (which pip widens to
    manylinux2010/1).
    """
    arch = _WHEEL_ARCH[platform]
    major, minor = (int(x) for x in glibc.split("."))
    tags = [f"manylinux_{major}_{m}_{arch}" for m in range(minor, 16, -1)]
    tags.append(f"manylinux2014_{arch}")
    return tags


def target_args(entry: CatalogEntry) -> list[str]:
    """pip options that describe the image's interpreter instead of the host's."""
    args = ["--only-binary=:all:"]
    for tag in platform_tags(entry.platform, entry.glibc):
        args += ["--platform", tag]
    abi = "cp" + entry.python.replace(".", "")
    return args + ["--python-version", entry.python, "--implementation", "cp", "--abi", abi]


def resolve_argv(entry: CatalogEntry, report: Path, target: Path) -> list[str]:
    return [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
            "--no-input", "--report", str(report), "--target", str(target), *target_args(entry),
            *entry.requirements]


def _local_path(url: str) -> Path | None:
    parsed = urlparse(url)
    return Path(unquote(parsed.path)) if parsed.scheme == "file" else None


def pins_from_report(report: dict, entry: CatalogEntry) -> list[PipPin]:
    """PipPins from a pip installation report; sha256 of local files computed here."""
    pins = []
    for item in report.get("install", []):
        name = normalize_name(item["metadata"]["name"])
        version = item["metadata"]["version"]
        info = item.get("download_info") or {}
        url = info.get("url")
        if not url:
            raise ImageError(f"pip's report gives no URL for {name}", file=entry.catalog_path,
                             field=f"{entry.field_prefix}.requirements", fix="pin a released wheel")
        hashes = (info.get("archive_info") or {}).get("hashes") or {}
        digest = hashes.get("sha256")
        local = _local_path(url)
        if local is not None:
            computed = sha256_file(local)
            if digest and digest != computed:
                raise ImageError(f"{local} has sha256 {computed}, pip's report says {digest}",
                                 file=entry.catalog_path, field=f"{entry.field_prefix}.requirements",
                                 fix="the file changed while resolving; run the lock again")
            digest = computed
        if not digest:
            raise ImageError(f"no sha256 known for {name}=={version} ({url})", file=entry.catalog_path,
                             field=f"{entry.field_prefix}.requirements",
                             fix="use an index that publishes hashes (PyPI does)")
        pins.append(PipPin(name=name, version=version, sha256=(digest,), url=url))
    return sorted(pins, key=lambda p: p.name)


def resolve_pip(entry: CatalogEntry) -> list[PipPin]:
    """Run the host's pip resolver for `entry`; raises ImageError naming pip's complaint."""
    with tempfile.TemporaryDirectory(prefix="runner-lock-") as tmp:
        report_path = Path(tmp) / "report.json"
        argv = resolve_argv(entry, report_path, Path(tmp) / "target")
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=PIP_TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired:
            raise ImageError(f"pip did not finish resolving {entry.name} in {PIP_TIMEOUT_S} s",
                             file=entry.catalog_path, field=f"{entry.field_prefix}.requirements",
                             fix="check the host's network and pip settings (`pip config list`)") from None
        if done.returncode != 0 or not report_path.exists():
            errors = [line for line in done.stderr.splitlines() if line.startswith("ERROR")]
            reason = " ".join((errors or done.stderr.strip().splitlines() or ["no output"])[-2:])
            raise ImageError(f"pip cannot resolve {entry.name}: {reason}", file=entry.catalog_path,
                             field=f"{entry.field_prefix}.requirements",
                             fix="change the pins, or check the host's pip settings (`pip config list`)")
        report = json.loads(report_path.read_text())
    return pins_from_report(report, entry)
