"""`--autosplit TRAIN,VAL[,TEST]`: a dataset's images split anew, each by a hash of its path: shares near the
weights, the same on every run, and an image keeps its split as the dataset grows; train and val use it end to end."""

from __future__ import annotations

import os

import pytest
from conftest import cli, cli_process, jpeg_bytes, write

from fastload.pack.autosplit import autosplit, parse_weights
from fastload.pack.sources import find_source
from fastload.store import open_store


def flat_folder(root: str, names: range, labelled: bool = True) -> str:
    """Images with YOLO labels beside them, in one folder (no splits)."""
    for n in names:
        write(os.path.join(root, f"im{n:04d}.jpg"), jpeg_bytes(48, 40, colour=(n % 255, 90, 160)))
        if labelled:
            write(os.path.join(root, f"im{n:04d}.txt"), f"{n % 3} 0.5 0.5 0.4 0.3\n")
    return root


def assignment(source) -> dict[str, str]:
    return {os.path.basename(p): split for split, paths in source.split_images.items() for p in paths}


def test_shares_follow_the_weights_and_an_image_keeps_its_split_as_the_dataset_grows(tmp_path):
    root = flat_folder(str(tmp_path / "data"), range(400), labelled=False)
    first = assignment(autosplit(find_source(root), (0.8, 0.1, 0.1)))
    counts = {s: list(first.values()).count(s) for s in ("train", "val", "test")}
    assert abs(counts["train"] - 320) < 30 and abs(counts["val"] - 40) < 15 and abs(counts["test"] - 40) < 15
    assert assignment(autosplit(find_source(root), (0.8, 0.1, 0.1))) == first  # the same every time
    flat_folder(root, range(400, 500), labelled=False)  # more images, some sorting before the first ones' names
    os.remove(os.path.join(root, "im0007.jpg"))
    grown = assignment(autosplit(find_source(root), (0.8, 0.1, 0.1)))
    assert len(grown) == 499 and all(grown[name] == split for name, split in first.items() if name in grown)


def test_a_tiny_dataset_still_gets_a_val_image_and_existing_splits_are_pooled(tmp_path):
    root = flat_folder(str(tmp_path / "tiny"), range(3), labelled=False)
    split = autosplit(find_source(root), (0.9, 0.1))
    assert {k: len(v) for k, v in split.split_images.items()} == {"train": 2, "val": 1}
    two = tmp_path / "two"  # images/train and images/val: pooled, then split anew
    flat_folder(str(two / "images" / "train"), range(30), labelled=False)
    flat_folder(str(two / "images" / "val"), range(30, 40), labelled=False)
    split = autosplit(find_source(str(two)), (0.5, 0.5))
    assert sum(map(len, split.split_images.values())) == 40 and len(split.split_images["val"]) > 10


@pytest.mark.parametrize("bad", ["0.9", "a,b", "0.9,-0.1", "0,1", "0.5,0.2,0.2,0.1"])
def test_bad_weights_are_one_line_errors(bad):
    with pytest.raises(Exception, match="--autosplit"):
        parse_weights(bad)
    result = cli_process("pack", "nowhere", "-o", "x.lmdb", "--autosplit", bad)
    assert result.returncode == 2 and "--autosplit" in result.stderr and "Traceback" not in result.stderr


def test_pack_splits_a_folder_and_a_store_is_refused(tmp_path):
    root = flat_folder(str(tmp_path / "data"), range(60))
    out = str(tmp_path / "a.lmdb")
    report = cli("pack", root, "-o", out, "--autosplit", "0.75,0.25", "--json")
    assert report["pack"]["autosplit"] == [0.75, 0.25]
    counts = {s: v["count"] for s, v in report["splits"].items()}
    assert set(counts) == {"train", "val"} and sum(counts.values()) == 60 and counts["val"] >= 5
    val = open_store(out, "val")
    expected = autosplit(find_source(root), (0.75, 0.25)).split_images["val"]
    assert sorted(val.path_of(i) for i in range(len(val))) == sorted(os.path.basename(p) for p in expected)
    result = cli_process("pack", out, "-o", str(tmp_path / "b.lmdb"), "--autosplit", "0.9,0.1")
    assert result.returncode == 2 and "a store converts record for record" in result.stderr


def test_train_on_one_folder_says_to_autosplit_then_trains_and_val_splits_it_the_same(tmp_path):
    root = flat_folder(str(tmp_path / "data"), range(24))
    common = ("--imgsz", "64", "--batch", "4", "--epochs", "1", "--device", "cpu", "--workers", "1", "--noplots")
    project = str(tmp_path / "runs" / "train")
    result = cli_process("train", "--data", root, *common, "--project", project)
    assert result.returncode == 2 and "no 'val' split (has train)" in result.stderr, result.stderr
    assert "--autosplit 0.9,0.1" in result.stderr
    run = cli("train", "--data", root, "--autosplit", "0.8,0.2", *common, "--project", project, "--json")
    assert 0 < run["val_images"] < 24
    val = cli("val", "--weights", run["weights"], "--data", root, "--imgsz", "64", "--device", "cpu", "--json")
    assert val["images"] == run["val_images"]  # the run's dataset, split as the run split it (it has no val split)
