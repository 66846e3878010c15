"""YOLOv5's segmentation models: the Segment head (YOLOv5's parameter counts, a YOLOv5 checkpoint's output to the
bit), its loss (the mask term from its definition), NMS that carries the mask coefficients, the masks' IoU, and a
run that learns masks, validated by `fastload val`; masks at the original's resolution, their outlines and RLEs in
detect, the predictor, val --save-json and the exported files."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from conftest import SEG_EPOCHS, cli, coco_stats
from matplotlib.path import Path
from PIL import Image, ImageDraw

from fastload.cli import main
from fastload.loader.draw import annotate, class_colour, painted
from fastload.loader.val_loader import ValLoader
from fastload.store import open_store
from yolo.coco import rle
from yolo.loss import SegmentLoss
from yolo.metrics import evaluate, non_max_suppression
from yolo.model import YOLOv5, is_segment
from yolo.segment import (
    BoxMask,
    crop_mask,
    mask_iou,
    native_masks,
    prediction_overlap,
    process_mask,
    reference_native_masks,
    target_masks,
)
from yolo.val import validate
from yolo.weights import read_weights
from yolo.yaml_model import YamlModel

DATA = os.path.join(os.path.dirname(__file__), "data")
HUB = json.load(open(os.path.join(DATA, "yolov5-hub.json")))


def test_segmentation_models_have_yolov5s_parameter_counts():
    counts = {"n": 1_991_549, "s": 7_621_277, "m": 21_990_397, "l": 47_924_957, "x": 88_819_517}  # YOLOv5's, nc=80
    for size, count in counts.items():
        model = YOLOv5(f"{size}-seg", nc=80)
        assert sum(p.numel() for p in model.parameters()) == count, size
        assert model.detect.npr == HUB[f"segment/yolov5{size}-seg.yaml"]["yaml"]["head"][-1][-1][-1] * {
            "n": 0.25, "s": 0.5, "m": 0.75, "l": 1.0, "x": 1.25}[size]  # fmt: skip
    built = YamlModel(HUB["segment/yolov5s-seg.yaml"]["yaml"], nc=80)
    assert is_segment(built) and sum(p.numel() for p in built.parameters()) == counts["s"]


def test_a_yolov5_segmentation_checkpoint_gives_yolov5s_output_and_prototypes():
    w = read_weights(os.path.join(DATA, "yolov5n-seg-3cls.pt"))
    assert (w.arch, w.source, w.segments, w.names) == ("n-seg", "yolov5", True, ["circle", "rectangle", "triangle"])
    model = w.model().eval()
    ref = torch.load(os.path.join(DATA, "yolov5n-seg-3cls-output.pt"))
    with torch.no_grad():
        decoded, maps, proto = model(ref["input"])
    assert decoded.shape == ref["output"].shape == (1, 756, 5 + 3 + 32)
    assert torch.allclose(decoded, ref["output"], rtol=1e-5, atol=1e-4)  # mask coefficients raw, the rest decoded
    assert torch.allclose(proto, ref["proto"], rtol=1e-5, atol=1e-5)
    model.train()
    maps, proto = model(ref["input"])
    assert [m.shape[-1] for m in maps] == [40] * 3 and proto.shape == (1, 32, 24, 32)


def brute_force_mask_term(loss: SegmentLoss, maps, proto, targets, masks) -> torch.Tensor:
    """The mask term from its definition, one match at a time: for each level and image, the mean over its matches
    of BCE(coefficients . prototypes, target mask) inside the target box, over the box's area; summed, times the
    box gain over the batch size."""
    total = torch.zeros(())
    for i, level in enumerate(loss.build_targets(maps, targets)):
        b, a, gj, gi, rows = level[0], level[1], level[2], level[3], level[8]
        per_image = {}
        for k in range(len(b)):
            image, row = int(b[k]), int(rows[k])
            index = row - int((targets[:, 0] < image).sum()) + 1
            coefficients = maps[i][image, a[k], gj[k], gi[k]]
            logits = torch.einsum("c,chw->hw", coefficients[5 + loss.nc :], proto[image])
            gt = (masks[image] == index).float()
            bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, gt, reduction="none")
            cx, cy, w, h = targets[row, 2:6].tolist()
            mh, mw = proto.shape[-2:]
            ys, xs = torch.meshgrid(torch.arange(mh).float(), torch.arange(mw).float(), indexing="ij")
            inside = (xs >= (cx - w / 2) * mw) & (xs < (cx + w / 2) * mw) & (ys >= (cy - h / 2) * mh)
            inside &= ys < (cy + h / 2) * mh
            per_image.setdefault(image, []).append((bce * inside).mean() / (w * h))
        for values in per_image.values():
            total = total + torch.stack(values).mean()
    return total * loss.gain_box / proto.shape[0]


def test_a_yolov5_segmentation_checkpoint_validates_as_yolov5s_segment_val(polygon_data):
    """Its masks scored as YOLOv5's segment/val.py scores them (whole masks at the input's size) unless told."""
    common = ["val", "--weights", os.path.join(DATA, "yolov5n-seg-3cls.pt"), "--data", polygon_data["polygons"],
              "--imgsz", "128", "--workers", "1", "--json"]  # fmt: skip
    got, told = cli(*common), cli(*common, "--mask-ratio", "4", "--overlap")
    assert (got["mask_ratio"], got["overlap"], told["mask_ratio"], told["overlap"]) == (1, False, 4, True)
    assert "mask_map50" in got and got["map50"] == told["map50"]


def test_the_mask_loss_is_its_definition_and_teaches_the_prototypes():
    torch.manual_seed(0)
    model = YOLOv5("n-seg", nc=3)
    loss = SegmentLoss(model.detect, imgsz=128)
    x = torch.rand(2, 3, 128, 128)
    targets = torch.tensor([[0, 1, 0.3, 0.3, 0.3, 0.2], [0, 2, 0.6, 0.6, 0.4, 0.5], [1, 0, 0.5, 0.5, 0.5, 0.5]])
    masks = torch.zeros(2, 32, 32, dtype=torch.uint8)
    masks[0, 3:16, 4:15], masks[0, 11:28, 12:26], masks[1, 8:24, 8:24] = 1, 2, 1  # the second paints over the first
    maps, proto = model(x)
    total, items = loss((maps, proto), targets, masks=masks)
    assert items.shape == (4,) and torch.isclose(total, items.sum() * 2)
    want = brute_force_mask_term(loss, [m.detach() for m in maps], proto.detach(), targets, masks)
    assert items[1] > 0 and torch.isclose(items[1], want, rtol=1e-5)
    total.backward()
    assert model.detect.proto.cv3[0].weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="masks"):
        loss((maps, proto), targets)
    half = torch.nn.functional.interpolate(masks[None].float(), (16, 16), mode="nearest")[0].repeat_interleave(2, 1)
    resized = loss(([m.detach() for m in maps], proto.detach()), targets, masks=half.repeat_interleave(2, 2))[1]
    assert torch.isfinite(resized).all()  # other-sized masks are resized to the prototypes' (YOLOv5's nearest)
    # --no-overlap: each target's own mask, in the targets' order; the same masks give the same loss, whole ones more
    own = torch.cat([target_masks(masks[0], 2), target_masks(masks[1], 1)]).to(torch.uint8)
    whole = SegmentLoss(model.detect, imgsz=128, overlap=False)
    detached = ([m.detach() for m in maps], proto.detach())
    assert torch.allclose(whole(detached, targets, masks=own)[1], items, rtol=1e-6)
    own[0, 3:16, 4:15] = 1  # the first target's mask whole again, under the second's
    assert not torch.isclose(whole(detached, targets, masks=own)[1][1], items[1])


def test_nms_carries_the_mask_coefficients_and_masks_compare_by_iou():
    pred = torch.zeros(1, 3, 5 + 2 + 4)
    pred[0, :, :4] = torch.tensor([[20, 20, 10, 10], [21, 20, 10, 10], [60, 60, 20, 20]], dtype=torch.float32)
    pred[0, :, 4] = torch.tensor([0.9, 0.8, 0.7])
    pred[0, :, 5:7] = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    pred[0, :, 7:] = torch.arange(12, dtype=torch.float32).view(3, 4)  # each row's coefficients
    (det,) = non_max_suppression(pred, 0.25, 0.45, nm=4)
    assert det.shape == (2, 10) and det[:, 5].tolist() == [0.0, 1.0]  # the second box is suppressed
    assert det[0, 6:].tolist() == [0, 1, 2, 3] and det[1, 6:].tolist() == [8, 9, 10, 11]
    assert non_max_suppression(pred[..., :7], 0.25, 0.45)[0].shape == (2, 6)  # no coefficients without nm

    overlap = torch.zeros(8, 8, dtype=torch.uint8)
    overlap[:4, :4], overlap[4:, 4:] = 1, 2
    gt = target_masks(overlap, 2)
    assert gt.shape == (2, 8, 8) and gt[0].sum() == 16 and gt[1].sum() == 16
    found = torch.zeros(2, 8, 8, dtype=torch.bool)
    found[0, :4, :2], found[1, 4:, 4:] = True, True
    assert torch.allclose(mask_iou(found, gt), torch.tensor([[0.5, 0.0], [0.0, 1.0]]), atol=1e-6)
    cropped = crop_mask(torch.ones(1, 8, 8), torch.tensor([[2.0, 1.0, 5.0, 3.0]]))
    assert cropped.sum() == 6 and cropped[0, 1:3, 2:5].all()
    proto = torch.zeros(1, 8, 8)
    proto[0, :4, :4] = 10.0  # one prototype: the top-left quarter
    masks = process_mask(proto, torch.tensor([[1.0], [1.0]]), torch.tensor([[0, 0, 32, 32], [0, 0, 8, 8.0]]), (32, 32))
    assert masks[0].sum() == 16 and masks[1].sum() == 4  # the second detection's box keeps 2 x 2 of it


def synthetic_masks(seed: int, images: int = 20, nc: int = 3, side: int = 64):
    """Ground-truth masks (random rectangles and discs) and noisy predictions of them (shifted, grown or shrunk,
    some of the wrong class) with false positives: per image (preds [k, 6], gts [m, 5], pred masks, gt masks)."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[:side, :side]

    def shape(cx, cy, r, disc):
        return ((xs - cx) ** 2 + (ys - cy) ** 2 < r * r) if disc else (abs(xs - cx) < r) & (abs(ys - cy) < r * 0.7)

    out = []
    for _ in range(images):
        m = int(rng.integers(1, 6))
        centres, radii, discs = rng.uniform(8, side - 8, (m, 2)), rng.uniform(4, 14, m), rng.random(m) < 0.5
        gt_masks = np.stack([shape(*c, r, d) for c, r, d in zip(centres, radii, discs, strict=True)])
        gt_cls = rng.integers(0, nc, m)
        moved = centres + rng.normal(0, 2.5, (m, 2))
        pred_masks = [shape(*c, r * rng.uniform(0.7, 1.3), d) for c, r, d in zip(moved, radii, discs, strict=True)]
        pred_cls = list(np.where(rng.random(m) < 0.85, gt_cls, rng.integers(0, nc, m)))
        for _ in range(int(rng.integers(0, 4))):  # false positives
            pred_masks.append(shape(*rng.uniform(8, side - 8, 2), rng.uniform(4, 12), rng.random() < 0.5))
            pred_cls.append(int(rng.integers(0, nc)))
        conf = rng.uniform(0.05, 1, len(pred_masks))
        preds = np.concatenate([np.zeros((len(conf), 4)), conf[:, None], np.array(pred_cls)[:, None]], 1)
        gts = np.concatenate([gt_cls[:, None], np.zeros((m, 4))], 1)
        out.append((preds, gts, np.stack(pred_masks), gt_masks))
    return out


