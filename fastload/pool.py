"""Work spread over forked worker processes, results in order, that survives a worker's death (the OOM killer) and
ends at once on Ctrl-C. Each worker has its own pipe and no thread stands between: what a worker was given when it
died is known, and stopping never waits on a half-written result. (ProcessPoolExecutor's thread hung for ever on
the result a worker was writing when it was stopped, and multiprocessing.Pool waits for ever for a lost task.)

A batch whose worker died runs again alone in the pool, so a second death is that batch's doing; a batch that kills
its worker alone runs item by item, and an item that kills its worker alone gets died(item, how)."""

from __future__ import annotations

import multiprocessing
import pickle
import signal
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from multiprocessing.connection import Connection, wait

from fastload.errors import JobFailed
from fastload.interrupt import ctrl_c_held, ignore_ctrl_c

_SMALL = 64 << 10  # a job this small waits in the pipe while the worker is busy (the pipe holds it): no deadlock
_DEPTH = 2  # jobs a worker holds at most: the next one is there when it sends a result


class WorkerError(Exception):
    """A worker's traceback: the cause attached to an exception raised in a worker, or the exception itself when
    the original (or the batch's results) could not be pickled back."""


def _serve(fn: Callable, conn: Connection, others: list[Connection]) -> None:
    """A worker: batches in, [fn(x) for x in batch] out, until the pipe closes."""
    ignore_ctrl_c()
    for other in others:  # the parent's ends (its own, those of the workers forked before): EOF when it is gone
        other.close()
    while True:
        try:
            batch = pickle.loads(conn.recv_bytes())
        except (EOFError, OSError):
            return
        try:
            out = (True, [fn(x) for x in batch])
        except BaseException as e:
            out = (False, e, traceback.format_exc())
        try:
            try:
                blob = pickle.dumps(out, pickle.HIGHEST_PROTOCOL)
            except Exception:
                blob = pickle.dumps((False, WorkerError(out[-1] if not out[0] else traceback.format_exc()), ""))
            conn.send_bytes(blob)
        except OSError:  # the main process is gone
            return


class _Worker:
    def __init__(self, fn: Callable, others: list[Connection]) -> None:
        context = multiprocessing.get_context("fork")
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_serve, args=(fn, child, [*others, self.conn]), daemon=True)
        self.process.start()
        child.close()
        self.jobs: deque = deque()  # (index, batch) given, oldest first

    def give(self, index: int, batch: list, blob: bytes) -> None:
        self.jobs.append((index, batch))
        try:
            self.conn.send_bytes(blob)
        except OSError:  # it died: wait() sees its sentinel
            pass

    def receive(self) -> tuple | None:
        """(index, results or the exception fn raised) for its oldest job; None when it died (a result it was
        writing is dropped)."""
        try:
            out = pickle.loads(self.conn.recv_bytes())
        except (EOFError, OSError):
            return None
        index, _ = self.jobs.popleft()
        if not out[0] and out[2]:
            out[1].__cause__ = WorkerError(f"in the worker:\n{out[2]}")  # shown under the exception's traceback
        return index, out[1]

    def how(self) -> str:
        """How it died: "SIGKILL", "exit 1"."""
        self.process.join()
        code = self.process.exitcode
        return signal.Signals(-code).name if code and code < 0 else f"exit {code}"

    def stop(self) -> None:
        """After terminate(): SIGKILL if SIGTERM has not ended it in 5 s."""
        self.process.join(5)
        if self.process.exitcode is None:
            self.process.kill()
            self.process.join()
        self.conn.close()


