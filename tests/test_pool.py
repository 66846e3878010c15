"""Worker processes that die (the OOM killer's SIGKILL): multiprocessing.Pool would wait forever for the lost task;
ordered_map starts the pool again, runs what was in flight again, and gives an input that kills its worker alone
died(item, how). `fastload pack` goes on and packs every image when a worker is killed under it."""

import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from conftest import ROOT, children

from fastload.demo_data import DemoConfig, generate
from fastload.errors import JobFailed
from fastload.pack import PackOptions, pack
from fastload.pool import ordered_map
from fastload.store import open_store


def square_or_die(x: int) -> int:
    """x², except that 37 kills its own worker, always."""
    if x == 37:
        os.kill(os.getpid(), signal.SIGKILL)
    return x * x


def square_dying_once(job: tuple[int, str]) -> int:
    """x², except that the first worker to reach 50 is killed (the marker file says it was): a death that is not
    the input's doing, as when the OOM killer picks a worker for another process's memory."""
    x, marker = job
    if x == 50 and not os.path.exists(marker):
        open(marker, "w").close()
        os.kill(os.getpid(), signal.SIGKILL)
    return x * x


def test_an_input_that_kills_its_worker_gets_died_and_the_rest_their_results_in_order():
    got = list(ordered_map(square_or_die, range(200), workers=2, batch=8, died=lambda x, how: (x, how)))
    assert got == [(37, "SIGKILL") if x == 37 else x * x for x in range(200)]


def test_a_death_that_is_not_the_inputs_doing_loses_nothing(tmp_path):
    jobs = [(x, str(tmp_path / "killed")) for x in range(200)]
    got = list(ordered_map(square_dying_once, jobs, workers=2, batch=8, died=lambda job, how: None))
    assert os.path.exists(tmp_path / "killed")  # a worker did die
    assert got == [x * x for x in range(200)]


def test_without_died_an_input_that_kills_its_worker_is_a_one_line_job_failure():
    with pytest.raises(JobFailed, match=r"^a worker process died \(SIGKILL\), twice on the same input: out of memory"):
        list(ordered_map(square_or_die, range(100), workers=2, batch=8))


def half_or_raise(x: int) -> int:
    if x == 70:
        raise ValueError(f"{x} is odd here")
    return x // 2


def test_an_exception_in_a_worker_is_raised_to_the_caller_after_the_results_before_it():
    got = []
    with pytest.raises(ValueError, match="^70 is odd here$"):
        for y in ordered_map(half_or_raise, range(100), workers=2, batch=8):
            got.append(y)
    assert got == [x // 2 for x in range(64)]  # the batches before the failing one, in order


def test_pack_packs_every_image_when_the_oom_killer_ends_one_of_its_workers(tmp_path):
    data = str(tmp_path / "data")
    generate(data, DemoConfig(images=120, seed=5, scale=1.0))
    before = set(children())
    killed = []

    def kill_a_worker() -> None:  # as the OOM killer: the first pack worker to appear, mid-pack
        deadline = time.monotonic() + 60
        while not killed and time.monotonic() < deadline:
            for pid in set(children()) - before:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                return
            time.sleep(0.001)

    killer = threading.Thread(target=kill_a_worker)
    killer.start()
    report = pack(data, str(tmp_path / "k.lmdb"), PackOptions(workers=2), quiet=True)
    killed.append(None)  # stops the killer if it found nothing
    killer.join()
    assert killed[0] is not None, "no pack worker was seen to kill"
    assert report["skipped"] == []
    whole = pack(data, str(tmp_path / "w.lmdb"), PackOptions(workers=1), quiet=True)
    for split in ("train", "val"):
        assert report["splits"][split]["count"] == whole["splits"][split]["count"]
        a, b = open_store(str(tmp_path / "k.lmdb"), split), open_store(str(tmp_path / "w.lmdb"), split)
        assert [a.path_of(i) for i in range(len(a))] == [b.path_of(i) for i in range(len(b))]
        assert all(bytes(a.image(i)) == bytes(b.image(i)) for i in range(len(a)))


STOP_EARLY = """
import os
from fastload.pool import ordered_map

def big(x):
    return os.urandom(4 << 20)

for _ in range(20):
    results = ordered_map(big, range(64), workers=2, batch=1)
    next(results)
    results.close()  # as Ctrl-C or an error in the consumer does: the workers are stopped mid-result
print("done")
"""


def test_a_pool_stopped_while_its_workers_send_results_ends_at_once():
    """Stopping the workers while they write large results leaves no thread waiting for ever on a half-written one
    (ProcessPoolExecutor's thread did: a pack hung on Ctrl-C)."""
    out = subprocess.run([sys.executable, "-c", STOP_EARLY], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "done", out.stderr
