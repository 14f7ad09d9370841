"""Where runs execute: the container engine (Docker) and the local engine, behind one interface."""
