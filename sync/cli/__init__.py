"""Command line: ``python -m sync <command>``."""
