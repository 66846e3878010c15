"""Batches made ahead in a thread: DALI's run(), the boxes' conversion and the copies to the device happen while
the training step runs, so the step only takes a finished batch from a queue. On CUDA the copies go on a side
stream that the consumer's stream waits for."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from contextlib import nullcontext

import torch


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
                for t in (item.images, item.targets):
                    t.record_stream(stream)  # made on the side stream, used on this one
            yield item
    finally:
        stop.set()
        thread.join()
