"""Batches made ahead in a thread: DALI's run(), the boxes' conversion and the copies to the device happen while
the training step runs, so the step only takes a finished batch from a queue. On CUDA the copies go on a side
stream that the consumer's stream waits for."""

from __future__ import annotations

import queue
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import nullcontext

import torch


class StageTimes:
    """Per-batch seconds of the producer's stages (the last `keep` batches each), for `fastload bench`."""

    def __init__(self, keep: int = 1024) -> None:
        self.keep, self.seconds = keep, {}

    def add(self, **stages: float) -> None:
        for name, s in stages.items():
            self.seconds.setdefault(name, deque(maxlen=self.keep)).append(s)

    def timed(self, run: Callable[[], object], handover: Callable[[object], object]) -> object:
        """handover(run()), timing the two as 'pipeline' and 'handover'."""
        t0 = time.perf_counter()
        outputs = run()
        t1 = time.perf_counter()
        result = handover(outputs)
        self.add(pipeline=t1 - t0, handover=time.perf_counter() - t1)
        return result

    def clear(self) -> None:
        self.seconds.clear()

    def summary(self) -> dict:
        """{stage: {median_ms, p95_ms}} over the batches kept."""
        out = {}
        for name, values in self.seconds.items():
            v = sorted(values)
            out[name] = {
                "median_ms": round(1000 * statistics.median(v), 2),
                "p95_ms": round(1000 * v[int(0.95 * (len(v) - 1))], 2),
            }
        return out


def prefetched(produce: Callable[[int], object], n: int, device: str, depth: int = 2) -> Iterator:
    """Yield produce(0), ..., produce(n - 1), each made up to `depth` batches ahead in one worker thread. Leaving
    early stops the thread after the batch it is making."""
    if n <= 0:
        return
    side = torch.cuda.Stream(device) if device.startswith("cuda") else None
    made: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def work() -> None:
        try:
            with torch.cuda.stream(side) if side is not None else nullcontext():
                for k in range(n):
                    item = produce(k)
                    ready = None
                    if side is not None:
                        ready = torch.cuda.Event()
                        ready.record(side)
                        ready.synchronize()  # the copies out of DALI's buffers are done before its next run()
                    while not stop.is_set():
                        try:
                            made.put((item, ready, None), timeout=0.1)
                            break
                        except queue.Full:
                            continue
                    if stop.is_set():
                        return
        except BaseException as error:  # handed to the consumer, raised there
            made.put((None, None, error))

    thread = threading.Thread(target=work, name="fastload-prefetch", daemon=True)
    thread.start()
    try:
        for _ in range(n):
            item, ready, error = made.get()
            if error is not None:
                raise error
            if ready is not None:
                stream = torch.cuda.current_stream(torch.device(device))
                stream.wait_event(ready)
                for t in item.tensors():
                    t.record_stream(stream)  # made on the side stream, used on this one
            yield item
    finally:
        stop.set()
        thread.join()
