"""Publishing bundles: RO-Crate metadata, REPRODUCING.md, signatures, and safe archives.

`publish` (publish_bundle), `rocrate` (build_crate), `reproducing` (REPRODUCING.md), `sign`
(Ed25519 keys and detached signatures), `leaks` (the redaction re-check), `archive` (safe
extraction and reproducible .tar.gz), `files` (write-new and staged folders).
"""
