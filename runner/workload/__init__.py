"""Code that runs inside a container: stdlib, numpy and ONE framework, imported lazily."""
