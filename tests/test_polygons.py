"""Polygon labels (YOLOv5's segment rows): parsed, validated and kept in both store formats (CRC included); mosaics
boxed from the warped polygons exactly as YOLOv5's load_mosaic + random_perspective do; through the real loader
the boxes of rotated shapes hug them, where boxes warped as boxes do not."""

import json

import numpy as np
import pytest
from conftest import cli, jpeg_bytes, write

from fastload.demo_data import DemoConfig, render_labelled
from fastload.errors import BadInput
from fastload.loader.augment import Hyp, _canvas_boxes, perspective_matrices, plan_batch
from fastload.loader.polygons import mosaic_polygons
from fastload.loader.train_loader import TrainLoader
from fastload.pack import PackOptions, pack
from fastload.pack.labels import parse_yolo_text, validate_rows
from fastload.store import open_store
from fastload.verify import record_problem


def test_polygon_rows_are_parsed_and_validated():
    text = "0 0.1 0.1 0.5 0.1 0.3 0.6\n1 0.5 0.5 0.2 0.4\n0 0.1 0.1 0.5 0.1 0.3 0.6\n2 -0.005 0.2 0.4 0.2 0.2 0.9\n"
    rows, polygons = parse_yolo_text(text)
    assert rows.shape == (4, 5) and len(polygons) == 4
    np.testing.assert_allclose(rows[0], [0, 0.3, 0.35, 0.4, 0.5])  # the polygon's extent, as segments2boxes
    np.testing.assert_allclose(polygons[1], [[0.4, 0.3], [0.6, 0.3], [0.6, 0.7], [0.4, 0.7]])  # a box row's corners
    boxes, kept, note = validate_rows(rows, 3, polygons)
    assert len(boxes) == len(kept) == 3 and "1 duplicate rows removed" in note  # the repeated polygon row
    assert [int(c) for c in boxes[:, 0]] == [0, 1, 2]  # order kept, each polygon beside its box
    np.testing.assert_allclose(kept[2], [[0, 0.2], [0.4, 0.2], [0.2, 0.9]], atol=1e-7)  # clipped to the image
    assert kept[0].dtype == np.float32
    assert parse_yolo_text("0 0.5 0.5 0.2 0.2\n")[1] is None  # boxes only: no polygons
    with pytest.raises(BadInput, match="line 1: expected 5 values .* or a polygon"):
        parse_yolo_text("0 0.1 0.1 0.5 0.1 0.3\n")  # two points and a half
    with pytest.raises(BadInput, match="non-finite"):
        validate_rows(np.array([[0, 0.3, 0.35, 0.4, 0.5]]), 1, [np.array([[0.1, np.nan], [0.5, 0.1], [0.3, 0.6]])])


def test_stores_keep_the_polygons_in_both_formats(polygon_data, tmp_path):
    store = open_store(polygon_data["polygons"])
    assert store.has_polygons and store.meta["version"] == 2
    assert store.meta["splits"]["train"]["polygons"] == store.meta["splits"]["train"]["boxes"] > 0
    for i in range(len(store)):
        text = open(f"{polygon_data['polygons_dir']}/labels/train/{store.path_of(i).split('/')[-1][:-4]}.txt").read()
        want = [np.array(line.split()[1:], np.float32).reshape(-1, 2) for line in text.splitlines()]
        rec = store.get(i)
        assert len(rec.segments) == len(want) == len(rec.boxes)
        for got, w in zip(rec.segments, want, strict=True):
            np.testing.assert_array_equal(got, w)
        points, offsets = store.polygons(i)
        assert offsets[-1] == len(points) == sum(len(w) for w in want)
    plain = open_store(polygon_data["boxes"])
    assert not plain.has_polygons and plain.polygons(0) is None and plain.get(0).segments is None
    # the same images and boxes: the polygons' extents within 2 pixels of the drawn shapes' pixel extents
    hw = np.repeat(store.sizes, store.box_counts, axis=0).astype(np.float64)
    assert (np.abs(store.boxes[:, 1:] - plain.boxes[:, 1:]) * hw[:, [1, 0, 1, 0]]).max() <= 2.0
    zarr = str(tmp_path / "p.zarr")
    report = cli("pack", polygon_data["polygons"], "-o", zarr, "--format", "zarr", "--json")
    assert report["splits"]["train"]["polygons"] == store.meta["splits"]["train"]["polygons"]
    z = open_store(zarr)
    for i in range(len(store)):
        a, b = store.get(i), z.get(i)
        assert a.crc32 == b.crc32 and all(np.array_equal(p, q) for p, q in zip(a.segments, b.segments, strict=True))
    assert cli("verify", zarr, "--json")["ok"]
    rec = store.get(0)
    rec.segments[0] = rec.segments[0] + np.float32(0.001)  # the CRC covers the points
    assert rec.compute_crc() != rec.crc32
    info = cli("info", polygon_data["polygons"], "--json")
    assert info["splits"]["val"]["polygons"] == open_store(polygon_data["polygons"], "val").box_counts.sum()


