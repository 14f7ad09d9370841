"""Executors: WHERE and WHEN a run's Launch executes (inline on this machine; Slurm)."""
