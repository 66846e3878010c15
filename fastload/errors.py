"""The exceptions that end a command with one line: mistakes a user can make (bad paths, bad input files, bad
options: exit 2) and failures of the machine around the job (a full disk, a path it may not write: exit 1)."""

import re

import click


class FastloadError(click.ClickException):
    """A user-facing failure: one line naming the file and the reason; the CLI exits with code 2."""

    exit_code = 2


class BadInput(Exception):
    """One input file cannot be packed; the packer records it in `skipped` and goes on."""


class BadRecord(FastloadError):
    """A record of a store that the loader cannot use (damaged since it was packed): one line naming it."""


class JobFailed(click.ClickException):
    """The job could not go on for a reason outside fastload (OSError: a full disk, a folder it may not write, a
    missing device file): one line, exit 1."""

    exit_code = 1


def os_error_line(error: Exception) -> str:
    """An OSError (or lmdb.Error) as one line naming the file: the target a temporary `.partial-PID` file was for."""
    name = getattr(error, "filename", None)
    line = f"{name}: {error.strerror or error}" if name is not None else str(error) or type(error).__name__
    return re.sub(r"[.]partial-[0-9]+[^:\s]*", "", line)
