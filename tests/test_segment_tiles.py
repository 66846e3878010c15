"""Sliced inference with a segmentation model (`detect --tile`, `val --tile`, `Detector(tile=)`): each tile's masks
come back to the picture's pixels, an object's parts in overlapping tiles merge into one detection whose mask is
the union of theirs, and on a large picture of small objects the masks land on the objects; val scores them against
the labels' polygons at the picture's resolution."""

from __future__ import annotations

import csv
import os

import numpy as np
import pytest
import torch
from conftest import cli, write
from PIL import Image, ImageDraw

from fastload.pack.tiles import Tiling
from fastload.store import open_store
from yolo.segment import BoxMask, box_mask_iou, mask_iou, union_mask
from yolo.sliced import merge, sliced_picture, truth_masks


def disk(h: int, w: int, cx: float, cy: float, r: float) -> np.ndarray:
    ys, xs = np.mgrid[:h, :w]
    return (xs + 0.5 - cx) ** 2 + (ys + 0.5 - cy) ** 2 < r * r


def test_an_objects_parts_in_overlapping_tiles_merge_into_one_mask_the_objects():
    picture = np.zeros((300, 400, 3), np.uint8)
    obj = disk(300, 400, 200, 150, 60)  # x 140..260: both tile columns (0..256, 144..400) cut it
    picture[obj] = 255

    def detect(batch):  # "sees" the bright pixels of each tile: one detection, its mask those pixels (tile pixels)
        out = []
        for tile in batch.images[:, 0].numpy() > 128:
            ys, xs = np.nonzero(tile)
            x0, y0, x1, y1 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
            out.append((np.array([[x0, y0, x1, y1, 0.9, 0]], np.float64), [BoxMask(x0, y0, tile[y0:y1, x0:x1])]))
        return out

    det, masks = sliced_picture(picture, Tiling(256, 0.2), 256, 32, False, "cpu", detect)
    assert len(det) == 1 and len(masks) == 1  # four tiles' parts: one object
    np.testing.assert_array_equal(det[0, :4], [140, 90, 260, 210])
    np.testing.assert_array_equal(masks[0].dense((300, 400)), obj)  # the union of the parts: the whole disk


def test_merge_unions_the_masks_of_the_detections_it_merges_and_keeps_the_rest():
    a = BoxMask(0, 0, np.ones((10, 10), bool))
    b = BoxMask(6, 2, np.ones((4, 8), bool))  # inside a by 4 x 4 / 32 = 0.5 of its area... and beyond it
    c = BoxMask(50, 50, np.ones((3, 3), bool))
    det = [np.array([[0, 0, 10, 10, 0.9, 1]]), np.array([[6, 2, 14, 6, 0.8, 1], [50, 50, 53, 53, 0.7, 1]])]
    rows, masks = merge([(det[0], [a]), (det[1], [b, c])], max_det=10)
    assert len(rows) == 3 and len(masks) == 3  # b's intersection is exactly half of its area: not merged
    b = BoxMask(4, 2, np.ones((4, 8), bool))  # 6 x 4 of its 8 x 4 inside a: merged
    rows, masks = merge([(np.array([[0, 0, 10, 10, 0.9, 1]]), [a]), (np.array([[4, 2, 12, 6, 0.8, 1]]), [b])])
    np.testing.assert_array_equal(rows, [[0, 0, 12, 10, 0.9, 1]])
    np.testing.assert_array_equal(masks[0].dense((20, 20)), a.dense((20, 20)) | b.dense((20, 20)))
    boxes_only, none = merge([(np.array([[0, 0, 10, 10, 0.9, 1]]), None), (np.array([[4, 2, 12, 6, 0.8, 1]]), [b])])
    assert none is None and len(boxes_only) == 1  # a part without masks: boxes alone
    assert union_mask([c]) is c


def test_box_mask_iou_is_the_dense_masks_iou():
    rng = np.random.default_rng(0)

    def random_mask():
        h, w = (int(v) for v in rng.integers(0, 12, 2))
        return BoxMask(int(rng.integers(0, 20)), int(rng.integers(0, 20)), rng.random((h, w)) < 0.7)

    a, b = [random_mask() for _ in range(30)], [random_mask() for _ in range(20)]
    dense = [torch.from_numpy(np.stack([m.dense((32, 32)) for m in ms])) for ms in (a, b)]
    expected = mask_iou(dense[0], dense[1]).numpy()
    np.testing.assert_allclose(box_mask_iou(a, b), expected, atol=1e-6)
    assert 0 < (expected > 0).mean() < 1  # some pairs meet, some do not
    assert box_mask_iou([], b).shape == (0, 20)