@pytest.mark.parametrize("seed", [0, 1])
def test_mask_map_equals_pycocotools_segm(seed):
    """The mask mAP (`evaluate` with the masks' IoU, as validate computes it) against pycocotools' segm evaluation of
    the same masks as RLE."""
    from pycocotools import mask as rle

    data = synthetic_masks(seed)
    ious = [mask_iou(torch.from_numpy(p), torch.from_numpy(g)).numpy() for _, _, p, g in data]
    ours = evaluate([d[0] for d in data], [d[1] for d in data], ious)
    images, anns, dets = [], [], []
    for i, (preds, gts, pred_masks, gt_masks) in enumerate(data):
        images.append({"id": i, "width": 64, "height": 64})
        for c, m in zip(gts[:, 0], gt_masks, strict=True):
            code = rle.encode(np.asfortranarray(m.astype(np.uint8)))
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": int(c), "iscrowd": 0,
                         "segmentation": code, "area": float(m.sum()), "bbox": list(rle.toBbox(code))})  # fmt: skip
        for (*_, conf, c), m in zip(preds, pred_masks, strict=True):
            dets.append({"image_id": i, "category_id": int(c), "score": float(conf),
                         "segmentation": rle.encode(np.asfortranarray(m.astype(np.uint8)))})  # fmt: skip
    stats = coco_stats(images, anns, dets, "segm", 3)
    assert 0.1 < stats[1] < 0.99  # a non-trivial case
    assert abs(ours["map50"] - stats[1]) < 0.002 and abs(ours["map50_95"] - stats[0]) < 0.002


