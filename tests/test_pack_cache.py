"""A dataset given where a store is expected is packed once, reused while its files are unchanged, packed anew
when one changes; other processes wait for the packer instead of packing too."""

import os
import shutil
import subprocess
import sys
import threading
import time

import pytest
from conftest import cli

from fastload.errors import FastloadError
from fastload.pack.cache import ensure_store, packed_line, release
from fastload.store import open_store


def test_packed_once_reused_and_repacked_when_a_file_changes(demo_dataset, tmp_path):
    data = str(tmp_path / "data")
    shutil.copytree(demo_dataset, data)
    cache = str(tmp_path / "stores")
    path, report = ensure_store(data, cache)
    assert report is not None and report["splits"]["train"]["count"] == 19 and report["skipped"] == []
    assert open_store(path, "val").get(0).boxes.shape[1] == 5
    assert ensure_store(data, cache) == (path, None)  # the same files: the same store, nothing packed
    assert ensure_store(path, cache) == (path, None)  # a store is used as it is
    label = os.path.join(data, "labels", "train", sorted(os.listdir(os.path.join(data, "labels", "train")))[0])
    with open(label, "a") as f:
        f.write("0 0.5 0.5 0.1 0.1\n")
    changed, report = ensure_store(data, cache)  # this process still holds the first store: it stays
    assert changed != path and report["pack"]["reused"]["records"] == 23 and report["pack"]["pruned"] == []
    assert sorted(os.listdir(cache)) == sorted(os.path.basename(p) for p in (path, changed))
    assert "23 unchanged, copied from the earlier store" in packed_line(changed, report)
    with open(os.path.join(data, "data.yaml"), "a") as f:  # class names are part of the key
        f.write("names: [a, b, c]\n")
    renamed, report = ensure_store(data, cache)
    assert renamed != changed and open_store(renamed).names == ["a", "b", "c"]


def test_a_new_store_replaces_the_earlier_ones_no_process_holds(demo_dataset, tmp_path):
    data = str(tmp_path / "data")
    shutil.copytree(demo_dataset, data)
    cache = str(tmp_path / "stores")
    label = os.path.join(data, "labels", "val", sorted(os.listdir(os.path.join(data, "labels", "val")))[0])

    def edit() -> None:
        with open(label, "a") as f:
            f.write("1 0.5 0.5 0.1 0.1\n")

    first = ensure_store(data, cache)[0]
    reader = open_store(first, "val")  # a Store this process has open is not a hold, and keeps working
    record = reader.get(0)
    holder = subprocess.Popen([sys.executable, "-c", "import sys; from fastload.pack.cache import hold; "
                               "hold(sys.argv[1]); print('held', flush=True); sys.stdin.read()", first],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert holder.stdout.readline() == "held\n"
    release(first)  # this process is done with it; another (a run still training) is not
    edit()
    second, report = ensure_store(data, cache)
    assert report["pack"]["pruned"] == [] and os.path.exists(first)
    holder.communicate("")  # the run ends
    release(second)
    edit()
    third, report = ensure_store(data, cache)
    assert sorted(report["pack"]["pruned"]) == sorted([first, second]) and os.listdir(cache) == [
        os.path.basename(third)
    ]
    assert report["pack"]["reused"]["records"] == 23  # from the newest earlier one
    assert bytes(reader.get(0).image) == bytes(record.image)  # removed, but still mapped here
    with open("/proc/self/maps") as f:  # what this process read only to pack (second) is no longer mapped
        assert second not in f.read()
    assert "removed 2 earlier stores of it" in packed_line(third, report)


def test_a_waiting_process_gets_the_store_the_packer_publishes(demo_dataset, tmp_path):
    cache = str(tmp_path / "stores")
    got = {}
    waiter = threading.Thread(target=lambda: got.update(path=ensure_store(demo_dataset, cache, packer=False)[0]))
    waiter.start()
    path, report = ensure_store(demo_dataset, cache, workers=1)
    waiter.join(timeout=60)
    assert report is not None and got["path"] == path and len(open_store(path, "train")) == 19


def test_a_waiting_process_gives_up_when_nobody_packs_and_waits_while_a_pack_grows(demo_dataset, tmp_path):
    cache = str(tmp_path / "stores")
    with pytest.raises(FastloadError, match=r"waited 1 s for the store .*\.lmdb: its packing \(rank 0\) was not"):
        ensure_store(demo_dataset, cache, packer=False, patience=1.0)
    path = ensure_store(demo_dataset, cache, workers=1)[0]
    os.rename(path, path + ".partial-1")  # a packer that writes for 2.5 s, then publishes
    writer = threading.Thread(target=lambda: grow_then_publish(path + ".partial-1", path))
    writer.start()
    assert ensure_store(demo_dataset, cache, packer=False, patience=1.5) == (path, None)
    writer.join()
    os.rename(path, path + ".untiled-1.partial-1")  # a tiled pack's whole pictures being packed first
    writer = threading.Thread(target=lambda: grow_then_publish(path + ".untiled-1.partial-1", path))
    writer.start()
    assert ensure_store(demo_dataset, cache, packer=False, patience=1.5) == (path, None)
    writer.join()


def grow_then_publish(partial: str, path: str) -> None:
    for _ in range(5):
        time.sleep(0.5)
        with open(partial, "ab") as f:
            f.write(b"\0" * 4096)
    os.rename(partial, path)


def test_a_coco_json_needs_fastload_pack(tmp_path):
    coco = tmp_path / "instances_val.json"
    coco.write_text("{}")
    with pytest.raises(FastloadError, match="instances_val.json: pack a COCO JSON first"):
        ensure_store(str(coco), str(tmp_path / "stores"))


def test_bench_takes_a_dataset_folder(demo_dataset, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ("--imgsz", "64", "--batch", "2", "--batches", "1", "--workers", "1", "--json")
    result = cli("bench", demo_dataset, *args)
    stores = os.listdir(tmp_path / "runs" / "stores")
    assert result["images_per_sec"] > 0 and len(stores) == 1 and stores[0].endswith(".lmdb")
    assert result["store"] == os.path.join("runs", "stores", stores[0])


def test_a_dataset_given_by_a_relative_or_an_absolute_path_has_one_cache_store(demo_dataset, tmp_path, monkeypatch):
    from fastload.pack.cache import ensure_store

    cache = str(tmp_path / "stores")
    monkeypatch.chdir(os.path.dirname(demo_dataset))
    relative = ensure_store(os.path.basename(demo_dataset), cache)[0]  # `train --data demo0` from its parent
    assert ensure_store(demo_dataset, cache) == (relative, None)  # `val` passes the checkpoint's absolute path
