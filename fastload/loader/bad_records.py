"""When DALI fails on a batch, find the record at fault and stop with one line naming it: DALI's own error (e.g.
"nvImageCodec failure") names no image, and a store damaged after packing is the user's to repair."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from fastload.errors import BadRecord
from fastload.loader.shm import dead_worker
from fastload.store import open_store
from fastload.verify import first_bad_record

# the batches DALI may be working on when run() fails: the one asked for and those its prefetch queue (2) holds
SUSPECT_BATCHES = 3


def run_naming_bad_record(pipe, store, suspects: Callable[[int], np.ndarray]):
    """pipe.run(); a one-line JobFailed when a source worker died (shm.dead_worker: checked before the run too), or,
    if the run fails, BadRecord naming the first bad record among suspects(j), the record indices of the j-th batch
    from the one asked for (j < SUSPECT_BATCHES), else DALI's error as it was."""
    died = dead_worker(pipe)
    if died is not None:
        raise died
    try:
        return pipe.run()
    except RuntimeError as error:
        died = dead_worker(pipe, error)
        if died is not None:
            raise died from None
        packed = open_store(store.path, store.split)  # as packed: a --single-cls view would fail every CRC
        indices = np.unique(np.concatenate([suspects(j) for j in range(SUSPECT_BATCHES)]))
        found = first_bad_record(packed, indices)
        if found is None:
            raise
        i, reason, decoded = found
        fix = "" if decoded else f", `fastload pack {store.path} -o NEW` copies the rest"  # pack checks CRCs only
        raise BadRecord(
            f"{store.path}: record {store.split}[{i}] ({packed.path_of(i)}): {reason}; "
            f"`fastload verify {store.path}{' --decode' if decoded else ''}` lists every bad record{fix}"
        ) from None
