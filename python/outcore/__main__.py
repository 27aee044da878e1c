"""`python -m outcore`: the `outcore` command (see `outcore.cli`)."""

from outcore.cli import run

run()
