"""The command line: thin Typer commands that call into the library (see main.py)."""
