"""Batches made ahead in a thread: in order, at most `depth` ahead, errors raised in the consumer, and a consumer
that leaves early stops the thread."""

import threading
import time

import pytest
import torch

from fastload.loader.batch import Batch
from fastload.loader.prefetch import prefetched


def make(calls):
    def produce(k):
        calls.append(k)
        return Batch(torch.full((1,), k), torch.zeros(0, 6), None)

    return produce


def test_yields_every_batch_in_order_made_ahead():
    calls = []
    it = prefetched(make(calls), 10, "cpu", depth=2)
    assert next(it).images.item() == 0
    time.sleep(0.3)
    assert calls == [0, 1, 2, 3]  # the one taken, two queued, one waiting to be queued
    assert [b.images.item() for b in it] == list(range(1, 10))


def test_an_error_in_the_producer_is_raised_in_the_consumer():
    def produce(k):
        if k == 3:
            raise RuntimeError("store.lmdb: record 3 is corrupt")
        return Batch(torch.zeros(1), torch.zeros(0, 6), None)

    with pytest.raises(RuntimeError, match="record 3"):
        list(prefetched(produce, 10, "cpu"))


def test_leaving_early_stops_the_thread():
    calls = []
    for b in prefetched(make(calls), 1000, "cpu", depth=2):
        if b.images.item() == 5:
            break
    assert not any(t.name == "fastload-prefetch" for t in threading.enumerate())
    assert len(calls) <= 9
