"""The last check before anything leaves the machine: does the bundle name a secret, host or user?

The bundle writer redacts as it writes; this re-checks the finished files against the
publishing machine's own identities and secrets (which may differ from the machine that ran
the bundle), with the same word boundaries the redaction uses:

- the value of any secret-looking environment variable (runner.fingerprint.redact.secret_values);
- credentials in a URL (`scheme://user:password@`);
- this machine's host names and user names, and home folders of named users;
- in JSON documents, a secret-looking key (`api_key`, `token`, ...) holding a value other than
  `<redacted>`;
- a bundle written with --no-redact (its manifest says `"redacted": false`).

Every listed file is scanned: text as bytes, Parquet tables through their string columns. The
workload source under `code/` (the project's own files, copied as they are) is checked for
secrets only: a short host name such as `vm` is an ordinary word in source code. The first
leak found is refused with one line naming the file; the secret itself is never printed.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.errors import CheckFailed
from runner.fingerprint.redact import GENERIC_USERS, REDACTED, Redaction, secret_key

CHUNK = 4 << 20
CODE_DIR = "code/"
_URL_CREDENTIALS = rb"[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@\"'<>]+:[^/\s@\"'<>]+@"


@dataclass(frozen=True)
class Leak:
    path: str
    what: str  # never the secret itself


def _patterns(redaction: Redaction, identities: bool = True) -> list[tuple[re.Pattern[bytes], str]]:
    pats: list[tuple[re.Pattern[bytes], str]] = [(re.compile(_URL_CREDENTIALS), "credentials in a URL")]
    for secret in sorted(set(redaction.secrets), key=len, reverse=True):
        for form in dict.fromkeys((secret, json.dumps(secret)[1:-1])):
            pats.append((re.compile(re.escape(form.encode())), "the value of a secret-looking environment variable"))
    if not identities:
        return pats
    for kind, names in (("host name", redaction.hostnames), ("user name", redaction.usernames)):
        for name in names:
            if name and name not in GENERIC_USERS:
                pats.append((re.compile(rb"(?<![\w-])" + re.escape(name.encode()) + rb"(?![\w-])"),
                             f"this machine's {kind}"))
    for home in redaction.homes:
        if home and Path(home).name not in GENERIC_USERS and home not in ("/",):
            pats.append((re.compile(rb"(?<![\w./-])" + re.escape(home.encode()) + rb"(?![\w.-])"),
                         "a home folder of this machine"))
    return pats


def _scan_bytes(path: Path, patterns: list[tuple[re.Pattern[bytes], str]]) -> str | None:
    overlap = 4096
    tail = b""
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            data = tail + chunk
            for pattern, what in patterns:
                if pattern.search(data):
                    return what
            tail = data[-overlap:]
    return None


def _secret_keys(obj: Any) -> str | None:
    if isinstance(obj, dict):
        for key, value in obj.items():
            if isinstance(key, str) and secret_key(key) and isinstance(value, str) and value and value != REDACTED:
                return f"a value under the secret-looking key {key!r}"
            found = _secret_keys(value)
            if found:
                return found
    elif isinstance(obj, list):
        for value in obj:
            found = _secret_keys(value)
            if found:
                return found
    return None


def _parquet_strings(path: Path) -> Iterable[bytes]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path)
    names = [f.name for f in pf.schema_arrow if pa.types.is_string(f.type) or pa.types.is_list(f.type)]
    if not names:
        return
    for batch in pf.iter_batches(columns=names, batch_size=65536):
        for column in batch.columns:
            values = column.flatten() if pa.types.is_list(column.type) else column
            yield "\n".join(v for v in values.to_pylist() if v).encode()


def find_leak(root: Path, rels: Iterable[str], redaction: Redaction) -> Leak | None:
    """The first leak in the bundle files `rels` (relative to `root`), or None."""
    everything, secrets_only = _patterns(redaction), _patterns(redaction, identities=False)
    for rel in rels:
        path = root / rel
        patterns = secrets_only if rel.startswith(CODE_DIR) else everything
        if rel.endswith(".parquet"):
            for text in _parquet_strings(path):
                for pattern, what in patterns:
                    if pattern.search(text):
                        return Leak(rel, what)
            continue
        what = _scan_bytes(path, patterns)
        if what:
            return Leak(rel, what)
        if rel.endswith(".json") and path.stat().st_size < 64 << 20:
            try:
                what = _secret_keys(json.loads(path.read_bytes()))
            except (ValueError, UnicodeDecodeError):
                what = None
            if what:
                return Leak(rel, what)
    return None


def check_publishable(root: Path, manifest: dict[str, Any], redaction: Redaction | None = None,
                      extra: Iterable[str] = ()) -> None:
    """Refuse (CheckFailed, one line naming the file) a bundle that would publish a secret or identity."""
    if manifest.get("redacted") is not True:
        raise CheckFailed("the bundle was written with --no-redact: it names hosts, users and folders", file=root /
                          "manifest.json", field="redacted", fix="publish a bundle written with redaction on")
    redaction = redaction or Redaction.for_this_machine(environ=os.environ)
    rels = ["manifest.json", *(e["path"] for e in manifest["files"]), *extra]
    leak = find_leak(root, rels, redaction)
    if leak is not None:
        raise CheckFailed(f"contains {leak.what}; nothing was published", file=root / leak.path,
                          fix="remove it from the bundle (or rerun with redaction), then publish again")


def machine_redaction() -> Redaction:
    """This machine's identities and secrets (what `check_publishable` looks for by default)."""
    return Redaction.for_this_machine(environ=os.environ)

