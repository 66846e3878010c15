"""Instance masks for segmentation (YOLOv5's overlap masks): the drawing, the outlines a store gives, and the masks
the real training and validation loaders deliver beside their boxes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fastload.loader.augment import Hyp
from fastload.loader.masks import instance_masks, instance_planes, overlap_mask, shrink, unpack_planes
from fastload.loader.train_loader import TrainLoader
from fastload.loader.val_loader import ValLoader
from fastload.store import open_store
from yolo.segment import target_masks


def square(x0, y0, x1, y1) -> np.ndarray:
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float64)


def test_overlap_mask_paints_the_smaller_object_over_the_larger():
    big, small = square(0, 0, 40, 40), square(20.5, 20.5, 31.9, 31.9)
    mask, order = overlap_mask([small, big], (64, 64), ratio=4)
    assert mask.shape == (16, 16) and mask.dtype == np.uint8
    assert order.tolist() == [1, 0]  # largest first: the big square is object 1, the small one object 2
    # filled at integer vertices (20..31 in pixels) then shrunk: mask pixel i samples pixels 4i + 1 and 4i + 2
    assert (mask[5:8, 5:8] == 2).all() and (mask == 2).sum() == 9
    assert (mask[:10, :10] > 0).all() and (mask == 1).sum() == 100 - 9
    assert not mask[10:, :].any() and not mask[:, 10:].any()


def test_shrink_takes_the_mean_of_the_two_by_two_pixels_at_each_sample():
    m = np.zeros((8, 8), np.uint8)
    m[1, 1] = 1  # one of the four pixels around mask pixel (0, 0)'s sample: rounds to 0
    m[1, 6] = m[2, 6] = 1  # two of them for mask pixel (0, 1): rounds to 1
    assert shrink(m, 4).tolist() == [[0, 1], [0, 0]]
    assert shrink(m, 1) is m


def test_overlap_mask_is_wide_past_255_objects_and_skips_outlines_outside():
    outlines = [square(x, y, x + 2, y + 2) for y in range(0, 64, 4) for x in range(0, 68, 4)]  # 272, some outside
    outlines.append(square(-50, -50, -10, -10))
    mask, order = overlap_mask(outlines, (64, 64), ratio=1)
    assert mask.dtype == np.int32 and len(order) == 273
    assert order[-1] == 272 or (mask == np.flatnonzero(order == 272)[0] + 1).sum() == 0
    assert len(np.unique(mask)) == 256 + 1  # 16 x 16 squares inside, and the background


def test_whole_masks_are_the_overlap_masks_objects_before_painting():
    """--no-overlap: each object's own mask (YOLOv5's polygons2masks), in the objects' order, sent as bit planes;
    painted largest first they are the overlap mask."""
    rng = np.random.default_rng(3)
    outlines = [rng.uniform(-8, 72, (int(rng.integers(1, 7)), 2)) for _ in range(19)]  # 3 planes; points, outside
    outlines.append(square(-50, -50, -10, -10))
    whole = instance_masks(outlines, (64, 64), ratio=4)
    planes = instance_planes(outlines, (64, 64), ratio=4)
    assert whole.shape == (20, 16, 16) and planes.shape == (3, 16, 16) and not whole[-1].any()
    index = np.arange(20)
    assert np.array_equal(unpack_planes(planes[None], index * 0, index), whole)
    unpacked = unpack_planes(torch.from_numpy(planes[None]), torch.zeros(20, dtype=torch.long), torch.arange(20))
    assert unpacked.dtype == torch.uint8 and np.array_equal(unpacked.numpy(), whole)
    overlap, order = overlap_mask(outlines, (64, 64), ratio=4)
    painted = np.zeros_like(overlap)
    for k, j in enumerate(order):
        painted[whole[j] > 0] = k + 1
    assert np.array_equal(painted, overlap) and whole.sum() > (overlap > 0).sum()  # some objects overlap
    assert instance_planes([], (64, 64), 4).shape == (1, 16, 16) and instance_masks([], (64, 64), 4).shape == (
        0,
        16,
        16,
    )


def test_store_outlines_are_polygons_or_box_corners(polygon_data):
    poly, boxes = open_store(polygon_data["polygons"], "train"), open_store(polygon_data["boxes"], "train")
    for i in range(len(poly)):
        points, offsets = poly.outlines(i)
        found, found_offsets = poly.polygons(i)
        assert np.array_equal(points, found) and np.array_equal(offsets, found_offsets)
        points, offsets = boxes.outlines(i)
        rows = boxes.labels(i)
        assert np.diff(offsets).tolist() == [4] * len(rows)
        corners = points.reshape(-1, 4, 2)
        assert np.allclose(corners.mean(1), rows[:, 1:3], atol=1e-6)
        assert np.allclose(corners[:, 2] - corners[:, 0], rows[:, 3:5], atol=1e-6)


def boxes_hold_their_masks(images, targets, masks, ratio=4, slack=1.0) -> int:
    """Each target's mask pixels (value k + 1 for the image's k-th target) lie inside its box (in mask pixels, with
    `slack`); returns how many targets have pixels."""
    height, width = images.shape[-2:]
    assert masks.shape == (len(images), height // ratio, width // ratio)
    with_pixels = 0
    for j in range(len(images)):
        rows = targets[targets[:, 0] == j]
        assert int(masks[j].max()) <= len(rows)
        for k, (_, _, cx, cy, w, h) in enumerate(rows.tolist()):
            ys, xs = np.nonzero((masks[j] == k + 1).cpu().numpy())
            if not len(xs):
                assert w * width * h * height < 8 * ratio**2, "a box of some size has no mask pixels"
                continue
            with_pixels += 1
            x0, x1 = (cx - w / 2) * width / ratio, (cx + w / 2) * width / ratio
            y0, y1 = (cy - h / 2) * height / ratio, (cy + h / 2) * height / ratio
            assert x0 - slack <= xs.min() and xs.max() + 1 <= x1 + slack
            assert y0 - slack <= ys.min() and ys.max() + 1 <= y1 + slack
    return with_pixels


@pytest.mark.parametrize(
    "hyp",
    [Hyp(fliplr=0.5, flipud=0.5), Hyp(mixup=0.5, degrees=20, copy_paste=0.5, flipud=0.5, perspective=0.0005)],
    ids=["mosaic_flips", "mixup_rotation_copy_paste"],
)
def test_train_loader_masks_follow_the_boxes_and_leave_the_pixels_as_they_were(polygon_data, hyp):
    store = open_store(polygon_data["polygons"], "train")
    common = dict(hyp=hyp, seed=5, workers=1, multi_scale=True)
    with_masks = TrainLoader(store, 128, 4, mask_ratio=4, **common)
    without = TrainLoader(store, 128, 4, **common)
    seen = 0
    for a, b in zip(with_masks, without, strict=True):
        assert torch.equal(a.images, b.images)  # mosaics only: the boxes come from the polygons either way
        assert b.masks is None
        # the same targets, each image's in its masks' order (largest first)
        key = lambda t: sorted(map(tuple, t.numpy().round(5).tolist()))  # noqa: E731
        assert key(a.targets) == key(b.targets)
        seen += boxes_hold_their_masks(a.images, a.targets, a.masks)
    assert seen > 20


@pytest.mark.parametrize("training", [True, False], ids=["train", "val"])
def test_without_overlap_each_target_gets_its_whole_mask_in_its_order(polygon_data, training):
    """The same batches with overlap masks and without: each target's whole mask covers its overlap-mask pixels,
    some reach under a smaller object, and painted largest first they are the overlap mask."""
    store = open_store(polygon_data["polygons"], "train" if training else "val")
    hyp = Hyp(mixup=0.5, degrees=20, copy_paste=0.5, flipud=0.5, fliplr=0.5)
    if training:
        make = lambda overlap: TrainLoader(store, 128, 4, hyp=hyp, seed=5, workers=1, mask_ratio=4, overlap=overlap)  # noqa: E731
    else:
        make = lambda overlap: ValLoader(store, 128, 2, workers=1, mask_ratio=4, overlap=overlap)  # noqa: E731
    key = lambda row: tuple(row.numpy().round(5).tolist())  # noqa: E731
    targets, under = 0, 0
    for a, b in zip(make(True), make(False), strict=True):
        assert torch.equal(a.images, b.images) and a.overlap and not b.overlap
        assert (
            b.masks.shape == (len(b.targets), *a.masks.shape[-2:])
            and b.masks.dtype == torch.uint8
            and b.masks.max() <= 1
        )
        painted = b.overlap_masks()
        boxes_hold_their_masks(b.images, b.targets, painted)
        for j in range(len(a.images)):
            rows = a.targets[a.targets[:, 0] == j]
            overlapped = dict(zip(map(key, rows), target_masks(a.masks[j], len(rows)), strict=True))
            mine = b.targets[:, 0] == j
            for row, paint, whole in zip(b.targets[mine], target_masks(painted[j], int(mine.sum())), b.masks[mine],
                                         strict=True):  # fmt: skip
                assert torch.equal(overlapped[key(row)], paint) and not (paint & (whole == 0)).any()
                targets, under = targets + 1, under + bool((whole.bool() & ~paint).any())
    assert targets > 10 and (under > 0 or not training)


def test_masks_of_box_labels_are_their_boxes_and_letterboxed_canvases_take_outlines(polygon_data):
    """A store without polygons gives each box's rectangle; with mosaic off every canvas is letterboxed and still
    warped and boxed from its outlines (YOLOv5's segmentation loader), so the masks fill their boxes."""
    store = open_store(polygon_data["boxes"], "train")
    loader = TrainLoader(store, 128, 4, hyp=Hyp(mosaic=0.0, scale=0.2), seed=2, workers=1, mask_ratio=4)
    filled = []
    for b in loader:
        boxes_hold_their_masks(b.images, b.targets, b.masks)
        for j in range(len(b.images)):
            for k, (_, _, _, _, w, h) in enumerate(b.targets[b.targets[:, 0] == j].tolist()):
                area = w * h * b.masks.shape[1] * b.masks.shape[2]
                if area > 16:
                    filled.append(float((b.masks[j] == k + 1).sum()) / area)
    assert filled and np.median(filled) > 0.8  # rectangles, less what a later, smaller box covers


def test_val_loader_masks_are_the_letterboxed_outlines(polygon_data):
    store = open_store(polygon_data["polygons"], "val")
    plain = list(ValLoader(store, 128, 2, workers=1))
    masked = list(ValLoader(store, 128, 2, workers=1, mask_ratio=4))
    for a, b in zip(masked, plain, strict=True):
        assert torch.equal(a.images, b.images) and b.masks is None
        assert sorted(a.targets.tolist()) == sorted(b.targets.tolist())
        assert boxes_hold_their_masks(a.images, a.targets, a.masks, slack=1.0) > 0


def test_masks_refuse_quad_and_odd_ratios(polygon_data):
    store = open_store(polygon_data["polygons"], "train")
    with pytest.raises(ValueError, match="quad"):
        TrainLoader(store, 128, 4, quad=True, mask_ratio=4)
    with pytest.raises(ValueError, match="divide the stride"):
        TrainLoader(store, 128, 4, mask_ratio=3)


def test_preview_tints_each_object_by_its_mask(polygon_data, tmp_path):
    from PIL import Image

    from fastload.preview import preview

    plain = preview(polygon_data["polygons"], str(tmp_path / "plain.png"), imgsz=128, batch=4, workers=1)
    tinted = preview(polygon_data["polygons"], str(tmp_path / "masks.png"), imgsz=128, batch=4, workers=1, masks=True)
    assert (plain["masks"], tinted["masks"]) == (False, True) and plain["boxes"] == tinted["boxes"] > 0
    a = np.asarray(Image.open(tmp_path / "plain.png"), np.int16)
    b = np.asarray(Image.open(tmp_path / "masks.png"), np.int16)
    changed = np.abs(a - b).max(2) > 8
    assert 0.02 < changed.mean() < 0.6  # the objects' pixels, not the whole picture


def test_images_without_labels_get_empty_masks(polygon_data, tmp_path):
    import shutil

    from fastload.pack import PackOptions, pack

    data = tmp_path / "data"
    shutil.copytree(polygon_data["polygons_dir"], data)
    emptied = sorted((data / "labels" / "val").iterdir())[0]
    emptied.write_text("")  # an image with no objects
    pack(str(data), str(tmp_path / "s.lmdb"), PackOptions())
    store = open_store(str(tmp_path / "s.lmdb"), "val")
    empty = [i for i in range(len(store)) if not len(store.labels(i))]
    assert len(empty) == 1 and store.outlines(empty[0])[0].shape == (0, 2)
    seen = False
    for b in ValLoader(store, 128, 4, workers=1, mask_ratio=4):
        for j, i in enumerate(b.indices.tolist()):
            if i == empty[0]:
                seen = not b.masks[j].any() and not (b.targets[:, 0] == j).any()
    assert seen
    loader = TrainLoader(store, 128, 4, hyp=Hyp(mosaic=0.0), workers=1, mask_ratio=4)  # each image alone
    assert sum(not b.masks[j].any() for b in loader for j in range(len(b.images))) >= 1
    for b in TrainLoader(store, 128, 4, hyp=Hyp(mosaic=0.0), workers=1, mask_ratio=4, overlap=False):
        assert len(b.masks) == len(b.targets) and all(m.any() for m in b.masks)
