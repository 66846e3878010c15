"""`--dedupe`: images stored twice byte for byte are packed once: within a split the later copy goes, across
splits the train copy of a val image; named in `duplicates`; train and the cache carry it."""

import os
import shutil

from conftest import cli, cli_process

from fastload.pack.cache import ensure_store
from fastload.store import open_store


def with_copies(demo_dataset, root) -> tuple[str, str, str]:
    """The demo dataset with a val image copied into train (with its label) and a train image copied in train."""
    data = str(root / "data")
    shutil.copytree(demo_dataset, data)
    leak = sorted(os.listdir(os.path.join(data, "images", "val")))[0]
    twice = sorted(os.listdir(os.path.join(data, "images", "train")))[0]
    for name, split in ((leak, "val"), (twice, "train")):
        stem = os.path.splitext(name)[0]
        shutil.copy(os.path.join(data, "images", split, name), os.path.join(data, "images", "train", f"z_{name}"))
        label = os.path.join(data, "labels", split, f"{stem}.txt")
        shutil.copy(label, os.path.join(data, "labels", "train", f"z_{stem}.txt"))
    return data, leak, twice


def test_copies_are_packed_once_and_a_val_image_keeps_its_place(demo_dataset, tmp_path):
    data, leak, twice = with_copies(demo_dataset, tmp_path)
    plain = cli("pack", data, "-o", str(tmp_path / "plain.lmdb"), "--json")
    assert plain["splits"]["train"]["count"] == 21 and "duplicates_dropped" not in plain["splits"]["train"]
    proc = cli_process("pack", data, "-o", str(tmp_path / "d.lmdb"), "--dedupe")
    assert proc.returncode == 0 and "train: 2 images stored twice left out (--dedupe; e.g." in proc.stderr
    meta = cli("info", str(tmp_path / "d.lmdb"), "--json")
    assert list(meta["splits"]) == ["train", "val"]  # in the listing's order, though val was packed first
    assert meta["splits"]["train"]["count"] == 19 and meta["splits"]["val"]["count"] == 5
    assert meta["splits"]["train"]["duplicates_dropped"] == 2 and meta["splits"]["val"]["duplicates_dropped"] == 0
    assert sorted((d["path"], d["same_as"]) for d in meta["duplicates"]) == sorted(
        [
            (f"train/images/train/z_{leak}", f"val/images/val/{leak}"),
            (f"train/images/train/z_{twice}", f"train/images/train/{twice}"),
        ]
    )
    train = open_store(str(tmp_path / "d.lmdb"), "train")
    assert not any(os.path.basename(train.path_of(i)).startswith("z_") for i in range(len(train)))
    assert meta["pack"]["dedupe"] is True
    got = cli("verify", str(tmp_path / "d.lmdb"), "--duplicates", "--json")
    assert got["duplicates"]["groups"] == 0  # what verify found before, the pack left out


def test_train_and_the_cache_carry_it(demo_dataset, demo_store, tmp_path):
    data, _, _ = with_copies(demo_dataset, tmp_path)
    cache = str(tmp_path / "stores")
    once = ensure_store(data, cache, dedupe=True)[0]
    assert len(open_store(once, "train")) == 19 and ensure_store(data, cache, dedupe=True)[0] == once
    assert len(open_store(ensure_store(data, cache)[0], "train")) == 21
    got = cli_process("pack", demo_store, "-o", str(tmp_path / "c.lmdb"), "--dedupe")
    assert got.returncode == 2 and "--dedupe thins a dataset as it is packed" in got.stderr