def test_zarr_reads_polygon_points_a_chunk_at_a_time(polygon_data, tmp_path, monkeypatch):
    """A Zarr store keeps its polygon points in small chunks and reads them through a bounded LRU (COCO's points
    are ~170 MB: not a copy in every worker), straddling chunks where a record's polygons do."""
    from fastload.store import zarr_store

    monkeypatch.setattr(zarr_store, "POINT_CHUNK_BYTES", 8 * 7)  # 7 points a chunk: most records straddle two
    monkeypatch.setattr(zarr_store.ZarrStore, "cached_point_chunks", 3)
    zarr = str(tmp_path / "small-chunks.zarr")
    pack(polygon_data["polygons"], zarr, PackOptions(fmt="zarr"))
    lmdb, z = open_store(polygon_data["polygons"]), open_store(zarr)
    for i in reversed(range(len(lmdb))):
        (p, o), (q, r) = lmdb.polygons(i), z.polygons(i)
        np.testing.assert_array_equal(p, q)
        np.testing.assert_array_equal(o, r)
        assert len(z._point_cache) <= 3
    assert "segments" not in z._cols and z._points_array.chunks == (7, 2)


def test_a_version_1_store_reads_as_before(polygon_data, tmp_path):
    """A store packed before polygons (format 1: no polygon columns) opens, reads and verifies: its records have no
    polygons and a record without polygons has format 1's CRC."""
    import shutil

    import lmdb

    path = str(tmp_path / "v1.lmdb")
    shutil.copy(polygon_data["boxes"], path)
    env = lmdb.open(path, subdir=False, lock=False)
    with env.begin(write=True) as txn:
        meta = json.loads(txn.get(b"__meta__"))
        for split in meta["splits"]:
            assert txn.delete(f"{split}/segment_offsets".encode()) and txn.delete(f"{split}/segments".encode())
            del meta["splits"][split]["polygons"]
        txn.put(b"__meta__", json.dumps({**meta, "version": 1}).encode())
    env.close()
    store = open_store(path)
    assert not store.has_polygons and store.polygons(0) is None and store.get(0).segments is None
    assert cli("verify", path, "--json")["ok"]
    plans = plan_batch(np.random.default_rng(0), np.arange(4), store.sizes, store.labels, 64, Hyp())
    assert sum(len(p.boxes) for p in plans)


def test_verify_names_a_record_whose_polygons_are_not_normalised(polygon_data):
    store = open_store(polygon_data["polygons"])
    assert record_problem(store, 0) is None
    rec = store.get(0)
    points = np.ascontiguousarray(store.polygons(0)[0])
    rec.segments = [points[:3] * 3, *rec.segments[1:]]  # as a damaged column would read, CRC recomputed
    rec.crc32 = rec.compute_crc()

    class Damaged:
        def get(self, i):
            return rec

    assert record_problem(Damaged(), 0) == "polygons not normalised"