def test_truth_masks_fill_each_records_polygons_at_its_size(polygon_data):
    store = open_store(polygon_data["polygons"], "train")
    h, w = (int(v) for v in store.sizes[0])
    points, offsets = store.outlines(0)
    masks = truth_masks(store, 0)
    assert len(masks) == len(store.labels(0)) == len(offsets) - 1
    for k, m in enumerate(masks):
        outline = points[offsets[k] : offsets[k + 1]] * (w, h)
        image = Image.new("L", (w, h))
        ImageDraw.Draw(image).polygon([tuple(p) for p in outline.tolist()], fill=1)
        drawn = np.asarray(image, bool)
        overlap = (m.dense((h, w)) & drawn).sum() / (m.dense((h, w)) | drawn).sum()
        assert overlap > 0.8, (k, overlap)  # (YOLOv5's fill: integer vertices and the outline's pixels)


@pytest.fixture(scope="module")
def large(segmented, tmp_path_factory):
    """A 3 x 3 mosaic of three of the segmentation run's training images (each in 3 places) with their polygons in
    the mosaic, as a dataset (`data`) and as a file (`path`): a picture 3x the model's input side."""
    tmp = tmp_path_factory.mktemp("large-seg")
    names = sorted(os.listdir(segmented["images"]))[:3]
    with Image.open(os.path.join(segmented["images"], names[0])) as im:
        w, h = im.size
    canvas = Image.new("RGB", (3 * w, 3 * h), (114, 114, 114))
    lines, polygons = [], []
    for k in range(9):
        name, x0, y0 = names[k % 3], (k % 3) * w, (k // 3) * h
        with Image.open(os.path.join(segmented["images"], name)) as im:
            canvas.paste(im.convert("RGB").resize((w, h)), (x0, y0))
        for line in open(os.path.join(segmented["labels"], os.path.splitext(name)[0] + ".txt")).read().splitlines():
            cls, *xy = line.split()
            points = np.array(xy, np.float64).reshape(-1, 2) * (w, h) + (x0, y0)
            polygons.append((int(cls), points))
            lines.append(" ".join([cls] + [f"{v:.6f}" for v in (points / (3 * w, 3 * h)).reshape(-1)]))
    canvas.save(tmp / "large.jpg", quality=95)
    for split in ("train", "val"):
        write(str(tmp / "data" / "images" / split / "large.jpg"), (tmp / "large.jpg").read_bytes())
        write(str(tmp / "data" / "labels" / split / "large.txt"), "\n".join(lines))
    names = "['circle', 'rectangle', 'triangle']"
    write(str(tmp / "data" / "data.yaml"), f"path: .\ntrain: images/train\nval: images/val\nnames: {names}\n")
    return {"path": str(tmp / "large.jpg"), "polygons": polygons, "side": max(w, h), "size": (3 * h, 3 * w),
            "tmp": tmp, "data": str(tmp / "data")}  # fmt: skip


def filled(points: np.ndarray, size) -> np.ndarray:
    image = Image.new("L", (int(size[1]), int(size[0])))
    ImageDraw.Draw(image).polygon([tuple(p) for p in points.tolist()], fill=1)
    return np.asarray(image, bool)


def mask_hits(polygons: list, found: list[tuple[int, np.ndarray]], size) -> np.ndarray:
    """Per true object: how many found (class, bool mask) of its class overlap its polygon by mask IoU >= 0.5."""
    truth = torch.from_numpy(np.stack([filled(p, size) for _, p in polygons]))
    masks = torch.from_numpy(np.stack([m for _, m in found]))
    same = np.array([c for c, _ in polygons])[:, None] == np.array([c for c, _ in found])[None]
    return ((mask_iou(truth, masks).numpy() >= 0.5) & same).sum(axis=1)


def test_detect_tile_finds_each_small_objects_mask_once(segmented, large):
    args = ["detect", large["path"], "--weights", segmented["weights"], "--imgsz", "160", "--save-txt", "--json",
            "--project", str(large["tmp"])]  # fmt: skip
    plain = cli(*args, "--name", "plain")
    tiled = cli(*args, "--name", "tiled", "--tile", str(large["side"]))
    assert tiled["segment"] and tiled["tile"]["tiles"] >= 9
    recall = {}
    for got in (plain, tiled):
        found = []
        labels = os.path.join(got["out"], "labels", "large.txt")
        for line in open(labels).read().splitlines() if os.path.exists(labels) else []:
            cls, *xy = line.split()
            found.append((int(cls), filled(np.array(xy, float).reshape(-1, 2) * large["size"][::-1], large["size"])))
        hits = mask_hits(large["polygons"], found, large["size"]) if found else np.zeros(len(large["polygons"]))
        recall[got["out"]] = (hits > 0).mean()
        if got is tiled:
            assert hits.max() == 1  # no object twice: its parts in overlapping tiles merged, masks and all
    # (0.65: the run learned its 16 pictures without augmentation, as they are; in a tile, with other pictures' parts
    # around them, it misses a few of the tiniest objects it finds in them: the model's, not the merging's)
    assert recall[tiled["out"]] >= 0.65 and recall[tiled["out"]] > recall[plain["out"]] + 0.3, recall
    drawn = np.asarray(Image.open(os.path.join(tiled["out"], "large.jpg")).convert("RGB"), np.float64)
    original = np.asarray(Image.open(large["path"]).convert("RGB"), np.float64)
    inside = np.stack([filled(p, large["size"]) for _, p in large["polygons"]]).any(0)
    assert np.abs(drawn - original).sum(2)[inside].mean() > 3 * np.abs(drawn - original).sum(2)[~inside].mean()


def test_val_tile_scores_the_merged_masks_against_the_polygons(segmented, large, tmp_path):
    args = ["val", "--weights", segmented["weights"], "--imgsz", "160", "--json", "--project", str(tmp_path)]
    plain = cli(*args, "--data", large["data"])
    tiled = cli(*args, "--data", large["data"], "--tile", str(large["side"]))
    assert tiled["mask_map50"] >= 0.5 and tiled["mask_map50"] > plain["mask_map50"] + 0.3, (tiled, plain)
    assert tiled["map50"] >= 0.5 and tiled["mask_map50_95"] > 0.1 and tiled["mask_ratio"] == 1
    every = tiled["classes"][0]
    assert every["mask_map50"] == tiled["mask_map50"]


def test_the_python_detector_gives_a_sliced_pictures_masks(segmented, large):
    from yolo.predictor import Detector

    with Image.open(large["path"]) as im:
        picture = np.asarray(im.convert("RGB"))
    results = Detector(segmented["weights"], imgsz=160, tile=large["side"])(picture)
    masks, boxes = results.masks[0].numpy(), results.boxes[0]
    assert masks.shape == (len(boxes), *picture.shape[:2])
    hits = mask_hits(large["polygons"], list(zip(results.xyxy[0][:, 5].int().tolist(), masks, strict=True)),
                     large["size"])  # fmt: skip
    assert (hits > 0).mean() >= 0.65 and hits.max() == 1, hits  # as detect --tile's


def test_train_val_whole_of_a_segmentation_run_scores_the_pictures_masks(segmented, large, tmp_path):
    """`train --tile --val-whole` of a -seg model: its validations score the merged masks on the whole pictures, as
    `val --tile` does with the same merge options (results.csv's mask columns, the JSON's mask mAPs). No learning
    rate: the weights stay the segmentation run's, so the scores are `val --tile`'s of the same weights."""
    hyp = tmp_path / "frozen.yaml"
    hyp.write_text("lr0: 0.0\nwarmup_epochs: 0\nwarmup_bias_lr: 0.0\n")
    side = str(large["side"])
    merge = ["--tile-merge", "nms", "--tile-metric", "iou", "--tile-threshold", "0.4"]  # not the default: passed on
    run = cli("train", "--data", large["data"], "--weights", segmented["weights"], "--tile", side, "--val-whole",
              *merge, "--imgsz", "160", "--epochs", "1", "--batch", "4", "--workers", "1", "--hyp", str(hyp),
              "--noplots", "--noautoanchor", "--project", str(tmp_path), "--json")  # fmt: skip
    args = ["val", "--weights", run["weights"], "--data", large["data"], "--tile", side, "--imgsz", "160",
            "--project", str(tmp_path), "--json"]  # fmt: skip
    val, default = cli(*args, *merge), cli(*args)
    assert run["val_images"] == 1 and run["mask_map50"] >= 0.5, run
    assert abs(run["mask_map50"] - val["mask_map50"]) < 1e-6 and abs(run["map50"] - val["map50"]) < 1e-6
    assert (default["map50"], default["mask_map50"]) != (val["map50"], val["mask_map50"])  # the merge mattered
    with open(os.path.join(os.path.dirname(os.path.dirname(run["weights"])), "results.csv")) as f:
        rows = list(csv.DictReader(f))
    assert float(rows[-1]["mask_map50"]) == pytest.approx(run["mask_map50"], abs=1e-4)
