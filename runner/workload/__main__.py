"""Entry point of the container workload: `python -m runner.workload run|info|models`."""

from runner.workload.cli import main

raise SystemExit(main())
