"""Telemetry: what the host saw while a run executed, sampled at a fixed rate on a thread.

Sources (`nvml`, `docker_stats`, `process`) each turn one reading into sample rows of the
schema in `schema`; `sampler.TelemetrySampler` drives them; `summary` reads the rows back
(throttling flags, energy).
"""
