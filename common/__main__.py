"""Let `python -m common` run the `tether` command (handy where the script is not on PATH)."""

from common.cli import cli

cli()
