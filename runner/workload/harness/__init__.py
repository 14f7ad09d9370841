"""The training and measurement harness: one protocol (protocol.py), one backend per framework."""
