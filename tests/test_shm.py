"""DALI's source workers hand batches over in /dev/shm: workers whose batches cannot fit are refused before they start,
and a worker that dies mid-epoch (SIGBUS when /dev/shm fills up) ends the loader with one line, not DALI's "Worker
data receiving interrupted" traceback (or a hang); and a forked worker leaves alone the pipelines it inherited."""

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
from conftest import ROOT

from fastload.demo_data import DemoConfig, generate
from fastload.errors import JobFailed
from fastload.loader.files import find_images, scan_images
from fastload.loader.shm import batch_bytes, check_shared_memory, shm_space
from fastload.loader.train_loader import TrainLoader
from fastload.pack import PackOptions, pack
from fastload.store import open_store


def test_buffers_that_cannot_fit_are_refused_and_those_that_can_pass(tmp_path):
    total, free = shm_space(str(tmp_path))
    assert 0 < free <= total
    check_shared_memory(free / 5, 4, str(tmp_path))  # fits
    with pytest.raises(JobFailed) as error:
        check_shared_memory(free / 3, 4, str(tmp_path))
    assert str(error.value).startswith(f"{tmp_path}: ") and "of batches (4 in flight of ~" in str(error.value)
    assert str(error.value).endswith(
        "give it more (Docker: --shm-size=2g or --ipc=host), or use fewer --workers or a smaller --batch"
    )


def test_a_batch_is_its_records_or_files_average_bytes(demo_store, demo_dataset):
    store = open_store(demo_store)
    mean = sum(len(store.image(i)) for i in range(len(store))) / len(store)
    assert batch_bytes(store, 8) == pytest.approx(8 * mean, rel=1e-9)
    assert batch_bytes(store.shard(0, 2), 8) == batch_bytes(store, 8)
    files, _ = scan_images(find_images([os.path.join(demo_dataset, "images", "val")]))  # what detect reads
    mean = sum(os.path.getsize(p) for p in files.paths) / len(files)  # plain JPEGs: decoded as they are
    assert batch_bytes(files, 4) == pytest.approx(4 * mean, rel=1e-9)


def test_a_source_worker_that_dies_ends_the_loader_with_one_line(demo_store):
    """A worker killed, as the OOM killer kills one (SIGKILL; SIGBUS when its batch overflows /dev/shm would make the
    worker print pytest's faulthandler dump), here while it waits for a task, which would leave DALI's next hand-over
    of a task waiting forever for its reply: the next batches end in JobFailed naming the signal and the shared
    memory there is."""
    loader = TrainLoader(open_store(demo_store), imgsz=64, batch=4, workers=2)
    batches = iter(loader)
    next(batches)
    time.sleep(1)  # the prefetch thread has made its 2 batches ahead and waits; so do the workers
    worker = loader.pipe._py_pool.pool._processes[0]
    os.kill(worker.pid, signal.SIGKILL)
    worker.join(10)
    with pytest.raises(JobFailed) as error:
        for _ in batches:
            pass
    message = str(error.value)
    assert message.startswith("a DALI source worker died (SIGKILL); workers hand batches over in shared memory and ")
    assert "/dev/shm has " in message and "\n" not in message


LEFT_BEHIND = """
import gc, os, sys
from fastload.loader.train_loader import TrainLoader
from fastload.loader.val_loader import ValLoader
from fastload.store import open_store
old = ValLoader(open_store(sys.argv[1], "val"), imgsz=64, batch=2, workers=1)
print(sum(len(b.images) for b in old))
cycle = [old]
cycle.append(cycle)
del old, cycle  # garbage in a reference cycle: only the cyclic GC finalises it
gc.disable()  # not here, then, but in the workers forked next: as soon as they start
os.register_at_fork(after_in_child=lambda: (gc.enable(), gc.collect()))
print(sum(len(b.images) for b in TrainLoader(open_store(sys.argv[1]), imgsz=64, batch=4, workers=1)))
"""


def test_a_forked_worker_never_shuts_down_a_pipeline_its_parent_left_behind(demo_store):
    """A pipeline left in a reference cycle (an exception's traceback holds one) that a forked worker's GC collects
    is shut down there, where its DALI threads do not exist: the worker hangs (or segfaults) and so does the loader.
    Workers freeze what they inherit, so here the next loader runs as if nothing were left behind."""
    proc = subprocess.run([sys.executable, "-c", LEFT_BEHIND, demo_store], capture_output=True, text=True,
                          cwd=ROOT, timeout=60)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["5", "19"]


def _mount_namespaces() -> bool:
    return shutil.which("unshare") is not None and subprocess.run(["unshare", "-m", "true"]).returncode == 0


@pytest.mark.skipif(not _mount_namespaces(), reason="needs unshare -m (root) to give a command a small /dev/shm")
def test_bench_in_a_container_sized_shm_is_refused_with_one_line(tmp_path):
    """As in a Docker container given too little --shm-size: `fastload bench` on 640x480 JPEGs with 0.5 MB of
    /dev/shm stops before its workers start, exit 1."""
    data = str(tmp_path / "data")
    generate(data, DemoConfig(images=10, seed=3, scale=1.0))
    store = str(tmp_path / "s.lmdb")
    pack(data, store, PackOptions())
    bench = f"{sys.executable} -m fastload bench {store} --imgsz 64 --batch 8 --batches 1 --workers 2"
    proc = subprocess.run(["unshare", "-m", "sh", "-c", f"mount -t tmpfs -o size=512k tmpfs /dev/shm && {bench}"],
                          capture_output=True, text=True, cwd=ROOT)  # fmt: skip
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("Error: /dev/shm: 0.5 MB free, but DALI's source workers")
