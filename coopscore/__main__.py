"""`python -m coopscore` runs the CLI."""

from coopscore.cli import main

main()
