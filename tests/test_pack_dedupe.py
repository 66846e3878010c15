"""`--dedupe`: images stored twice byte for byte are packed once: within a split the later copy goes, across
splits the train copy of a val image; named in `duplicates`; train and the cache carry it. `--dedupe near` and
`--dedupe crops` leave out near and cropped copies too (`pack`, `merge`, the cache)."""

import os
import shutil

from conftest import cli, cli_process
from PIL import Image
from test_duplicates import crop

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


def with_near_copies(demo_dataset, root) -> tuple[str, str, str]:
    """The demo dataset with, in train: a val image shrunk and re-encoded, a crop of another val image, and a train
    image copied byte for byte."""
    data = root / "data"
    shutil.copytree(demo_dataset, data)
    near, cropped = sorted(os.listdir(data / "images" / "val"))[:2]
    Image.open(data / "images" / "val" / near).reduce(2).save(data / "images" / "train" / "z_near.jpg", quality=70)
    crop(Image.open(data / "images" / "val" / cropped), 0.15, 0.6, 0.3).save(data / "images" / "train" / "z_crop.jpg")
    shutil.copy(data / "images" / "train" / sorted(os.listdir(data / "images" / "train"))[0],
                data / "images" / "train" / "z_exact.jpg")  # fmt: skip
    return str(data), near, cropped


def test_near_and_cropped_copies_go_with_their_level(demo_dataset, demo_store, tmp_path):
    data, near, cropped = with_near_copies(demo_dataset, tmp_path)
    out = str(tmp_path / "near.lmdb")
    proc = cli_process("pack", data, "-o", out, "--dedupe", "near")
    assert (
        proc.returncode == 0 and "train: 2 images stored twice or nearly left out (--dedupe near; e.g." in proc.stderr
    )
    meta = cli("info", out, "--json")
    assert meta["splits"]["train"]["count"] == 20 and meta["splits"]["train"]["duplicates_dropped"] == 2
    assert meta["pack"]["dedupe"] == "near" and meta["splits"]["val"]["count"] == 5
    listed = {d["path"]: d for d in meta["duplicates"]}
    assert listed["train/images/train/z_near.jpg"] == {
        "path": "train/images/train/z_near.jpg", "same_as": f"val/images/val/{near}", "kind": "near"
    }  # fmt: skip
    assert "train/images/train/z_exact.jpg" in listed and len(listed) == 2
    assert cli("verify", out, "--duplicates", "--json")["duplicates"]["groups"] == 0
    assert cli("verify", out, "--crops", "--json")["duplicates"]["groups"] == 1  # the crop stays at this level
    again = cli("pack", data, "-o", out, "--dedupe", "near", "--json")  # the next pack copies every record kept
    assert again["pack"]["reused"]["records"] == 25 and again["splits"]["train"]["count"] == 20
    crops = cli("pack", data, "-o", str(tmp_path / "crops.lmdb"), "--dedupe", "crops", "--json")
    assert crops["splits"]["train"]["count"] == 19 and crops["splits"]["train"]["duplicates_dropped"] == 3
    assert {d["path"]: d["kind"] for d in crops["duplicates"]}["train/images/train/z_crop.jpg"] == "cropped"
    plain = str(tmp_path / "plain.lmdb")
    cli("pack", data, "-o", plain)
    merged = cli("merge", plain, demo_store, "-o", str(tmp_path / "m.lmdb"), "--dedupe", "near", "--json")
    assert merged["splits"]["train"]["count"] == 20  # demo_store's records and z_exact byte for byte; z_near nearly
    assert (
        ensure_store(data, str(tmp_path / "stores"), dedupe="near")[0]
        != ensure_store(data, str(tmp_path / "stores"), dedupe=True)[0]
    )  # the cache keeps a store per level
