"""Comparison reports from bundles: the tables and figures the published studies made.

`load` (many bundles' runs, epochs, latency, references), `stats` (median, t interval, Welch),
`model` (tables and cells), `tables` (build_report), `output` (rich, Markdown, CSV, Parquet,
HTML), `plots` (PNG), `write` (write_report: the report folder). docs/audit.md describes them.
"""