def test_coco_polygons_are_kept(tmp_path):
    write(str(tmp_path / "imgs" / "a.jpg"), jpeg_bytes(100, 50))
    write(str(tmp_path / "imgs" / "b.jpg"), jpeg_bytes(100, 50))
    anns = [
        {"id": 1, "image_id": 1, "category_id": 5, "bbox": [10, 10, 40, 20], "iscrowd": 0,
         "segmentation": [[10, 10, 50, 10, 30, 30]]},
        {"id": 2, "image_id": 1, "category_id": 5, "bbox": [60, 5, 30, 40], "iscrowd": 0,
         "segmentation": [[60, 5, 70, 5, 65, 20], [80, 30, 90, 30, 90, 45, 1]]},  # two parts, the second odd: dropped
        {"id": 3, "image_id": 1, "category_id": 5, "bbox": [0, 0, 10, 10], "iscrowd": 0,
         "segmentation": {"counts": "abc", "size": [50, 100]}},  # an RLE: its box's corners
        {"id": 4, "image_id": 2, "category_id": 5, "bbox": [1, 1, 10, 10], "iscrowd": 0},  # no polygons at all
    ]  # fmt: skip
    coco = {"images": [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 50},
                       {"id": 2, "file_name": "b.jpg", "width": 100, "height": 50}],
            "annotations": anns, "categories": [{"id": 5, "name": "thing"}]}  # fmt: skip
    path = write(str(tmp_path / "instances_train.json"), json.dumps(coco))
    out = str(tmp_path / "c.lmdb")
    cli("pack", path, "--coco-images", str(tmp_path / "imgs"), "-o", out, "--json")
    store = open_store(out)
    a, b = (store.get(i) for i in range(2))
    assert a.path.endswith("a.jpg")
    np.testing.assert_allclose(a.segments[0], [[0.1, 0.2], [0.5, 0.2], [0.3, 0.6]], atol=1e-6)
    np.testing.assert_allclose(a.segments[1], [[0.6, 0.1], [0.7, 0.1], [0.65, 0.4]], atol=1e-6)
    np.testing.assert_allclose(a.segments[2], [[0, 0], [0.1, 0], [0.1, 0.2], [0, 0.2]], atol=1e-6)
    assert b.segments is None and len(b.boxes) == 1


# --- YOLOv5's load_mosaic label path with segments, transcribed (utils/dataloaders.py, utils/general.py) -------------
def yolov5_mosaic_rows(tiles, polygons, M, s, scale):
    """Labels of one mosaic as YOLOv5 makes them: xywhn2xyxy / xyn2xy, clip to 2s, resample_segments(1000), warp,
    segment2box, box_candidates(area_thr=0.01), xyxy2xywhn(clip=True, eps=1e-3)."""
    labels4, segments4 = [], []
    for (rows, w, h, padw, padh), polys in zip(tiles, polygons, strict=True):
        lab = rows.astype(np.float32).copy()
        x = rows[:, 1:].astype(np.float32)
        lab[:, 1] = w * (x[:, 0] - x[:, 2] / 2) + padw
        lab[:, 2] = h * (x[:, 1] - x[:, 3] / 2) + padh
        lab[:, 3] = w * (x[:, 0] + x[:, 2] / 2) + padw
        lab[:, 4] = h * (x[:, 1] + x[:, 3] / 2) + padh
        labels4.append(lab)
        for p in polys:
            y = p.copy()
            y[:, 0], y[:, 1] = w * p[:, 0] + padw, h * p[:, 1] + padh
            segments4.append(y)
    labels4 = np.concatenate(labels4)
    for x in (labels4[:, 1:], *segments4):
        np.clip(x, 0, 2 * s, out=x)
    new = np.zeros((len(labels4), 4))
    for i, seg in enumerate(segments4):
        seg = np.concatenate((seg, seg[0:1]))
        t = np.linspace(0, len(seg) - 1, 1000)
        seg = np.stack([np.interp(t, np.arange(len(seg)), seg[:, j]) for j in range(2)], 1)
        xy = np.ones((len(seg), 3))
        xy[:, :2] = seg
        xy = xy @ M.T
        xy = xy[:, :2] / xy[:, 2:3]
        x, y = xy.T
        inside = (x >= 0) & (y >= 0) & (x <= s) & (y <= s)
        x, y = x[inside], y[inside]
        new[i] = [x.min(), y.min(), x.max(), y.max()] if any(x) else 0
    box1, box2 = labels4[:, 1:5].T * scale, new.T
    w1, h1, w2, h2 = box1[2] - box1[0], box1[3] - box1[1], box2[2] - box2[0], box2[3] - box2[1]
    ar = np.maximum(w2 / (h2 + 1e-16), h2 / (w2 + 1e-16))
    keep = (w2 > 2) & (h2 > 2) & (w2 * h2 / (w1 * h1 + 1e-16) > 0.01) & (ar < 100)
    out = labels4[keep].astype(np.float64)
    xyxy = new[keep].clip(0, s - 1e-3)
    out[:, 1:] = np.concatenate([(xyxy[:, :2] + xyxy[:, 2:]) / 2 / s, (xyxy[:, 2:] - xyxy[:, :2]) / s], 1)
    return out


