"""Result bundles: the Parquet tables, manifest, environment and code of one reproduction.

`schemas` (declared tables with units), `events` (events.jsonl -> rows), `summary` (a run's
outcome and metrics), `writer` (BundleWriter), `reader` (read_bundle, verify_bundle).
docs/bundle.md describes the layout.
"""
