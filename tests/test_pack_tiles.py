"""`pack --tile SIZE`: large images cut into overlapping tiles, each box following its object's pixels into every
tile that shows enough of it, polygons clipped to the tile, small images kept byte for byte, the tiles of one image
in one split, and the train split's empty tiles thinned by --background."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
from conftest import cli, cli_process, write
from PIL import Image

from fastload.errors import FastloadError
from fastload.pack.cache import ensure_store
from fastload.pack.tiles import Tiling, clip_polygon, cut, polygon_area
from fastload.store import open_store, read_meta
from fastload.store.record import Record

RED = (230, 40, 40)


def large_dataset(root, images: dict[str, int], size=(900, 600), objects: int = 10, seed: int = 0) -> str:
    """A YOLO folder of grey `size` (w, h) images, each with `objects` red rectangles of 8-50 pixels labelled."""
    rng = np.random.default_rng(seed)
    w, h = size
    for split, n in images.items():
        for k in range(n):
            a = np.full((h, w, 3), 90, np.uint8)
            rows = []
            for _ in range(objects):
                bw, bh = rng.integers(8, 50, 2)
                x, y = rng.integers(0, w - bw), rng.integers(0, h - bh)
                a[y : y + bh, x : x + bw] = RED
                rows.append(f"0 {(x + bw / 2) / w} {(y + bh / 2) / h} {bw / w} {bh / h}")
            out = io.BytesIO()
            Image.fromarray(a).save(out, "JPEG", quality=98)
            write(str(root / "images" / split / f"im{k}.jpg"), out.getvalue())
            write(str(root / "labels" / split / f"im{k}.txt"), "\n".join(rows))
    write(str(root / "data.yaml"), "path: .\ntrain: images/train\nval: images/val\nnames: ['box']\n")
    return str(root)


def red(a: np.ndarray) -> np.ndarray:
    return (a[..., 0] > 170) & (a[..., 1] < 110) & (a[..., 2] < 110)


def test_the_grid_is_sahis_with_every_tile_whole_and_the_image_covered():
    tiling = Tiling(640, 0.2)
    windows = tiling.windows(700, 1000)  # h, w
    assert windows == [(x, y, x + 640, y + 640) for y in (0, 60) for x in (0, 360)]
    assert Tiling(640, 0.2).windows(1300, 2000) == [
        (x, y, x + 640, y + 640) for y in (0, 512, 660) for x in (0, 512, 1024, 1360)
    ]  # SAHI's get_slice_bboxes for 2000 x 1300
    assert Tiling(640).windows(500, 1000) == [(0, 0, 640, 500), (360, 0, 1000, 500)]  # a side shorter than a tile
    assert Tiling(640).windows(640, 640) == [(0, 0, 640, 640)]
    with pytest.raises(FastloadError, match="--tile-overlap"):
        Tiling(640, 1.0)


def test_a_box_is_kept_where_enough_of_it_shows_and_cut_to_the_tile():
    rec = Record(b"", np.array([[3, 0.5, 0.5, 0.2, 0.4]], np.float32), (100, 200), "a.jpg")  # 40 x 40 px at 80..120
    keep, tile = cut(rec, (0, 0, 110, 100), 0.1)  # shows x 80..110: 30 of 40
    assert keep.tolist() == [True]
    np.testing.assert_allclose(tile.boxes, [[3, 95 / 110, 0.5, 30 / 110, 0.4]], rtol=1e-6)
    assert tile.size == (100, 110)
    assert cut(rec, (0, 0, 110, 100), 0.8)[0].tolist() == [False]  # 75% shows
    assert cut(rec, (120, 0, 200, 100), 0.01)[0].tolist() == [False]  # touches the edge only


def test_a_polygon_is_clipped_to_the_tile_and_its_box_bounds_the_part_inside():
    triangle = np.array([[0.1, 0.1], [0.9, 0.1], [0.1, 0.9]], np.float32)  # 100 x 100 image
    rec = Record(b"", np.array([[0, 0.5, 0.5, 0.8, 0.8]], np.float32), (100, 100), "a.jpg", segments=[triangle])
    keep, tile = cut(rec, (50, 0, 100, 100), 0.05)  # x >= 50: the corner (50..90, 10..50)
    assert keep.tolist() == [True]
    part = tile.segments[0] * (50, 100) + (50, 0)
    assert polygon_area(part) == pytest.approx(0.5 * 40 * 40)
    np.testing.assert_allclose(tile.boxes[0, 1:] * (50, 100, 50, 100), [20, 30, 40, 40], atol=1e-4)
    assert not cut(rec, (50, 0, 100, 100), 0.3)[0].any()  # 800 of 3200 pixels: a quarter
    square = np.array([[0, 0], [10, 0], [10, 10], [0, 10]], float)
    assert polygon_area(clip_polygon(square, (5, 5, 20, 20))) == pytest.approx(25)


def test_every_box_frames_its_objects_pixels_and_each_object_is_whole_in_some_tile(tmp_path):
    data = large_dataset(tmp_path / "d", {"train": 2, "val": 1})
    out = str(tmp_path / "t.lmdb")
    meta = cli("pack", data, "-o", out, "--tile", "256", "--tile-min-visible", "0.001", "--json")  # every sliver
    grid = len(Tiling(256).windows(600, 900))
    assert meta["splits"]["train"]["count"] == 2 * grid and meta["splits"]["train"]["images"] == 2
    assert meta["pack"]["tile"] == {"size": 256, "overlap": 0.2, "min_visible": 0.001, "whole": False}
    assert meta["pack"]["source_kind"] == "data.yaml" and meta["splits"]["val"]["objects_lost"] == 0
    assert "cut into tiles of 256 px (overlap 0.2" in cli_process("info", out).stderr
    whole = {}
    for split in ("train", "val"):
        store = open_store(out, split)
        for i in range(len(store)):
            rec = store.get(i)
            assert rec.size == (256, 256) and rec.crc32 == rec.compute_crc()
            a = np.asarray(Image.open(io.BytesIO(bytes(rec.image))).convert("RGB"))
            covered = np.zeros(a.shape[:2], bool)
            for _, cx, cy, bw, bh in rec.boxes:
                x0, y0, x1, y1 = (np.array([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2]) * 256).round()
                inside = red(a[int(y0) + 1 : int(y1) - 1, int(x0) + 1 : int(x1) - 1])
                assert inside.size == 0 or inside.mean() > 0.9  # the box is on its object
                covered[max(0, int(y0) - 2) : int(y1) + 2, max(0, int(x0) - 2) : int(x1) + 2] = True
                if 0 < x0 and x1 < 256 and 0 < y0 and y1 < 256:  # whole in this tile
                    name, window = rec.path.rsplit("_", 4)[0], rec.path.rsplit("_", 4)[1:]
                    sx, sy = int(window[0]), int(window[1])
                    whole.setdefault(name, set()).add((round(x0) + sx, round(y0) + sy))
            assert red(a)[~covered].sum() == 0  # no object pixels outside the boxes: none was lost
            assert rec.path.startswith(f"images/{split}/im") and rec.path.endswith(".jpg")
    for k in range(2):  # every object of 8..50 px is whole in some tile (they overlap by 51 px)
        assert len(whole[f"images/train/im{k}"]) >= 9  # (10 drawn; two may overlap into one)


def test_a_small_image_is_kept_byte_for_byte_and_a_store_tiles_as_it_is(tmp_path):
    data = large_dataset(tmp_path / "d", {"train": 1, "val": 1}, size=(300, 200), objects=3)
    plain = str(tmp_path / "plain.lmdb")
    cli("pack", data, "-o", plain)
    tiled = str(tmp_path / "tiled.zarr")
    meta = cli("pack", plain, "-o", tiled, "--tile", "320", "--json")
    a, b = open_store(plain, "train").get(0), open_store(tiled, "train").get(0)
    assert bytes(a.image) == bytes(b.image) and a.path == b.path and np.array_equal(a.boxes, b.boxes)
    assert meta["pack"]["tiled_from"] == os.path.abspath(plain) and meta["store"] == "zarr"
    again = cli_process("pack", tiled, "-o", str(tmp_path / "x.lmdb"), "--tile", "128")
    assert again.returncode == 2 and "already tiled (320 px)" in again.stderr
    picked = cli_process("pack", plain, "-o", str(tmp_path / "y.lmdb"), "--tile", "128", "--classes", "box")
    assert picked.returncode == 2 and "--classes picks classes of a dataset as it is packed" in picked.stderr


def test_the_tiles_of_an_image_stay_in_its_split_and_background_thins_train_tiles(tmp_path):
    root = tmp_path / "d"
    large_dataset(root, {"all": 6}, objects=2)
    os.remove(root / "data.yaml")
    out = str(tmp_path / "t.lmdb")
    meta = cli("pack", str(root), "-o", out, "--tile", "200", "--autosplit", "0.5,0.5", "--background", "0",
               "--json")  # fmt: skip
    splits = {}
    for split in meta["splits"]:
        store = open_store(out, split)
        for i in range(len(store)):
            splits.setdefault(store.path_of(i).rsplit("_", 4)[0], set()).add(split)
            assert split != "train" or len(store.get(i).boxes)  # no empty train tile left
    assert all(len(s) == 1 for s in splits.values()) and len(splits) == 6
    assert meta["splits"]["train"]["background_dropped"] > 0
    assert any(not len(open_store(out, "val").get(i).boxes) for i in range(meta["splits"]["val"]["count"]))
    assert not [p for p in os.listdir(tmp_path) if "untiled" in p]  # the whole-image store is gone


def test_objects_larger_than_a_tile_are_counted_and_said_and_tile_whole_keeps_them(tmp_path):
    root = tmp_path / "d"
    large_dataset(root, {"train": 1, "val": 1}, objects=1)
    write(str(root / "labels" / "val" / "im0.txt"), "0 0.5 0.5 0.9 0.9\n")
    run = cli_process("pack", str(root), "-o", str(tmp_path / "t.lmdb"), "--tile", "200", "--tile-min-visible", "0.5")
    assert run.returncode == 0, run.stderr
    assert "val: 1 images cut into" in run.stderr and "1 objects in no tile at 0.5 of their area" in run.stderr
    assert read_meta(str(tmp_path / "t.lmdb"))[1]["splits"]["val"]["objects_lost"] == 1
    cli("pack", str(root), "-o", str(tmp_path / "plain.lmdb"))
    meta = cli("pack", str(root), "-o", str(tmp_path / "w.lmdb"), "--tile", "200", "--tile-whole", "--json")
    grid = len(Tiling(200).windows(600, 900))
    assert meta["splits"]["val"]["count"] == grid + 1 and meta["pack"]["tile"]["whole"] is True
    val, plain = open_store(str(tmp_path / "w.lmdb"), "val"), open_store(str(tmp_path / "plain.lmdb"), "val").get(0)
    picture = val.get(grid)  # after its tiles: the picture as packed whole, its big object in it
    assert (bytes(picture.image), picture.path) == (bytes(plain.image), plain.path)
    np.testing.assert_array_equal(picture.boxes, plain.boxes)


def test_the_cache_keeps_a_datasets_tiles_apart_from_its_whole_pictures(tmp_path):
    data = large_dataset(tmp_path / "d", {"train": 2, "val": 1}, objects=4)
    cache = str(tmp_path / "stores")
    tiles = ensure_store(data, cache, tile=Tiling(256))[0]
    whole = ensure_store(data, cache)[0]
    assert tiles != whole and os.path.exists(tiles)  # the whole-picture pack did not prune the tiles
    assert read_meta(tiles)[1]["pack"]["tile"]["size"] == 256 and "tile" not in read_meta(whole)[1]["pack"]
    assert len(open_store(tiles, "train")) == 2 * len(Tiling(256).windows(600, 900))
    assert ensure_store(data, cache, tile=Tiling(256))[0] == tiles  # found again, not packed
    assert ensure_store(data, cache, tile=Tiling(256, 0.5))[0] not in (tiles, whole)  # another overlap: its own


def test_train_packs_a_dataset_as_tiles_and_val_scores_its_tiles_or_its_pictures(tmp_path, monkeypatch):
    data = large_dataset(tmp_path / "d", {"train": 2, "val": 1}, objects=4)
    monkeypatch.chdir(tmp_path)
    grid = len(Tiling(256).windows(600, 900))
    run = cli("train", "--data", data, "--tile", "256", "--imgsz", "256", "--epochs", "1", "--batch", "8",
              "--workers", "1", "--noplots", "--json")  # fmt: skip
    assert run["val_images"] == grid  # its val split's tiles
    own = cli("val", "--weights", run["weights"], "--workers", "1", "--json")  # the run's dataset: as tiles again
    assert own["images"] == grid and own["tile"] is None
    sliced = cli("val", "--weights", run["weights"], "--workers", "1", "--tile", "auto", "--json")  # whole pictures
    assert sliced["images"] == 1 and sliced["tile"]["tiles"] == grid and sliced["tile"]["size"] == 256  # as learned
    assert len([p for p in os.listdir("runs/stores") if p.endswith(".lmdb")]) == 2  # tiles and whole pictures
    picture = os.path.join(data, "images", "val", "im0.jpg")
    hint = cli_process(
        "detect",
        picture,
        "--weights",
        os.path.abspath(run["weights"]),
        "--nosave",
        "--workers",
        "1",
        "--project",
        str(tmp_path / "detect"),
    )
    assert hint.returncode == 0 and "learned from tiles of 256 px; --tile 256 runs it" in hint.stderr
    whole = cli("train", "--data", data, "--tile", "256", "--val-whole", "--imgsz", "256", "--epochs", "1", "--batch",
                "8", "--workers", "1", "--noplots", "--json")  # fmt: skip
    assert whole["val_images"] == 1 and 0 <= whole["map50"] <= 1  # the val picture, by its tiles
    alone = cli_process("train", "--data", data, "--val-whole", "--epochs", "1", "--project", str(tmp_path / "x"))
    assert alone.returncode == 2 and "--val-whole validates the whole pictures" in alone.stderr
    assert not os.path.exists(tmp_path / "x")  # refused before a run folder is made
    refused = cli_process("train", "--data", os.path.join(tmp_path, "runs/stores", os.listdir("runs/stores")[0]),
                          "--tile", "256", "--epochs", "1")  # fmt: skip
    assert refused.returncode == 2 and "a store; --tile cuts the images of a dataset as it is packed" in refused.stderr
