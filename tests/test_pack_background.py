"""`--background SHARE`: the train split keeps that share of its images without objects (by a hash of their path:
the same ones on every pack, as the dataset grows), val and test keep all of theirs; with --classes it thins the
images that lost their objects too; train and val carry it through the cache."""

from __future__ import annotations

import os
import shutil

from conftest import cli, cli_process, jpeg_bytes, write

from fastload.pack.cache import ensure_store
from fastload.pack.thinning import keeps_background
from fastload.store import open_store, read_meta


def with_backgrounds(demo_dataset, root, n: int = 40) -> str:
    """The demo dataset plus `n` train images without objects (half with an empty label file, half with none) and
    2 val ones."""
    data = str(root / "data")
    shutil.copytree(demo_dataset, data)
    for k in range(n):
        write(os.path.join(data, "images", "train", f"bg{k:03d}.jpg"), jpeg_bytes(colour=(k * 6, 40, 90)))
        if k % 2:
            write(os.path.join(data, "labels", "train", f"bg{k:03d}.txt"), "")
    for k in range(2):
        write(os.path.join(data, "images", "val", f"bg{k}.jpg"), jpeg_bytes(colour=(9, 9, 9 + k)))
    return data


def test_the_train_split_keeps_the_share_chosen_by_path_and_val_keeps_all(demo_dataset, tmp_path):
    data = with_backgrounds(demo_dataset, tmp_path)
    full = cli("pack", data, "-o", str(tmp_path / "all.lmdb"), "--json")
    assert full["splits"]["train"]["count"] == 19 + 40 and "background" not in full["pack"]
    half = cli("pack", data, "-o", str(tmp_path / "half.lmdb"), "--background", "0.5", "--json")
    train = open_store(str(tmp_path / "half.lmdb"), "train")
    kept = {train.path_of(i) for i in range(len(train)) if not len(train.get(i).boxes)}
    want = {f"images/train/bg{k:03d}.jpg" for k in range(40) if keeps_background(f"images/train/bg{k:03d}.jpg", 0.5)}
    assert kept == want and 10 < len(kept) < 30  # by the hash, about half
    assert half["splits"]["train"]["background_dropped"] == 40 - len(kept)
    assert half["splits"]["train"]["count"] == 19 + len(kept) and half["pack"]["background"] == 0.5
    assert half["splits"]["val"]["count"] == full["splits"]["val"]["count"]  # val keeps its own: mAP counts them
    none = cli("pack", data, "-o", str(tmp_path / "none.lmdb"), "--background", "0", "--json")
    assert none["splits"]["train"]["count"] == 19 and none["splits"]["train"]["missing_labels"] == 0
    assert none["splits"]["train"]["empty_labels"] == 0


def test_with_classes_the_images_left_without_objects_are_thinned_too(demo_dataset, tmp_path):
    proc = cli_process("pack", demo_dataset, "-o", str(tmp_path / "r.lmdb"), "--classes", "rectangle",
                       "--background", "0")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "images without objects left out (--background 0)" in proc.stderr
    train = open_store(str(tmp_path / "r.lmdb"), "train")
    assert all(len(train.get(i).boxes) for i in range(len(train)))
    meta = read_meta(str(tmp_path / "r.lmdb"))[1]
    assert meta["splits"]["train"]["background"] == 0 and meta["splits"]["train"]["background_dropped"] > 0


def test_the_cache_keys_it_and_a_store_refuses_it(demo_dataset, demo_store, tmp_path):
    data = with_backgrounds(demo_dataset, tmp_path, n=4)
    cache = str(tmp_path / "stores")
    thin = ensure_store(data, cache, background=0.0)[0]
    assert len(open_store(thin, "train")) == 19 and ensure_store(data, cache, background=0.0)[0] == thin
    assert len(open_store(ensure_store(data, cache)[0], "train")) == 23
    got = cli_process("pack", demo_store, "-o", str(tmp_path / "c.lmdb"), "--background", "0.1")
    assert got.returncode == 2 and "--background thins a dataset as it is packed" in got.stderr
    got = cli_process("train", "--data", demo_store, "--background", "0.1", "--epochs", "1")
    assert got.returncode == 2 and "a store; --background thins a dataset as it is packed" in got.stderr