@pytest.mark.parametrize("perspective", [0.0, 0.001])
def test_mosaic_boxes_from_polygons_are_yolov5s(perspective):
    """Random mosaics of random polygons (triangles to 40-gons, many cut by the canvas or the output), random
    affines with rotation, shear and (or not) perspective: the boxes kept and their values are YOLOv5's."""
    rng = np.random.default_rng(1)
    s, compared = 160, 0
    for _ in range(60):
        tiles, polygons, flat = [], [], []
        for _ in range(4):
            polys = []
            for _ in range(int(rng.integers(0, 5))):
                c, r = rng.uniform(0, 1, 2), rng.uniform(0.05, 0.4)
                a = np.sort(rng.uniform(0, 2 * np.pi, int(rng.integers(3, 41))))
                polys.append(c + r * np.stack([np.cos(a), np.sin(a)], 1) * rng.uniform(0.3, 1, (len(a), 1)))
            polys = [np.clip(p, 0, 1).astype(np.float32) for p in polys]
            rows = np.array([[0, *(p.min(0) + p.max(0)) / 2, *(p.max(0) - p.min(0))] for p in polys], np.float32)
            w, h = (int(v) for v in rng.integers(60, 200, 2))
            tiles.append((rows.reshape(-1, 5), w, h, int(rng.integers(-80, 260)), int(rng.integers(-80, 260))))
            polygons.append(polys)
            offsets = np.cumsum([0] + [len(p) for p in polys])
            flat.append((np.concatenate(polys) if polys else np.zeros((0, 2), np.float32), offsets) if polys else None)
        u = rng.uniform(
            (-perspective,) * 2 + (-45, 0.5, -10, -10, 0.4, 0.4), (perspective,) * 2 + (45, 1.5, 10, 10, 0.6, 0.6)
        )
        M, scale = perspective_matrices(u[None], np.array([2 * s]), s)
        cid = np.zeros(sum(len(t[0]) for t in tiles), int)
        if not len(cid):
            continue
        ours = _canvas_boxes(tiles, cid, np.array([[2.0 * s, 2.0 * s]]), M, scale, (s, s), mosaic_polygons(
            [(len(t[0]), f) for t, f in zip(tiles, flat, strict=True)]))[0]  # fmt: skip
        want = yolov5_mosaic_rows(tiles, polygons, M[0], s, scale[0])
        assert ours.shape == want.shape
        np.testing.assert_allclose(ours, want, atol=2e-6)
        compared += len(want)
    assert compared > 100


def test_a_mosaic_with_a_tile_without_polygons_is_boxed_from_boxes():
    """YOLOv5's use_segments needs as many segments as labels: one labelled image without polygons turns them off
    for its whole mosaic; an image without labels does not."""
    poly = (np.zeros((3, 2), np.float32), np.array([0, 3]))
    assert mosaic_polygons([(1, poly), (0, None), (1, poly), (1, poly)]) == [poly, None, poly, poly]
    assert mosaic_polygons([(1, poly), (2, None), (1, poly), (0, None)]) == [None] * 4