def test_a_segmentation_run_learns_masks_and_val_measures_them(segmented, tmp_path):
    assert segmented["model"] == "n-seg"
    assert segmented["map50"] >= 0.8 and segmented["mask_map50"] >= 0.8
    with open(segmented["results"]) as f:
        header, *rows = f.read().splitlines()
    columns = header.split(",")
    assert {"seg_loss", "val_seg_loss", "mask_map50", "mask_map50_95"} <= set(columns) and len(rows) == SEG_EPOCHS
    seg = [float(r.split(",")[columns.index("seg_loss")]) for r in rows]
    assert seg[-1] < 0.5 * seg[0]
    got = cli("val", "--weights", segmented["weights"], "--json", "--batch", "8", "--project", str(tmp_path))
    assert abs(got["mask_map50"] - segmented["mask_map50"]) < 1e-6 and abs(got["map50"] - segmented["map50"]) < 1e-6
    every, *classes = got["classes"]  # YOLOv5's segment/val.py table: box and mask columns per class
    assert every["mask_map50"] == got["mask_map50"] and len(classes) == 3
    assert all(0 < c["mask_map50"] <= 1 and c["mask_map50_95"] <= c["mask_map50"] for c in classes)


def polygon_mask(points: np.ndarray, size) -> np.ndarray:
    """A polygon [n, 2] in pixels filled by PIL over an image of `size` (h, w): bool [h, w]."""
    image = Image.new("L", (int(size[1]), int(size[0])))
    ImageDraw.Draw(image).polygon([tuple(p) for p in points.tolist()], fill=1)
    return np.asarray(image, bool)


