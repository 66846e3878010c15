"""DALI's source workers hand each batch's bytes to the pipeline through POSIX shared memory (/dev/shm). Docker gives
a container 64 MB of it by default; a worker whose batch does not fit dies of SIGBUS, and DALI says only "Worker
data receiving interrupted". Say so in one line: before the workers start when they cannot fit, and after one dies.
"""

from __future__ import annotations

import os
import signal

from fastload.errors import JobFailed

SHM = "/dev/shm"
ADVICE = "give it more (Docker: --shm-size=2g or --ipc=host), or use fewer --workers or a smaller --batch"
DEAD_WORKER = "Worker data receiving interrupted"  # DALI's message when a source worker process has exited


def _mb(n: float) -> str:
    return f"{n / 2**20:,.0f} MB" if n >= 10 * 2**20 else f"{n / 2**20:.1f} MB"


def shm_space(path: str = SHM) -> tuple[int, int] | None:
    """(total, free) bytes of the shared-memory file system, or None where there is none."""
    try:
        st = os.statvfs(path)
    except OSError:
        return None
    return st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize


def batch_bytes(store, batch: int) -> float:
    """The encoded bytes of an average batch of `store`'s split, or of image files (what a worker writes to
    shared memory)."""
    return batch * store.image_bytes


def check_shared_memory(per_batch: float, buffers: int, path: str = SHM) -> None:
    """JobFailed if `buffers` shared buffers of an average batch each cannot fit in `path`'s free space. DALI keeps
    one buffer per batch in flight (the pipeline's queue and the batches the source computes ahead) and grows each
    by doubling until its batch fits, so this is the least they take."""
    space = shm_space(path)
    need = buffers * per_batch
    if space is not None and need > space[1]:
        raise JobFailed(
            f"{path}: {_mb(space[1])} free, but DALI's source workers hand over ~{_mb(need)} of batches ({buffers} "
            f"in flight of ~{_mb(per_batch)}): {ADVICE}"
        )


def dead_worker(pipe, error: Exception | None = None, path: str = SHM) -> JobFailed | None:
    """A one-line JobFailed when a source worker of `pipe` has died, with how it died and how much shared memory
    there is; None when all live. With `error` (what run() raised): only when it is DALI's word that a worker died.
    Checked before each run() too: a worker killed while it waited for a task leaves the next task's hand-over
    (multiprocessing.Condition.notify, which waits for the woken worker's reply) waiting forever."""
    if error is not None and DEAD_WORKER not in str(error):
        return None
    try:  # DALI's pool keeps its processes privately; the exit code says SIGBUS (shared memory) or SIGKILL (OOM)
        codes = [p.exitcode for p in pipe._py_pool.pool._processes if p.exitcode]
    except AttributeError:  # no parallel source, or a DALI that keeps them elsewhere
        codes = []
    if error is None and not codes:
        return None
    first = [c for c in codes if c != -signal.SIGTERM] or codes  # DALI's pool stops the others with SIGTERM
    how = f" ({', '.join(signal.Signals(-c).name if c < 0 else f'exit {c}' for c in first)})" if first else ""
    space = shm_space(path)
    room = f"{path} has {_mb(space[0])} ({_mb(space[1])} free)" if space else f"there is no {path}"
    return JobFailed(f"a DALI source worker died{how}; workers hand batches over in shared memory and {room}: "
                     f"if that is small, {ADVICE}")  # fmt: skip
