"""`python -m runner.cli` (used by tests that need a separate process)."""

from runner.cli.main import main

main()