def label_polygons(path: str, size) -> tuple[np.ndarray, list[np.ndarray]]:
    """A YOLO segment label file's classes and polygons in pixels of `size` (h, w)."""
    rows = [np.array(line.split(), np.float64) for line in open(path).read().splitlines()]
    return np.array([r[0] for r in rows]), [r[1:].reshape(-1, 2) * (size[1], size[0]) for r in rows]


def test_detect_draws_masks_and_writes_outlines_that_land_on_the_objects(segmented, tmp_path):
    got = cli("detect", "--weights", segmented["weights"], segmented["images"], "--save-txt", "--project",
              str(tmp_path), "--json")  # fmt: skip
    assert got["segment"] and got["detections"] > 0
    labels = os.path.join(os.path.dirname(os.path.dirname(segmented["images"])), "labels", "train")
    matched, objects, inside, outside = 0, 0, [], []
    for name in sorted(os.listdir(segmented["images"])):
        stem = os.path.splitext(name)[0]
        original = np.asarray(Image.open(os.path.join(segmented["images"], name)).convert("RGB"), np.float64)
        size = original.shape[:2]
        truth_cls, truth = label_polygons(os.path.join(labels, stem + ".txt"), size)
        found_cls, found = label_polygons(os.path.join(got["out"], "labels", stem + ".txt"), size)
        truth_masks = np.stack([polygon_mask(p, size) for p in truth])
        found_masks = np.stack([polygon_mask(p, size) for p in found])
        ious = mask_iou(torch.from_numpy(truth_masks), torch.from_numpy(found_masks)).numpy()
        same = truth_cls[:, None] == found_cls[None]
        matched += int(((ious >= 0.5) & same).any(1).sum())
        objects += len(truth)
        drawn = np.asarray(Image.open(os.path.join(got["out"], name)).convert("RGB"), np.float64)
        change = np.abs(drawn - original).sum(2)
        core = found_masks.any(0) & ~np.pad(found_masks.any(0), 3)[6:, 6:] & ~np.pad(found_masks.any(0), 3)[:-6, :-6]
        inside.append(change[core].mean()) if core.any() else None  # tinted (away from the box lines)
        outside.append(change[~found_masks.any(0)].mean())
    assert matched >= 0.8 * objects, (matched, objects)
    assert np.median(inside) > 3 * np.median(outside), (np.median(inside), np.median(outside))
    auto = tmp_path / "autolabelled"  # the label files as a dataset's: they pack, each row with its polygon
    shutil.copytree(segmented["images"], auto / "images" / "train")
    shutil.copytree(got["labels"], auto / "labels" / "train")
    (auto / "data.yaml").write_text("path: .\ntrain: images/train\nnames: [circle, rectangle, triangle]\n")
    packed = cli("pack", str(auto / "data.yaml"), "-o", str(tmp_path / "auto.lmdb"), "--json")
    split = packed["splits"]["train"]
    assert split["count"] == 16 and split["boxes"] == split["polygons"] == got["detections"] and not packed["skipped"]


