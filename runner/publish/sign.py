"""Detached Ed25519 signatures over a bundle's manifest.json (which holds every file's sha256).

`manifest.json.sig` is a small JSON document: the signature, the sha256 of the manifest it
signs, and the signer's public key (raw, base64) with its key id. Verifying without a trusted
key checks only that the manifest is the one that was signed; `--public-key` also checks who
signed it. Keys are PEM: PKCS#8 private (mode 0600), SubjectPublicKeyInfo public.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from runner.bundle.reader import MAX_MANIFEST_BYTES
from runner.errors import BundleError, CheckFailed, RunnerError, UsageError
from runner.fileio import read_bounded
from runner.publish.files import write_new

MAX_SIGNATURE_BYTES = 64 * 2**10  # a runner-signature/1 document is about 500 bytes
SIGNATURE_FILE = "manifest.json.sig"
SIGNED_FILE = "manifest.json"
SIG_FORMAT = "runner-signature/1"
PRIVATE_KEY_FILE = "runner-signing-key.pem"
PUBLIC_KEY_FILE = "runner-signing-key.pub.pem"


def _crypto():
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError:
        raise RunnerError("signing needs the `cryptography` package, which is not installed",
                          fix="pip install 'runner[sign]'") from None
    return serialization, ed25519


def key_id(raw_public: bytes) -> str:
    """A short, stable name for a public key: sha256 of its 32 raw bytes, 16 hex digits."""
    return hashlib.sha256(raw_public).hexdigest()[:16]


def _raw(public_key: Any) -> bytes:
    serialization, _ = _crypto()
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def generate_keypair(out_dir: Path) -> tuple[Path, Path, str]:
    """Write a new Ed25519 key pair into `out_dir`; returns (private, public, key id). Never overwrites."""
    serialization, ed25519 = _crypto()
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError("is not a folder", file=out_dir, field="--out", fix="give a folder for the key pair")
    out_dir.mkdir(parents=True, exist_ok=True)
    private, public = out_dir / PRIVATE_KEY_FILE, out_dir / PUBLIC_KEY_FILE
    for path in (private, public):
        if path.exists():
            raise UsageError("exists; keys are never overwritten", file=path, field="--out",
                             fix="choose another --out folder, or remove the old pair if you mean it")
    key = ed25519.Ed25519PrivateKey.generate()
    write_new(private, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption()), mode=0o600)
    write_new(public, key.public_key().public_bytes(serialization.Encoding.PEM,
                                                    serialization.PublicFormat.SubjectPublicKeyInfo))
    return private, public, key_id(_raw(key.public_key()))


def _read_key_file(path: Path, kind: str) -> bytes:
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"no such {kind} key file", file=path, fix="give the PEM file `runner keygen` wrote")
    return path.read_bytes()


def load_private_key(path: Path) -> Any:
    serialization, ed25519 = _crypto()
    data = _read_key_file(path, "private")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as e:
        raise UsageError(f"is not an unencrypted PEM private key ({e})", file=path, field="--key",
                         fix="give the private key `runner keygen` wrote") from None
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise UsageError("is not an Ed25519 key", file=path, field="--key", fix="create one with `runner keygen`")
    return key


def load_public_key(path: Path) -> Any:
    serialization, ed25519 = _crypto()
    data = _read_key_file(path, "public")
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as e:
        raise UsageError(f"is not a PEM public key ({e})", file=path, field="--public-key",
                         fix="give the .pub.pem file `runner keygen` wrote") from None
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise UsageError("is not an Ed25519 public key", file=path, field="--public-key",
                         fix="give the .pub.pem file `runner keygen` wrote")
    return key


def signature_document(manifest_bytes: bytes, private_key: Any) -> dict[str, Any]:
    raw = _raw(private_key.public_key())
    return {
        "format": SIG_FORMAT, "algorithm": "ed25519", "signed_file": SIGNED_FILE,
        "signed_sha256": hashlib.sha256(manifest_bytes).hexdigest(),
        "key_id": key_id(raw), "public_key": base64.b64encode(raw).decode(),
        "signature": base64.b64encode(private_key.sign(manifest_bytes)).decode(),
        "created": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
    }


def sign_bundle(bundle: Path, key_path: Path) -> tuple[Path, str]:
    """Write `<bundle>/manifest.json.sig`; returns (its path, the key id). An existing signature stays."""
    from runner.audit.verify import verify_bundle

    bundle = Path(bundle)
    manifest = bundle / SIGNED_FILE
    key = load_private_key(key_path)
    target = bundle / SIGNATURE_FILE
    if target.exists() or target.is_symlink():
        raise UsageError("exists; a signature is never overwritten", file=target,
                         fix="remove it first if you mean to sign again")
    result = verify_bundle(bundle)  # BundleError: no bundle at all. A signature vouches for what verified
    if not result.ok:
        raise CheckFailed(f"fails verification ({len(result.problems)} problem(s); first: "
                          f"{result.problems[0].line()}); not signed", file=bundle,
                          fix=f"run `runner bundle verify {bundle}` and sign an intact bundle")
    data = read_bounded(manifest, MAX_MANIFEST_BYTES, BundleError, what="manifest", follow_links=False)
    doc = signature_document(data, key)
    if target.exists():
        raise UsageError("exists; a signature is never overwritten", file=target,
                         fix="remove it first if you mean to sign again")
    write_new(target, (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode())
    return target, doc["key_id"]


@dataclass(frozen=True)
class SignatureCheck:
    """status: valid | invalid | absent (no signature, none required) | missing (a key was given)."""

    status: str
    detail: str
    key_id: str | None = None
    trusted: bool = False  # checked against a key the user gave, not only the one the file carries

    @property
    def ok(self) -> bool:
        return self.status in ("valid", "absent")


def check_signature(bundle: Path, public_key: Path | None = None) -> SignatureCheck:
    """Check `manifest.json.sig` against manifest.json, with the given public key when there is one."""
    bundle = Path(bundle)
    sig_path, manifest = bundle / SIGNATURE_FILE, bundle / SIGNED_FILE
    trusted = load_public_key(public_key) if public_key is not None else None
    if not os.path.lexists(sig_path):  # a link or FIFO there is "invalid", never "absent"
        if trusted is not None:
            return SignatureCheck("missing", "no signature, but --public-key asks for one")
        return SignatureCheck("absent", "not signed")
    try:
        doc = json.loads(read_bounded(sig_path, MAX_SIGNATURE_BYTES, BundleError, what="signature",
                                      follow_links=False).decode("utf-8"))
        if not isinstance(doc, dict) or doc.get("format") != SIG_FORMAT or doc.get("algorithm") != "ed25519":
            raise ValueError(f"not a {SIG_FORMAT} Ed25519 signature")
        signature = base64.b64decode(doc["signature"], validate=True)
        embedded = base64.b64decode(doc["public_key"], validate=True)
    except (ValueError, KeyError, TypeError, UnicodeDecodeError, RecursionError, BundleError) as e:
        return SignatureCheck("invalid", f"unreadable signature file ({e})")
    _, ed25519 = _crypto()
    from cryptography.exceptions import InvalidSignature

    try:
        data = read_bounded(manifest, MAX_MANIFEST_BYTES, BundleError, what="manifest", follow_links=False)
    except BundleError as e:
        return SignatureCheck("invalid", e.message)
    if trusted is not None:
        kid = key_id(_raw(trusted))
        if embedded != _raw(trusted):
            return SignatureCheck("invalid", f"signed by key {key_id(embedded)}, not by the given key {kid}", kid, True)
        key = trusted
    else:
        kid = key_id(embedded)
        try:
            key = ed25519.Ed25519PublicKey.from_public_bytes(embedded)
        except ValueError as e:
            return SignatureCheck("invalid", f"the embedded public key is not Ed25519 ({e})", kid)
    try:
        key.verify(signature, data)
    except InvalidSignature:
        return SignatureCheck("invalid", "does not match manifest.json (the manifest changed after signing)",
                              kid, trusted is not None)
    how = "checked against the given public key" if trusted is not None else \
        "integrity only; pass --public-key to check who signed it"
    return SignatureCheck("valid", f"valid Ed25519 signature by key {kid} ({how})", kid, trusted is not None)
