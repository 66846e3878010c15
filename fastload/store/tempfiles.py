"""Atomic publication of a store: write under `<target>.partial-<pid>`, then rename into place."""

from __future__ import annotations

import glob
import os
import shutil


def partial_path(target: str) -> str:
    return f"{target}.partial-{os.getpid()}"


def write_atomic(path: str, data: bytes) -> None:
    """A small file written under a temporary name, then renamed into place."""
    tmp = partial_path(path)
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_partials(target: str, tag: str = "partial") -> None:
    """Delete leftovers (`<target>.<tag>-<pid>`) of writers that were killed (their pid no longer runs)."""
    for stale in glob.glob(glob.escape(target) + f".{tag}-*"):
        pid = stale.rsplit("-", 1)[-1]
        if pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
            _remove(stale)


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        os.remove(path)


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def publish(tmp: str, target: str) -> None:
    """Move a finished store into place. A file replaces atomically; a directory replacing a directory
    is first swapped aside, so a crash in between leaves the old store under `<target>.old-<pid>`."""
    parent = os.path.dirname(os.path.abspath(target))
    if os.path.isdir(tmp) and os.path.lexists(target):
        old = f"{target}.old-{os.getpid()}"
        os.replace(target, old)
        os.replace(tmp, target)
        _remove(old)
    else:
        if os.path.isdir(target):
            _remove(target)
        os.replace(tmp, target)
    _fsync_dir(parent)