class _Pool:
    def __init__(self, fn: Callable, workers: int) -> None:
        self.fn, self.size = fn, workers
        self.workers: list[_Worker] = []

    def worker(self, blob: bytes) -> _Worker | None:
        """A worker that can take a job now (started if none is idle and the pool is not full), or None."""
        idle = [w for w in self.workers if not w.jobs]
        if idle:
            return idle[0]
        if len(self.workers) < self.size:
            with ctrl_c_held():
                self.workers.append(_Worker(self.fn, [w.conn for w in self.workers]))
            return self.workers[-1]
        if len(blob) <= _SMALL:
            return min((w for w in self.workers if len(w.jobs) < _DEPTH), key=lambda w: len(w.jobs), default=None)
        return None

    def busy(self) -> list[_Worker]:
        return [w for w in self.workers if w.jobs]

    def ready(self) -> list[_Worker]:
        """The busy workers with a result to read or dead, once at least one is."""
        busy = self.busy()
        by = {w.conn: w for w in busy} | {w.process.sentinel: w for w in busy}
        return list({by[r]: None for r in wait(list(by))})

    def drop(self, dead: _Worker) -> str:
        """Take a dead worker out; how it died."""
        how = dead.how()
        dead.conn.close()
        self.workers.remove(dead)
        return how

    def alone(self, batch: list) -> list | str:
        """fn over `batch` with nothing else running: its results, or how its worker died (its own doing)."""
        blob = _dumps(batch)
        worker = self.worker(blob)
        worker.give(-1, batch, blob)
        got = worker.receive()
        if got is None:
            return self.drop(worker)
        return _results(got[1])

    def stop(self) -> None:
        """Without waiting for the work in flight (Ctrl-C, an error): the workers are ended."""
        for w in self.workers:
            w.process.terminate()
        for w in self.workers:
            w.stop()
        self.workers.clear()


def _results(got: list | BaseException) -> list:
    """A batch's results; the exception fn raised on it is raised here, in order (after the batches before it)."""
    if isinstance(got, BaseException):
        raise got
    return got


def died_reading(how: str) -> str:
    """The reason given for an input whose worker died on it, alone and again (how: "SIGKILL")."""
    return f"its worker process died reading it ({how}): out of memory?"


def _dumps(batch: list) -> bytes:
    return pickle.dumps(batch, pickle.HIGHEST_PROTOCOL)


def ordered_map(
    fn: Callable,
    items: Iterable,
    workers: int,
    batch: int = 32,
    died: Callable[[object, str], object] | None = None,
) -> Iterator:
    """map(fn, items) over `workers` forked processes, in order, with at most 4 batches per worker read ahead. An
    exception in fn is raised here. An item whose worker dies on it (the OOM killer, a crash in a decoder) yields
    died(item, how) (how: "SIGKILL"); without `died` that is a JobFailed. fn is inherited through fork: a closure
    will do; items and results are pickled."""
    if workers <= 1:
        yield from map(fn, items)
        return
    it = iter(items)
    pool = _Pool(fn, workers)
    try:
        yield from _run(pool, it, batch, 4 * workers, died)
    finally:
        pool.stop()


def _run(pool: _Pool, it: Iterator, batch: int, ahead: int, died: Callable | None) -> Iterator:
    done: dict[int, list | BaseException] = {}  # results not yet yielded, by batch index
    lost: list[tuple[int, list]] = []  # batches whose worker died, to run again alone
    given, emitted, exhausted, pending = 0, 0, False, None
    while True:
        while not lost and not exhausted and given - emitted < ahead:
            if pending is None:
                chunk = list(islice(it, batch))
                if not chunk:
                    exhausted = True
                    break
                pending = (chunk, _dumps(chunk))
            worker = pool.worker(pending[1])
            if worker is None:
                break
            worker.give(given, *pending)
            given, pending = given + 1, None
        while emitted in done:
            yield from _results(done.pop(emitted))
            emitted += 1
        if not pool.busy():
            if not lost:
                if exhausted and emitted == given:
                    return
                continue
            for index, chunk in sorted(lost):
                done[index] = _rescue(pool, chunk, died)
            lost.clear()
            continue
        for worker in pool.ready():
            got = worker.receive()
            if got is None:
                lost.extend(worker.jobs)
                pool.drop(worker)
            else:
                done[got[0]] = got[1]


def _rescue(pool: _Pool, chunk: list, died: Callable | None) -> list:
    """A batch whose worker died, again alone in the pool; item by item if it kills its worker alone."""
    got = pool.alone(chunk)
    if not isinstance(got, str):
        return got
    out = []
    for item in chunk:
        got = pool.alone([item])
        if not isinstance(got, str):
            out.extend(got)
        elif died is None:
            raise JobFailed(f"a worker process died ({got}), twice on the same input: out of memory?")
        else:
            out.append(died(item, got))
    return out
