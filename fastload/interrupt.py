"""Ctrl-C: worker processes ignore it and the main process stops them, so the user reads one line saying what was
kept, not a KeyboardInterrupt traceback from every process."""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from multiprocessing import resource_tracker

import click


class Interrupted(click.ClickException):
    """Stopped by Ctrl-C (SIGINT): one line, exit 130 as a shell reports a command killed by SIGINT."""

    exit_code = 130


def ignore_ctrl_c() -> None:
    """A worker process's first step: SIGINT is for the main process, which stops the workers."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextmanager
def ctrl_c_held(spawn: bool = False):
    """Ctrl-C held back while workers start, then raised once they are in their pool (and stopped with it). SIGINT
    is blocked in this thread, and a process started meanwhile inherits the block, forked or spawned (a handler does
    not survive exec), so it never sees the Ctrl-C (a forked one may then ignore it for good: ignore_ctrl_c). One
    sent meanwhile reaches the handler that records it when the block is lifted (or another thread at once). Only
    the main thread gets signals; elsewhere nothing changes.
    `spawn`: multiprocessing will spawn them. Its resource tracker, started with the first spawned process, unblocks
    SIGINT after starting itself (bpo-33613), so it is started before the block."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    if spawn:
        resource_tracker.ensure_running()
    got: list = []
    previous = signal.signal(signal.SIGINT, lambda *_: got.append(1))
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)  # a pending Ctrl-C is recorded here
        signal.signal(signal.SIGINT, previous)
    if got and callable(previous):
        previous(signal.SIGINT, None)
