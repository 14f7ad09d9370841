"""Auditing result bundles: verify them byte for byte, diff their provenance, judge a reproduction.

`verify` (hashes, schemas, manifest fields, signature), `diff` (provenance_diff, metric_deltas),
`tolerances` (the one table of what counts as reproduced), `reproduction` (compare_runs ->
ReproductionReport), `render` (rich and Markdown). docs/audit.md describes each.
"""
