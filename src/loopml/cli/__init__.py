"""The ``loopml`` command line (Typer + Rich)."""
