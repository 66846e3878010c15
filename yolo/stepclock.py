"""Where an epoch's seconds go: waiting for data, or computing. On CUDA the steps are not synchronised (the host
queues step k+1 while the GPU runs step k), so the wait that counts is the GPU's: the idle time between one step's
last kernel and the next step's first, read from CUDA events. On the CPU the host is the device: the wait is the
time blocked taking the next batch.

    clock = StepClock(device)
    clock.start()
    for batch in loader:
        clock.batch_ready()  # before the step's first kernel
        ...                  # the step
        clock.step_done()    # after its last kernel
    wait_s, compute_s = clock.stop()

`start(startup=True)` (a run's first epoch) books the first batch's wait apart, as `clock.startup`: the loader's
one-time start (its worker processes, the pipeline's build, the first batch through it), not the steady data wait.
"""

from __future__ import annotations

import time
from collections import deque

import torch


class StepClock:
    FOLD_AFTER = 16  # event pairs kept before the finished ones are summed: memory stays bounded per epoch

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.device = device
        self.t0 = self.t_done = 0.0
        self.wait = 0.0  # seconds summed so far
        self.host_wait = 0.0  # the host's time blocked taking batches (equals `wait` on the CPU)
        self.startup = 0.0  # start(startup=True): the first batch's wait, outside wait and compute
        self.first_is_startup = False
        self.pending: deque = deque()  # CUDA: (previous step's end, this step's start) events not yet summed
        self.last_end = None

    def start(self, startup: bool = False) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)
        self.t0 = self.t_done = time.perf_counter()
        self.wait = self.host_wait = self.startup = 0.0
        self.first_is_startup = startup
        self.pending.clear()
        self.last_end = None

    def batch_ready(self) -> None:
        now = time.perf_counter()
        blocked = now - self.t_done
        if self.first_is_startup:
            self.startup, self.first_is_startup = blocked, False
            return
        self.host_wait += blocked
        if not self.cuda or self.last_end is None:  # CUDA's first batch: the GPU had nothing queued meanwhile
            self.wait += blocked
            return
        begin = torch.cuda.Event(enable_timing=True)
        begin.record()
        self.pending.append((self.last_end, begin))
        while self.pending and (len(self.pending) > self.FOLD_AFTER or self.pending[0][1].query()):
            end, begin = self.pending.popleft()
            begin.synchronize()  # at once for all but a pair that fills the window: queued steps ago
            self.wait += end.elapsed_time(begin) / 1000

    def step_done(self) -> None:
        if self.cuda:
            self.last_end = torch.cuda.Event(enable_timing=True)
            self.last_end.record()
        self.t_done = time.perf_counter()

    def elapsed(self) -> float:
        """Seconds since start(), less the loader's start."""
        return time.perf_counter() - self.t0 - self.startup

    def stop(self) -> tuple[float, float]:
        """(data wait, compute) seconds, adding up to elapsed() (CUDA: after the queue drains)."""
        if self.cuda:
            torch.cuda.synchronize(self.device)
            for end, begin in self.pending:
                self.wait += end.elapsed_time(begin) / 1000
            self.pending.clear()
        return self.wait, max(self.elapsed() - self.wait, 0.0)
