"""The ``burrow`` command line (Typer + Rich)."""