def test_a_video_gets_its_masks_frame_by_frame(segmented, tmp_path):
    from fastload.loader.video import VideoFrames, VideoWriter

    names = sorted(os.listdir(segmented["images"]))[:4]
    frames = [np.asarray(Image.open(os.path.join(segmented["images"], n)).convert("RGB").resize((160, 128)))
              for n in names]  # fmt: skip
    clip = str(tmp_path / "clip.mp4")
    with VideoWriter(clip, 5, (128, 160)) as writer:
        for frame in frames:
            writer.write(frame)
    got = cli(
        "detect",
        clip,
        "--weights",
        segmented["weights"],
        "--save-txt",
        "--project",
        str(tmp_path),
        "--json",
        "--retina-masks",
    )  # YOLOv5's flag, accepted: the masks are at the original's resolution anyway
    assert got["segment"] and got["frames"] == 4 and got["videos"][0]["error"] is None
    lines = [open(os.path.join(got["labels"], f"clip_{k}.txt")).read().splitlines() for k in range(1, 5)]
    assert all(lines) and all(len(line.split()) >= 7 and len(line.split()) % 2 == 1 for f in lines for line in f)
    written = VideoFrames(got["videos"][0]["out"], 160, 4, 32, "cpu")
    assert written.frames == 4 and written.size == (128, 160)


def test_the_predictor_gives_masks_and_outlines_as_detect_does(segmented, tmp_path):
    from yolo.predictor import Detector

    model = Detector(segmented["weights"])
    name = sorted(os.listdir(segmented["images"]))[0]
    results = model(os.path.join(segmented["images"], name))
    masks, segments, boxes = results.masks[0], results.segments[0], results.boxes[0]
    assert masks.dtype == torch.bool and masks.shape == (len(boxes), *results.images[0].shape[:2]) and len(boxes)
    for mask, outline, box in zip(masks.numpy(), segments, boxes, strict=True):
        ys, xs = np.nonzero(mask)
        assert xs.min() >= box[0] - 1 and xs.max() <= box[2] and ys.min() >= box[1] - 1 and ys.max() <= box[3]
        assert mask_iou(torch.from_numpy(mask[None]), torch.from_numpy(polygon_mask(outline, mask.shape)[None])) > 0.8
    assert results.render()[0].size == results.images[0].shape[1::-1]


def test_val_save_json_writes_mask_rles_scored_by_pycocotools(segmented, tmp_path):
    import yaml

    from tools.yolo_to_coco import yolo_to_coco

    root = os.path.dirname(os.path.dirname(segmented["images"]))
    names = yaml.safe_load(open(os.path.join(root, "data.yaml")))["names"]
    (tmp_path / "instances.json").write_text(json.dumps(yolo_to_coco(root, "train", names)))
    preds = str(tmp_path / "preds.json")
    got = cli("val", "--weights", segmented["weights"], "--json", "--save-json", preds, "--coco-json",
              str(tmp_path / "instances.json"), "--project", str(tmp_path))  # fmt: skip
    rows = json.load(open(preds))
    assert rows and all(set(r["segmentation"]) == {"size", "counts"} for r in rows)
    coco = got["pycocotools"]
    assert abs(coco["map50"] - got["map50"]) < 0.002  # the boxes: as ever
    assert coco["mask_map50"] >= 0.7 and coco["mask_map50_95"] > 0.3  # at the original resolution, on the polygons


