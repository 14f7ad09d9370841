"""Fingerprints: the host, GPUs, code and dataset behind a result, and the redaction applied to them.

Modules: `host` (CPU, memory, OS, container engine), `gpu` (NVML), `code` (git state, workload
tree hash), `dataset` (manifest root hash), `redact` (what may be written about a machine).
"""
