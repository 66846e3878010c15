"""The one exception type for mistakes a user can make: bad paths, bad input files, bad options."""

import click


class FastloadError(click.ClickException):
    """A user-facing failure: one line naming the file and the reason; the CLI exits with code 2."""

    exit_code = 2


class BadInput(Exception):
    """One input file cannot be packed; the packer records it in `skipped` and goes on."""


class BadRecord(FastloadError):
    """A record of a store that the loader cannot use (damaged since it was packed): one line naming it."""