def test_rle_is_pycocotools_encoding_of_the_dense_mask():
    from pycocotools import mask as coco_mask

    rng = np.random.default_rng(0)
    for _ in range(1000):
        H, W = (int(v) for v in rng.integers(1, 30, 2))
        y, x = int(rng.integers(0, H)), int(rng.integers(0, W))
        h, w = int(rng.integers(0, H - y + 1)), int(rng.integers(0, W - x + 1))
        pixels = rng.random((h, w)) < (1.0 if rng.random() < 0.2 else rng.random())
        mask = BoxMask(x, y, pixels)
        want = coco_mask.encode(np.asfortranarray(mask.dense((H, W))[:, :, None].astype(np.uint8)))[0]
        got = rle(mask, (H, W))
        assert got == {"size": [H, W], "counts": want["counts"].decode()}, (H, W, x, y, pixels)


def test_native_masks_are_yolov5s_retina_masks():
    """One bilinear sampling at the original's pixel centres: as YOLOv5's process_mask_native (upsampled to the
    input, the padding cut, resized to the original) but for the second resampling's rounding."""
    g = torch.Generator().manual_seed(0)
    smooth = torch.randn(1, 32, 8, 8, generator=g)  # prototypes vary over a few pixels, as a model's do
    proto, coefficients = F.interpolate(smooth, (40, 40), mode="bilinear")[0], torch.randn(6, 32, generator=g)
    orig, shape = (97, 150), (160, 160)
    h = round(97 * 160 / 150)  # 103 rows: the ratio as the loader gives it, resized size over original
    ratio, pad = (h / 97, 160 / 150), ((160 - h) // 2, 0)
    boxes = np.array([[0, 0, 150, 97], [10.3, 5.7, 80.2, 60.9], [100, 50, 149.5, 96.2], [30, 30, 30, 40],
                      [-5, -5, 20, 20], [140.5, 90.5, 200, 200]])  # fmt: skip
    found = native_masks(proto, coefficients, boxes, shape, orig, ratio, pad)
    masks = (coefficients @ proto.view(32, -1)).sigmoid().view(-1, 40, 40)
    up = F.interpolate(masks[None], shape, mode="bilinear", align_corners=False)[0]
    up = F.interpolate(up[None, :, pad[0] : pad[0] + h], orig, mode="bilinear", align_corners=False)[0]
    want = crop_mask(up, torch.from_numpy(boxes).float()).gt(0.5).numpy()
    for mask, w, box in zip(found, want, boxes, strict=True):
        dense = mask.dense(orig)
        assert (dense & ~w).sum() + (w & ~dense).sum() <= 0.003 * max(w.sum(), 1), box
        assert not dense[:, : max(int(np.ceil(box[0])), 0)].any() and not dense[: max(int(np.ceil(box[1])), 0)].any()
    assert found[3].pixels.size == 0 and found[3].polygon().shape == (4, 2)  # no width: its box's corners


def test_native_masks_sample_as_grid_sample_does(monkeypatch):
    g = torch.Generator().manual_seed(3)
    proto, coefficients = torch.randn(32, 40, 40, generator=g), torch.randn(40, 32, generator=g)
    orig, shape, ratio, pad = (170, 150), (160, 160), (160 / 170, 160 / 170), (0, 9)
    rng = np.random.default_rng(0)
    xy = rng.uniform(-20, 160, (40, 2))
    boxes = np.c_[xy, xy + rng.uniform(0, 90, (40, 2))]  # some past the edges, some empty
    want = [m.pixels for m in reference_native_masks(proto, coefficients, boxes, shape, orig, ratio, pad, True)]
    for small, batch in ((64, 256), (1000, 3), (0, 256)):  # as set; all together, three at a time; one by one
        monkeypatch.setattr("yolo.segment.SMALL_BOX", small)
        monkeypatch.setattr("yolo.segment.NATIVE_BATCH", batch)
        found = native_masks(proto, coefficients, boxes, shape, orig, ratio, pad)
        for mask, w in zip(found, want, strict=True):
            assert mask.pixels.shape == w.shape
            sure = np.abs(w - 0.5) > 1e-5  # (a float's rounding may tip a pixel at 0.5: the sigmoids compared)
            assert (mask.pixels[sure] == (w[sure] > 0.5)).all()
    assert sum(w.size == 0 for w in want) >= 1 and sum(m.pixels.any() for m in found) >= 20


def test_an_outline_traces_its_masks_largest_region():
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[:60, :80]
    for _ in range(20):
        blob = np.zeros((60, 80), bool)
        for cx, cy, r in zip(rng.uniform(35, 45, 3), rng.uniform(25, 35, 3), rng.uniform(8, 15, 3), strict=True):
            blob |= (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
        speck = np.zeros_like(blob)
        speck[2:4, 2:4] = True  # a smaller region apart: not the outline
        mask = BoxMask(7, 5, blob | speck)
        outline = mask.polygon()
        assert len(outline) < blob.sum() / 4  # straight runs hold no points
        centres = np.stack(np.meshgrid(np.arange(87) + 0.5, np.arange(65) + 0.5), -1).reshape(-1, 2)
        traced = Path(outline).contains_points(centres).reshape(65, 87)  # the pixels whose centre it holds
        assert (traced == mask.dense((65, 87)) & ~BoxMask(7, 5, speck).dense((65, 87))).all()


def test_predicted_masks_are_drawn_as_overlap_maps_the_most_confident_on_top():
    proto = torch.full((1, 2, 8, 8), -10.0)
    proto[0, 0, :, :4], proto[0, 1, :4, :] = 10.0, 10.0  # prototype 0: the left half; 1: the top half
    box = [0.0, 0.0, 32.0, 32.0]
    det = torch.tensor([box + [0.9, 0, 1, 0], box + [0.5, 1, 0, 1], box + [0.1, 2, 1, 1]])  # the last: under 0.25
    got = prediction_overlap(proto, [det], (32, 32))[0]
    assert (
        (got[:4, :4] == 1).all() and (got[:4, 4:] == 2).all() and (got[4:, :4] == 1).all() and (got[4:, 4:] == 0).all()
    )
    cut = prediction_overlap(proto, [torch.tensor([[0.0, 0.0, 16.0, 32.0, 0.9, 0, 1, 0]])], (32, 32))[0]
    assert (cut[:, :4] == 1).all() and (cut[:, 4:] == 0).all()  # cut to its box


def test_masks_are_painted_under_the_boxes_the_first_on_top():
    image = np.full((20, 30, 3), 100, np.uint8)
    a, b = np.ones((10, 10), bool), np.ones((10, 10), bool)
    masks = [BoxMask(0, 0, a), BoxMask(5, 5, b)]
    out = painted(image, masks, [0, 1])

    def over(c, under=(100, 100, 100)):
        return (np.array(under) * 0.5 + np.array(class_colour(c)) * 0.5).astype(np.uint8)

    assert (out[2, 2] == over(0)).all() and (out[12, 12] == over(1)).all()
    assert (out[7, 7] == over(0, over(1))).all()  # both: the first's over the second's
    assert (out[18, 25] == 100).all() and (image == 100).all()
    big = np.full((200, 300, 3), 100, np.uint8)
    box = np.array([[0, 0, 100, 100, 0.9, 0]])
    drawn = np.asarray(annotate(Image.fromarray(big), box, ["a"], masks=[BoxMask(0, 0, np.ones((100, 100), bool))]))
    assert (drawn[70, 70] == over(0)).all() and (drawn[150, 150] == 100).all() and (drawn[0, 50] != over(0)).any()


def test_exports_carry_the_prototypes_and_run_as_the_checkpoint(segmented, tmp_path):
    onnx, script = str(tmp_path / "seg.onnx"), str(tmp_path / "seg.torchscript")
    made = cli("export", "--weights", segmented["weights"], "--dynamic", "-o", onnx, "--json")
    assert made["checked"] and made["output"] == ["batch", "anchors", 5 + 3 + 32]
    assert made["proto"] == ["batch", 32, "height/4", "width/4"]
    made = cli("export", "--weights", segmented["weights"], "--include", "torchscript", "-o", script, "--json")
    assert made["output"][2] == 40 and made["proto"] == [1, 32, 40, 40]
    own = cli("val", "--weights", segmented["weights"], "--json", "--batch", "8", "--project", str(tmp_path))
    got = cli("val", "--weights", onnx, "--data", segmented["store"], "--json", "--batch", "8", "--project",
              str(tmp_path))  # fmt: skip
    assert abs(got["mask_map50"] - own["mask_map50"]) < 0.002 and abs(got["map50"] - own["map50"]) < 0.002
    square = cli("val", "--weights", script, "--data", segmented["store"], "--json", "--batch", "8", "--project",
                 str(tmp_path))  # fmt: skip
    assert square["mask_map50"] > 0.8  # square 160 x 160 batches, as YOLOv5 runs a fixed export
    runs = {}
    for weights in (segmented["weights"], onnx, script):
        out = cli("detect", "--weights", weights, segmented["images"], "--save-txt", "--project", str(tmp_path),
                  "--json")  # fmt: skip
        assert out["segment"]
        runs[weights] = {name: open(os.path.join(out["labels"], name)).read().count("\n")
                         for name in os.listdir(out["labels"])}  # fmt: skip
    assert runs[onnx] == runs[segmented["weights"]]  # the same rectangles in: the same objects out


def test_a_segmentation_run_on_box_labels_says_its_masks_are_the_boxes_and_quad_is_refused(polygon_data, tmp_path):
    runner = CliRunner()
    common = ["train", "--data", polygon_data["boxes"], "--model", "yolov5n-seg", "--imgsz", "64", "--batch", "4",
              "--workers", "1", "--project", str(tmp_path)]  # fmt: skip
    result = runner.invoke(main, [*common, "--quad"])
    assert result.exit_code == 2 and "--quad" in result.stderr and not os.listdir(tmp_path)
    result = runner.invoke(main, [*common, "--epochs", "1", "--noplots", "--json"])
    assert result.exit_code == 0, result.output
    assert "box labels only: a segmentation model learns each box's rectangle as its mask" in result.stderr
    got = json.loads(result.stdout.strip().splitlines()[-1])
    assert got["model"] == "n-seg" and {"mask_map50", "mask_map50_95"} <= set(got)


def test_mask_ratio_and_overlap_set_the_target_masks_and_val_follows_the_run(segmented, polygon_data, tmp_path):
    common = ["train", "--data", polygon_data["polygons"], "--model", "n-seg", "--imgsz", "64", "--batch", "4",
              "--workers", "1", "--project", str(tmp_path), "--noplots"]  # fmt: skip
    result = CliRunner().invoke(main, [*common, "--mask-ratio", "3"])
    assert result.exit_code == 2 and "--mask-ratio 3" in result.stderr and not os.listdir(tmp_path)
    got = cli(*common, "--mask-ratio", "1", "--no-overlap", "--epochs", "1", "--json")
    config = read_weights(got["weights"]).config
    assert config["mask_ratio"] == 1 and config["no_overlap"] and "mask_map50" in got
    checkpoint = torch.load(segmented["weights"], weights_only=False)  # the learned model, as if run at ratio 1
    checkpoint["config"] |= {"mask_ratio": 1, "no_overlap": True}
    torch.save(checkpoint, tmp_path / "full.pt")
    val = lambda *args: cli("val", "--json", "--batch", "8", "--project", str(tmp_path), *args)  # noqa: E731
    full, quarter = val("--weights", str(tmp_path / "full.pt")), val("--weights", segmented["weights"])
    store = open_store(segmented["store"], "val")
    model = read_weights(segmented["weights"]).model()
    own = validate(model, ValLoader(store, 160, 8, workers=1, mask_ratio=1, overlap=False), store)
    assert abs(full["mask_map50_95"] - own["mask_map50_95"]) < 1e-6 and abs(full["map50"] - quarter["map50"]) < 1e-6
    assert abs(full["mask_map50_95"] - quarter["mask_map50_95"]) > 1e-3  # whole full-size targets score otherwise
    # the run's choices, or YOLOv5's segment/val.py's own (--mask-ratio 1 --no-overlap) and back
    assert (
        val("--weights", segmented["weights"], "--mask-ratio", "1", "--no-overlap")["mask_map50_95"]
        == full["mask_map50_95"]
    )
    assert (
        val("--weights", str(tmp_path / "full.pt"), "--mask-ratio", "4", "--overlap")["mask_map50_95"]
        == quarter["mask_map50_95"]
    )
    result = CliRunner().invoke(main, ["val", "--weights", segmented["weights"], "--mask-ratio", "3"])
    assert result.exit_code == 2 and "--mask-ratio 3" in result.stderr
