"""`fastload merge`: stores joined into one, classes matched by name (the union, in the order first seen), each
record's bytes and polygons as they were, its ids renumbered, its path under its store's name; the result verifies,
trains and unpacks; damaged records are left out and named."""

import os

import numpy as np
from conftest import cli, cli_process, jpeg_bytes, write

from fastload.pack import PackOptions, pack
from fastload.store import open_store, read_meta


def other_dataset(root) -> str:
    """Three images with classes `triangle` (0) and `star` (1), train and val."""
    data = root / "other"
    write(str(data / "classes.txt"), "triangle\nstar\n")
    for split, k in (("train", 0), ("train", 1), ("val", 2)):
        write(str(data / "images" / split / f"o{k}.jpg"), jpeg_bytes(colour=(50 * k, 90, 9)))
        write(str(data / "labels" / split / f"o{k}.txt"), f"{k % 2} 0.5 0.5 0.2 0.2\n1 0.3 0.3 0.1 0.1\n")
    out = str(root / "other.lmdb")
    pack(str(data), out, PackOptions())
    return out


def test_stores_merge_by_class_name_with_their_records_as_they_were(demo_store, polygon_data, tmp_path):
    other = other_dataset(tmp_path)
    out = str(tmp_path / "merged.lmdb")
    meta = cli("merge", demo_store, other, polygon_data["polygons"], "-o", out, "--json")
    assert meta["names"] == ["circle", "rectangle", "triangle", "star"]  # demo's, then other's new one
    assert [m["prefix"] for m in meta["pack"]["merged"]] == ["demo", "other", "polygons"]
    sources = [demo_store, other, polygon_data["polygons"]]
    for split in ("train", "val"):
        merged = open_store(out, split)
        assert len(merged) == sum(len(open_store(s, split)) for s in sources)
        at = 0
        for source, prefix in zip(sources, ("demo", "other", "polygons"), strict=True):
            store = open_store(source, split)
            table = np.array([meta["names"].index(n) for n in read_meta(source)[1]["names"]])
            for i in range(len(store)):
                a, b = store.get(i), merged.get(at)
                assert bytes(a.image) == bytes(b.image) and b.path == f"{prefix}/{a.path}" and a.size == b.size
                assert np.array_equal(b.boxes[:, 0], table[a.boxes[:, 0].astype(int)])
                assert np.array_equal(b.boxes[:, 1:], a.boxes[:, 1:])
                for pa, pb in zip(a.segments or [], b.segments or [], strict=True):
                    assert np.array_equal(pa, pb)
                at += 1
    assert cli("verify", out, "--json")["ok"]
    assert read_meta(out)[1]["splits"]["train"]["polygons"] == read_meta(polygon_data["polygons"])[1]["splits"][
        "train"]["polygons"]  # fmt: skip
    result = cli("train", "--data", out, "--epochs", "1", "--imgsz", "64", "--batch", "8", "--workers", "1",
                 "--project", str(tmp_path / "runs"), "--noplots", "--json")  # fmt: skip
    assert result["epochs"] == 1 and np.isfinite(result["map50"])


def test_a_damaged_record_is_left_out_and_mistakes_are_one_line(demo_store, tmp_path):
    from test_verify import _flip_inside

    other = other_dataset(tmp_path)
    victim = open_store(other, "train").get(1)
    _flip_inside(other, bytes(victim.image))
    out = str(tmp_path / "m.lmdb")
    meta = cli("merge", demo_store, other, "-o", out, "--json")
    assert [s["path"] for s in meta["skipped"]] == ["other/images/train/o1.jpg"]
    assert "CRC32 mismatch" in meta["skipped"][0]["reason"]
    assert meta["splits"]["train"]["count"] == len(open_store(demo_store, "train")) + 1
    got = cli_process("merge", demo_store, other, "-o", str(tmp_path / "n.lmdb"), "--strict")
    assert got.returncode == 2 and "record train[1] (other/images/train/o1.jpg): CRC32 mismatch" in got.stderr
    assert not os.path.exists(tmp_path / "n.lmdb")
    got = cli_process("merge", demo_store, "-o", str(tmp_path / "n.lmdb"))
    assert got.returncode == 2 and "merge needs two stores or more" in got.stderr
    got = cli_process("merge", demo_store, str(tmp_path / "nothing.lmdb"), "-o", str(tmp_path / "n.lmdb"))
    assert got.returncode == 2 and "nothing.lmdb" in got.stderr and len(got.stderr.strip().splitlines()) == 1


def test_pack_of_several_stores_points_to_merge(demo_store, tmp_path):
    got = cli_process("pack", demo_store, demo_store, "-o", str(tmp_path / "x.lmdb"))
    assert got.returncode == 2 and f"{demo_store}: a store; several stores join with `fastload merge" in got.stderr


def test_dedupe_keeps_each_picture_once_and_a_val_pictures_train_copy_goes(tmp_path):
    first = other_dataset(tmp_path)  # o0, o1 in train; o2 in val
    data = tmp_path / "second"
    write(str(data / "classes.txt"), "triangle\nstar\n")
    for name, k in (("again0", 0), ("leak2", 2), ("new", 7)):  # o0's bytes, o2's bytes (a val picture), a new one
        write(str(data / "images" / "train" / f"{name}.jpg"), jpeg_bytes(colour=(50 * k, 90, 9)))
        write(str(data / "labels" / "train" / f"{name}.txt"), "0 0.5 0.5 0.2 0.2\n")
    write(str(data / "images" / "val" / "v.jpg"), jpeg_bytes(colour=(1, 2, 3)))
    second = str(tmp_path / "second.lmdb")
    pack(str(data), second, PackOptions())
    out = str(tmp_path / "both.lmdb")
    meta = cli("merge", first, second, "-o", out, "--dedupe", "--json")
    train = open_store(out, "train")
    assert sorted(train.path_of(i) for i in range(len(train))) == [
        "other/images/train/o0.jpg", "other/images/train/o1.jpg", "second/images/train/new.jpg"]  # fmt: skip
    assert meta["splits"]["train"]["duplicates_dropped"] == 2 and meta["pack"]["dedupe"] is True
    assert {d["path"]: d["same_as"] for d in meta["duplicates"]} == {
        "train/second/images/train/again0.jpg": "train/other/images/train/o0.jpg",
        "train/second/images/train/leak2.jpg": "val/other/images/val/o2.jpg",
    }
    assert list(meta["splits"]) == ["train", "val"] and meta["splits"]["val"]["count"] == 2
    plain = cli("merge", first, second, "-o", str(tmp_path / "all.lmdb"), "--json")
    assert plain["splits"]["train"]["count"] == 5 and "duplicates" not in plain
