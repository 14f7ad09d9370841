"""Limits the planner enforces (kept apart so the CLI can import them without pydantic)."""

MAX_RUNS = 20_000
