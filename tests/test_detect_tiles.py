"""`detect --tile SIZE` (sliced inference, as SAHI's): a large picture decoded whole and cut into tiles, the tiles'
boxes come back to the picture's pixels and merge (with the whole picture's) by SAHI's greedy non-maximum merging,
and on a large picture of small objects the model finds what it misses when the picture is shrunk to its input."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from conftest import cli, cli_process, write
from PIL import Image

from fastload.errors import FastloadError
from fastload.loader.files import find_images, scan_images
from fastload.loader.pictures import PictureLoader
from fastload.loader.video import VideoFrames
from fastload.pack.tiles import Tiling
from yolo.sliced import (
    Merging,
    Slicer,
    greedy_nmm,
    nmm_groups,
    reference_nmm_groups,
    sliced,
    sliced_picture,
    tiled_records,
)


def test_greedy_nmm_merges_a_cut_box_into_its_whole_and_keeps_the_rest():
    det = np.array([
        [0, 0, 100, 100, 0.9, 1],  # an object
        [60, 0, 100, 100, 0.6, 1],  # its part a tile's edge cut: inside it, merged
        [70, 0, 120, 100, 0.5, 1],  # the object's part in the next tile, 60% inside it: merged, the box grows
        [0, 0, 100, 100, 0.8, 2],  # the same place, another class: kept
        [300, 300, 340, 340, 0.3, 1],  # elsewhere: kept
        [90, 90, 190, 190, 0.4, 1],  # overlapping by a corner (1% of the smaller): kept
    ], np.float64)  # fmt: skip
    out = greedy_nmm(det)
    faint = np.array([[0, 0, 100, 100, 0.9, 1], [-50, -50, 300, 300, 0.01, 1]])  # a faint box around it: dropped
    np.testing.assert_array_equal(greedy_nmm(faint), faint[:1])
    np.testing.assert_array_equal(out, [[0, 0, 120, 100, 0.9, 1], [0, 0, 100, 100, 0.8, 2],
                                        [90, 90, 190, 190, 0.4, 1], [300, 300, 340, 340, 0.3, 1]])  # fmt: skip
    assert len(greedy_nmm(det, agnostic=True)) == 3  # class 2's box merges into class 1's
    assert greedy_nmm(np.zeros((0, 6))).shape == (0, 6)


def test_nms_keeps_the_best_and_iou_keeps_a_crowds_nested_boxes_apart():
    det = np.array([
        [0, 0, 100, 100, 0.9, 1],  # an object
        [70, 0, 120, 100, 0.5, 1],  # its part in the next tile (60% inside it)
        [10, 10, 40, 40, 0.8, 1],  # another object of the class, inside the first's box (a crowd)
    ], np.float64)  # fmt: skip
    nms = greedy_nmm(det, Merging("nms"))
    np.testing.assert_array_equal(nms, det[:1])  # both taken by it, its box as it was
    by_iou = greedy_nmm(det, Merging("nmm", "iou", 0.3))  # IoU 0.2 and 0.09: three objects
    np.testing.assert_array_equal(by_iou, det[[0, 2, 1]])
    np.testing.assert_array_equal(greedy_nmm(det, Merging("nmm", "iou", 0.15)), [[0, 0, 120, 100, 0.9, 1],
                                                                                [10, 10, 40, 40, 0.8, 1]])  # fmt: skip
    with pytest.raises(FastloadError, match="nmm or nms"):
        Merging("wbf")


@pytest.mark.parametrize("merging", [Merging(), Merging("nms"), Merging("nmm", "iou", 0.3), Merging("nms", "iou", 0.6)])
def test_the_merge_finds_the_reference_loops_groups_on_spread_and_crowded_boxes(merging, monkeypatch):
    rng = np.random.default_rng(0)
    spread = rng.random((3000, 2)) * 2000
    centres = np.repeat(rng.random((60, 2)) * 2000, 50, axis=0) + rng.normal(0, 4, (3000, 2))  # 60 crowds of 50
    sides = np.repeat(rng.random((60, 2)) * 60 + 10, 50, axis=0) + rng.normal(0, 3, (3000, 2))
    for xy, wh, classes in ((spread, rng.random((3000, 2)) * 60 + 4, 10), (centres, sides, 3)):
        det = np.c_[xy, xy + wh, rng.random(len(xy)).round(2), rng.integers(0, classes, len(xy))]  # (ties too)
        for rows, agnostic in ((det, False), (det, True), (det[::-1].copy(), False)):
            expected = reference_nmm_groups(rows, merging, agnostic)
            assert 10 < len(expected) < len(rows)
            for chunk in (1000, 1 << 22):  # many chunks of candidate pairs, and one
                monkeypatch.setattr("yolo.sliced.PAIRS_CHUNK", chunk)
                got = nmm_groups(rows, merging, agnostic)
                assert len(got) == len(expected)
                assert all(np.array_equal(a, b) for a, b in zip(got, expected, strict=True))
    assert nmm_groups(np.zeros((0, 6))) == []


def test_each_tiles_boxes_come_back_to_the_pictures_pixels_and_merge():
    picture = np.zeros((300, 400, 3), np.uint8)
    seen = []

    def detect(batch):  # a box at (10, 20, 30, 40) of every tile, and one over the tile's right edge
        seen.append(tuple(batch.images.shape))
        det = np.array([[10, 20, 30, 40, 0.8, 0], [250, 0, 256, 100, 0.5, 1]], np.float64)
        return [(det, None) for _ in batch.indices]

    tiling = Tiling(256, 0.2)  # 400 x 300: tiles at x 0, 144 and y 0, 44
    got, masks = sliced_picture(picture, tiling, 256, 32, False, "cpu", detect)
    assert masks is None  # a detection model's
    assert seen == [(4, 3, 256, 256)]  # the four tiles, one batch
    class0 = sorted(map(tuple, got[got[:, 5] == 0, :4].tolist()))
    assert class0 == [(10, 20, 30, 40), (10, 64, 30, 84), (154, 20, 174, 40), (154, 64, 174, 84)]
    edges = sorted(map(tuple, got[got[:, 5] == 1, :4].tolist()))  # each column's two rows' copies (56% shared) merged
    assert edges == [(250, 0, 256, 144), (394, 0, 400, 144)]
    tensor, _ = sliced_picture(torch.from_numpy(picture), tiling, 256, 32, False, "cpu", detect)
    np.testing.assert_array_equal(tensor, got)  # a decoded picture on the device, as an array
    small, _ = sliced_picture(picture[:200, :200], tiling, 256, 32, False, "cpu", detect)
    np.testing.assert_array_equal(small, detect(type("B", (), {"indices": [0], "images": torch.zeros(1)}))[0][0])
    assert tiled_records(np.array([[100, 100], [300, 400], [256, 256]]), tiling).tolist() == [1]


def test_consecutive_pictures_tiles_share_batches_of_one_tile_size_and_come_back_in_order():
    rng = np.random.default_rng(0)
    sizes = [(300, 400), (300, 400), (200, 200), (300, 400), (500, 200), (300, 400)]  # 4, 4, 1, 4, 3, 4 tiles
    pictures = [(f"p{k}", rng.integers(0, 255, (*hw, 3), np.uint8)) for k, hw in enumerate(sizes)]
    seen = []

    def detect(batch):  # one box per tile, where its brightest pixel is (so each tile's own)
        seen.append(tuple(batch.images.shape))
        out = []
        for tile, (h, w) in zip(batch.images[:, 0].numpy(), batch.orig_size, strict=True):
            y, x = np.unravel_index(np.argmax(tile[:h, :w]), (h, w))
            out.append((np.array([[x, y, x + 4, y + 4, 0.5 + tile[y, x] / 1000, 0]], np.float64), None))
        return out

    slicer = Slicer(Tiling(256, 0.2), 256, 32, False, "cpu", detect)
    got = list(slicer.stream(pictures))
    assert [key for key, _ in got] == [key for key, _ in pictures]
    assert [s[0] for s in seen] == [8, 1, 4, 3, 4]  # 256 x 256 tiles of pictures 0-1, 2's 200 x 200, 3's, 4's ...
    for (_, found), (_, picture) in zip(got, pictures, strict=True):
        np.testing.assert_array_equal(found[0], slicer.picture(picture)[0])  # as each picture alone
    many = Slicer(Tiling(64, 0.0), 64, 32, False, "cpu", detect)
    seen.clear()
    total = 2 * len(many.tiling.windows(300, 400))
    assert len(list(many.stream(pictures[:2]))) == 2 and [s[0] for s in seen] == [16] * (total // 16) + [total % 16]


def test_whole_images_pass_through_and_tiled_ones_merge_with_their_whole_pass():
    whole = [(0, (np.array([[1, 1, 9, 9, 0.9, 0]]), None)), (1, (np.array([[0, 0, 40, 30, 0.6, 5]]), None))]
    cut = [(1, (np.array([[2, 2, 20, 20, 0.8, 5]]), None))]  # picture 1 by its tiles
    got = {i: det for i, (det, _) in sliced(iter(whole), cut, np.array([1]), True, max_det=10)}
    np.testing.assert_array_equal(got[0], whole[0][1][0])  # no tiles: as the whole image had it
    np.testing.assert_array_equal(got[1], [[0, 0, 40, 30, 0.8, 5]])  # the whole pass's box merged into the tiles'
    alone = {i: det for i, (det, _) in sliced(iter(whole[:1]), cut, np.array([1]), False, max_det=10)}
    np.testing.assert_array_equal(alone[1], [[2, 2, 20, 20, 0.8, 5]])


def test_the_picture_loader_decodes_whole_pictures_as_pil_does(tmp_path):
    rng = np.random.default_rng(0)
    for k in range(3):
        picture = (rng.random((40, 50 + 10 * k, 3)) * 255).astype(np.uint8).repeat(10, 0).repeat(10, 1)
        Image.fromarray(picture).save(tmp_path / f"a{k}.jpg", quality=95)
    files, _ = scan_images(find_images([str(tmp_path)]))
    seen = []
    for i, picture in PictureLoader(files, [2, 0], workers=1):
        with Image.open(files.paths[i]) as im:
            decoded = np.asarray(im.convert("RGB"), np.int32)
        assert picture.shape == decoded.shape and np.abs(picture.numpy() - decoded).mean() < 1.0
        seen.append(i)
    assert seen == [2, 0] and not list(PictureLoader(files, []))


@pytest.fixture(scope="module")
def large(overfit, tmp_path_factory):
    """A 3 x 3 mosaic of three of the training images (each in 3 places): a picture 3x the model's input side,
    with its labels in original pixels (cls, x1, y1, x2, y2)."""
    tmp = tmp_path_factory.mktemp("large")
    names = sorted(os.listdir(overfit["images"]))[:3]
    with Image.open(os.path.join(overfit["images"], names[0])) as im:
        w, h = im.size
    canvas = Image.new("RGB", (3 * w, 3 * h), (114, 114, 114))
    truth = []
    for k in range(9):
        name = names[k % 3]
        with Image.open(os.path.join(overfit["images"], name)) as im:
            canvas.paste(im.convert("RGB").resize((w, h)), ((k % 3) * w, (k // 3) * h))
        rows = np.loadtxt(os.path.join(overfit["labels"], os.path.splitext(name)[0] + ".txt"), ndmin=2)
        for c, cx, cy, bw, bh in rows:
            x0, y0 = (k % 3) * w, (k // 3) * h
            truth.append([c, x0 + (cx - bw / 2) * w, y0 + (cy - bh / 2) * h, x0 + (cx + bw / 2) * w,
                          y0 + (cy + bh / 2) * h])  # fmt: skip
    canvas.save(tmp / "large.jpg", quality=95)
    truth = np.array(truth)
    W, H = canvas.size  # noqa: N806
    rows = np.stack([truth[:, 0], (truth[:, 1] + truth[:, 3]) / 2 / W, (truth[:, 2] + truth[:, 4]) / 2 / H,
                     (truth[:, 3] - truth[:, 1]) / W, (truth[:, 4] - truth[:, 2]) / H], axis=1)  # fmt: skip
    for split in ("train", "val"):  # a dataset of it, to validate on
        write(str(tmp / "data" / "images" / split / "large.jpg"), (tmp / "large.jpg").read_bytes())
        write(
            str(tmp / "data" / "labels" / split / "large.txt"), "\n".join(" ".join(f"{v:.6f}" for v in r) for r in rows)
        )
    names = "['circle', 'rectangle', 'triangle']"
    write(str(tmp / "data" / "data.yaml"), f"path: .\ntrain: images/train\nval: images/val\nnames: {names}\n")
    return {"path": str(tmp / "large.jpg"), "truth": truth, "side": max(w, h), "tmp": tmp, "data": str(tmp / "data")}


def matches(truth: np.ndarray, labels: str, size: tuple[int, int]) -> np.ndarray:
    """Per true object: how many detections of its class overlap it by IoU > 0.5."""
    import torch
    from torchvision.ops import box_iou

    rows = np.loadtxt(labels, ndmin=2).reshape(-1, 5)
    w, h = size
    pred = np.stack([rows[:, 0], (rows[:, 1] - rows[:, 3] / 2) * w, (rows[:, 2] - rows[:, 4] / 2) * h,
                     (rows[:, 1] + rows[:, 3] / 2) * w, (rows[:, 2] + rows[:, 4] / 2) * h], axis=1)  # fmt: skip
    iou = box_iou(torch.from_numpy(truth[:, 1:]), torch.from_numpy(pred[:, 1:])).numpy()
    return ((iou > 0.5) & (truth[:, None, 0] == pred[None, :, 0])).sum(axis=1)


def test_sliced_inference_finds_the_small_objects_the_shrunk_picture_loses(overfit, large):
    args = ("--weights", overfit["weights"], "--imgsz", "160", "--project", str(large["tmp"]), "--save-txt", "--json")
    plain = cli("detect", large["path"], *args, "--name", "plain")
    tiled = cli("detect", large["path"], *args, "--name", "tiled", "--tile", str(large["side"]))
    both = cli("detect", large["path"], *args, "--name", "both", "--tile", str(large["side"]), "--tile-whole")
    with Image.open(large["path"]) as im:
        size = im.size
    found = {r["out"]: matches(large["truth"], os.path.join(r["out"], "labels", "large.txt"), size)
             for r in (plain, tiled, both)}  # fmt: skip
    recall = {k: float((v > 0).mean()) for k, v in found.items()}
    assert recall[tiled["out"]] >= 0.8 and recall[tiled["out"]] > recall[plain["out"]] + 0.2, recall
    assert recall[both["out"]] >= recall[tiled["out"]] - 0.05, recall
    assert found[tiled["out"]].max() == 1  # no object twice: its copies in overlapping tiles merged into one box
    grid = len(Tiling(large["side"]).windows(size[1], size[0]))
    merge = {"kind": "nmm", "metric": "ios", "threshold": 0.5}  # SAHI's GREEDYNMM by IOS
    assert tiled["tile"] == {"size": large["side"], "overlap": 0.2, "whole": False, "tiles": grid, "merge": merge}
    assert grid >= 9
    assert tiled["images"] == 1 and both["tile"]["whole"]
    crowd = cli("detect", large["path"], *args, "--name", "crowd", "--tile", str(large["side"]), "--tile-merge", "nms",
                "--tile-metric", "iou", "--tile-threshold", "0.4")  # fmt: skip
    assert crowd["tile"]["merge"] == {"kind": "nms", "metric": "iou", "threshold": 0.4}
    hits = matches(large["truth"], os.path.join(crowd["out"], "labels", "large.txt"), size)
    assert (hits > 0).mean() >= 0.8  # (an object's part cut by a tile's edge may stay beside it: IoU < 0.4)
    auto = cli_process("detect", large["path"], "--weights", overfit["weights"], "--tile", "auto")
    assert auto.returncode == 2 and "--tile auto: this model did not learn from tiles (train --tile)" in auto.stderr
    bad = cli_process("detect", large["path"], "--weights", overfit["weights"], "--tile", "big")
    assert bad.returncode == 2 and "'big': a tile's side in pixels, or auto" in bad.stderr
    refused = cli_process("detect", large["path"], "--weights", overfit["weights"], "--tile", "160", "--visualize",
                          "--project", str(large["tmp"]))  # fmt: skip
    assert refused.returncode == 2 and "--tile: sliced inference merges boxes; --visualize is not" in refused.stderr


def test_val_scores_whole_pictures_by_their_tiles_and_images_that_fit_a_tile_as_plain_val(overfit, large):
    args = ("val", "--weights", overfit["weights"], "--imgsz", "160", "--json")
    plain = cli(*args, "--data", large["data"])
    tiled = cli(*args, "--data", large["data"], "--tile", str(large["side"]))
    assert tiled["map50"] >= 0.5 and tiled["map50"] > plain["map50"] + 0.3, (tiled["map50"], plain["map50"])
    assert tiled["tile"]["tiles"] >= 9 and tiled["images"] == 1
    small = cli(*args, "--tile", "1000")  # the run's own 16 images: none larger than a tile
    same = cli(*args)
    assert small["tile"]["tiles"] == 0 and small["images"] == same["images"] == 16
    assert (small["map50"], small["map50_95"]) == (same["map50"], same["map50_95"])


def test_the_python_detector_slices_a_picture_in_memory_as_detect_does(overfit, large):
    from yolo.predictor import Detector

    with Image.open(large["path"]) as im:
        picture = np.asarray(im.convert("RGB"))
    h, w = picture.shape[:2]
    found = Detector(overfit["weights"], imgsz=160, tile=large["side"])(picture).xyxy[0].numpy()
    rows = np.stack([found[:, 5], (found[:, 0] + found[:, 2]) / 2 / w, (found[:, 1] + found[:, 3]) / 2 / h,
                     (found[:, 2] - found[:, 0]) / w, (found[:, 3] - found[:, 1]) / h], axis=1)  # fmt: skip
    labels = os.path.join(str(large["tmp"]), "hub.txt")
    np.savetxt(labels, rows)
    hits = matches(large["truth"], labels, (w, h))
    assert (hits > 0).mean() >= 0.8 and hits.max() == 1, (hits > 0).mean()
    small = Detector(overfit["weights"], imgsz=160, tile=1000)(picture)  # fits one tile: as without tiling
    plain = Detector(overfit["weights"], imgsz=160)(picture)
    np.testing.assert_array_equal(small.xyxy[0].numpy(), plain.xyxy[0].numpy())


def test_a_videos_frames_are_sliced_as_pictures_are(overfit, large):
    import av

    with Image.open(large["path"]) as im:
        picture = np.asarray(im.convert("RGB"))
    h, w = picture.shape[:2]
    clip = large["tmp"] / "mosaic.mp4"
    with av.open(str(clip), "w") as out:
        stream = out.add_stream("mpeg4", rate=5)
        stream.height, stream.width = h, w
        stream.pix_fmt, stream.options = "yuv420p", {"qscale": "1"}
        for _ in range(3):
            out.mux(stream.encode(av.VideoFrame.from_ndarray(picture, format="rgb24")))
        out.mux(stream.encode())
    got = cli("detect", str(clip), "--weights", overfit["weights"], "--imgsz", "160", "--tile", str(large["side"]),
              "--batch", "2", "--project", str(large["tmp"]), "--name", "video", "--save-txt", "--nosave",
              "--json")  # fmt: skip
    assert got["frames"] == 3 and got["tile"]["tiles"] == 0  # (no picture files: the frames were cut instead)
    batches = [(b, video.frames_of(b)) for video in [VideoFrames(str(clip), 160, 2, sliced=True)] for b in video]
    assert [len(b.indices) for b, _ in batches] == [2, 1] and all(b.images.numel() == 0 for b, _ in batches)
    assert all(f.shape == picture.shape for _, frames in batches for f in frames)  # whole, for their tiles
    for frame in (1, 2, 3):
        hits = matches(large["truth"], os.path.join(got["out"], "labels", f"mosaic_{frame}.txt"), (w, h))
        assert (hits > 0).mean() >= 0.8 and hits.max() == 1, (frame, (hits > 0).mean())
