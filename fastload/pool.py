"""Work spread over worker processes, results in order, that survives a worker's death. multiprocessing.Pool loses
the task of a worker the OOM killer ends and waits for its result forever; here the pool starts again, the work
that was in flight runs again one batch at a time (alone in the pool, so a death is that batch's doing) and a batch
that kills its worker runs item by item: an item that kills its worker alone gets died(item, how)."""

from __future__ import annotations

import multiprocessing
import signal
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from itertools import islice

from fastload.errors import JobFailed
from fastload.interrupt import ignore_ctrl_c


def _run_batch(fn: Callable, batch: list) -> list:
    return [fn(x) for x in batch]


class _Workers:
    """A fork ProcessPoolExecutor whose workers ignore Ctrl-C, started again after a death."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.start()

    def start(self) -> None:
        context = multiprocessing.get_context("fork")
        self.pool = ProcessPoolExecutor(self.workers, mp_context=context, initializer=ignore_ctrl_c)

    def processes(self) -> list:
        return list((getattr(self.pool, "_processes", None) or {}).values())  # the executor's own, by pid

    def restart(self) -> str:
        """Stop this pool after a death and start a new one; how its workers died ("SIGKILL"), apart from those
        the pool then stopped (SIGTERM). Read after the stop: the pool's thread reaps them meanwhile."""
        processes = self.processes()
        self.stop()
        self.start()
        codes = [p.exitcode for p in processes]
        codes = [c for c in codes if c and c != -signal.SIGTERM]
        return ", ".join(signal.Signals(-c).name if c < 0 else f"exit {c}" for c in codes) or "killed"

    def submit(self, fn: Callable, *args) -> Future | None:
        """fn(*args)'s future; None when the pool broke meanwhile (a worker died)."""
        try:
            return self.pool.submit(fn, *args)
        except BrokenProcessPool:
            return None

    def alone(self, fn: Callable, *args) -> object:
        """fn(*args) in the pool with nothing else running: a BrokenProcessPool is its own doing."""
        return self.pool.submit(fn, *args).result()

    def stop(self) -> None:
        """Without waiting for the work in flight (Ctrl-C, an error): the workers are ended."""
        for process in self.processes():
            process.terminate()
        self.pool.shutdown(wait=True, cancel_futures=True)


def ordered_map(
    fn: Callable,
    items: Iterable,
    workers: int,
    batch: int = 32,
    died: Callable[[object, str], object] | None = None,
) -> Iterator:
    """map(fn, items) over `workers` processes (fork), in order, with a bounded number of batches in flight. An item
    whose worker dies on it (the OOM killer, a crash in a decoder) yields died(item, how) (how: "SIGKILL"); without
    `died` that is a JobFailed."""
    if workers <= 1:
        yield from map(fn, items)
        return
    it = iter(items)
    pool = _Workers(workers)
    try:
        pending: deque = deque()  # (batch of items, its future)
        while True:
            while len(pending) < 4 * workers and (chunk := list(islice(it, batch))):
                pending.append((chunk, pool.submit(_run_batch, fn, chunk)))
            if not pending:
                return
            chunk, future = pending.popleft()
            results = _results(future)
            if results is None:  # a worker died: the batches in flight are lost
                pool.restart()
                for lost, future in [(chunk, None), *pending]:  # those done before the death are kept
                    done = _results(future)
                    yield from done if done is not None else _rerun(pool, fn, lost, died)
                pending.clear()
                continue
            yield from results
    finally:
        pool.stop()


def _results(future: Future | None) -> list | None:
    """The batch's results; None when its worker, or another, died."""
    try:
        return future.result() if future is not None else None
    except BrokenProcessPool:
        return None


def _rerun(pool: _Workers, fn: Callable, chunk: list, died: Callable | None) -> list:
    """fn over `chunk` alone in the pool; item by item if the batch kills its worker."""
    try:
        return pool.alone(_run_batch, fn, chunk)
    except BrokenProcessPool:
        pool.restart()
    out = []
    for item in chunk:
        try:
            out.append(pool.alone(fn, item))
        except BrokenProcessPool:
            how = pool.restart()
            if died is None:
                raise JobFailed(f"a worker process died ({how}), twice on the same input: out of memory?") from None
            out.append(died(item, how))
    return out