def test_plans_box_rotated_shapes_tightly(polygon_data):
    """On the same images, rotated 45 degrees: boxes from the polygons are tighter than boxes warped as boxes (a
    rotated box's box grows by up to 2x); without rotation both agree within about a pixel a side (the drawn
    shapes' pixel extents, the boxes' rows, are a pixel wider than their polygons)."""
    poly, plain = open_store(polygon_data["polygons"]), open_store(polygon_data["boxes"])
    records = np.arange(len(poly))
    for hyp, lo, hi in ((Hyp(degrees=45, translate=0, scale=0), 0.4, 0.8), (Hyp(translate=0, scale=0), 0.85, 1.0)):
        a = plan_batch(np.random.default_rng(3), records, poly.sizes, poly.labels, 128, hyp, polygons=poly.polygons)
        b = plan_batch(np.random.default_rng(3), records, plain.sizes, plain.labels, 128, hyp)
        area = [sum(float((p.boxes[:, 3] * p.boxes[:, 4]).sum()) for p in plans) for plans in (a, b)]
        assert lo < area[0] / area[1] < hi, (hyp, area)


def test_the_loader_boxes_follow_the_polygons(polygon_data, tmp_path):
    """Through the real DALI loader (CPU): the polygon store's targets are the plans' polygon boxes, and each box
    of a rotated shape covers its shape's pixels, which differ from the grey fill and the mosaic's background."""
    hyp = Hyp(degrees=30, hsv_h=0, hsv_s=0, hsv_v=0, fliplr=0)
    store = open_store(polygon_data["polygons"])
    loader = TrainLoader(store, 128, 4, hyp=hyp, seed=2, workers=1)
    loader.set_epoch(0)
    ours = []
    for k, b in enumerate(loader):
        plans = loader.planner.plan(0, k)[2]
        want = np.concatenate([np.c_[np.full(len(p.boxes), j), p.boxes] for j, p in enumerate(plans)])
        np.testing.assert_allclose(b.targets.cpu().numpy(), want, atol=1e-6)
        ours.append(b.targets)
    plain = TrainLoader(open_store(polygon_data["boxes"]), 128, 4, hyp=hyp, seed=2, workers=1)
    plain.set_epoch(0)
    theirs = [b.targets for b in plain]
    area = [sum(float((t[:, 4] * t[:, 5]).sum()) for t in targets) for targets in (ours, theirs)]
    assert area[0] < 0.9 * area[1], area


def test_demo_data_writes_polygon_rows(tmp_path):
    _, rows, polygons = render_labelled(3, DemoConfig(seed=1, scale=0.5, polygons=True))
    assert len(rows) == len(polygons) > 0
    for r, p in zip(rows, polygons, strict=True):
        assert len(p) in (3, 4, 32)  # triangle, rectangle, circle
        np.testing.assert_allclose((p.min(0) + p.max(0)) / 2, r[1:3], atol=2 / 320)  # the drawn extent's centre
    out = cli("demo-data", str(tmp_path / "d"), "--images", "2", "--scale", "0.25", "--polygons", "--json")
    line = open(f"{out['path']}/labels/train/000000.txt").readline().split()
    assert len(line) >= 7 and len(line) % 2 == 1


def test_bench_and_preview_say_the_mosaics_use_polygons(polygon_data, tmp_path):
    got = cli("bench", polygon_data["polygons"], "--imgsz", "96", "--batch", "4", "--batches", "2", "--workers", "1",
              "--hyp", "hyp.scratch-high.yaml", "--json")  # fmt: skip
    assert got["polygons"] is True and got["images_per_sec"] > 0 and got["stages"]["source_ms"] > 0
    assert got["copy_paste"] is True and got["hyp"]["mixup"] == 0.1  # scratch-high's: pastes, mixes
    whole = cli("bench", polygon_data["polygons"], "--imgsz", "96", "--batch", "4", "--batches", "2", "--workers", "1",
                "--masks", "--no-overlap", "--json")  # fmt: skip
    assert (whole["masks"], whole["overlap"]) == (4, False) and whole["images_per_sec"] > 0
    shown = cli("preview", polygon_data["polygons"], "-o", str(tmp_path / "p.png"), "--imgsz", "96", "--batch", "4",
                "--workers", "1", "--hyp", "hyp.scratch-high.yaml", "--json")  # fmt: skip
    assert shown["polygons"] is True and shown["boxes"] > 0 and (tmp_path / "p.png").stat().st_size > 1000
