"""`python -m coopscore` runs the CLI."""

from coopscore.cli.main import main

main()
