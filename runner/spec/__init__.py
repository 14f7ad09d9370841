"""Experiment specs: the YAML model (`model`), its loader (`load`) and the planner (`plan`)."""
