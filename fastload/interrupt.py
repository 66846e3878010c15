"""Ctrl-C: worker processes ignore it and the main process stops them, so the user reads one line saying what was
kept, not a KeyboardInterrupt traceback from every process."""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager

import click


class Interrupted(click.ClickException):
    """Stopped by Ctrl-C (SIGINT): one line, exit 130 as a shell reports a command killed by SIGINT."""

    exit_code = 130


def ignore_ctrl_c() -> None:
    """A worker process's first step: SIGINT is for the main process, which stops the workers."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextmanager
def ctrl_c_held():
    """Ctrl-C held back while workers are forked: a child inherits the handler that only records (and may then
    ignore it for good: ignore_ctrl_c), and the parent raises it once the workers are in their pool (and stopped
    with it). Only the main thread gets signals; elsewhere nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    got: list = []
    previous = signal.signal(signal.SIGINT, lambda *_: got.append(1))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if got and callable(previous):
        previous(signal.SIGINT, None)


@contextmanager
def workers_ignoring_ctrl_c():
    """Processes started inside ignore SIGINT (inherited through spawn too, where a handler is not), for libraries
    that spawn their own workers (DALI once CUDA is up); a Ctrl-C meanwhile is lost. Only the main thread can set
    handlers; elsewhere nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
