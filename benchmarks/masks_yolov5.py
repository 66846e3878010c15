"""Segmentation against YOLOv5's own code (PyPI `yolov5`, `pip install 'fastload[compare]'`):

1. masks: random mosaics of a polygon store's records under random affines with rotation, shear and perspective
   (as benchmarks/polygons_yolov5.py), labelled by YOLOv5's segmentation loader path (resample_segments, the warp,
   segment2box, box_candidates(area_thr=0.01), polygons2masks_overlap at ratio 4) and by fastload's
   (`_canvas_boxes` with outlines: each polygon's vertices warped, `overlap_mask`): the same rows, and each
   object's mask pixels compared; also each object's whole mask (--no-overlap: YOLOv5's polygons2masks against
   fastload's `instance_masks`);
2. loss: fastload's SegmentLoss and YOLOv5's segment ComputeLoss, with overlap masks and without, on the same model
   outputs, for batches of fastload's training loader (targets and masks);
3. cost: planning a batch of 64 at 640 without masks, with overlap masks and with whole masks (drawn as the source
   workers draw them: bit planes), and the masks' bytes against the batch's JPEG bytes (whole masks: also what
   one byte per pixel and object, YOLOv5's layout, would take).

    python benchmarks/masks_yolov5.py --images 200 --canvases 300
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import warnings

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from fastload.demo_data import DemoConfig, generate  # noqa: E402
from fastload.loader.augment import Hyp, _canvas_boxes, plan_batch  # noqa: E402
from fastload.loader.masks import instance_masks, overlap_mask  # noqa: E402
from fastload.loader.polygons import mosaic_polygons  # noqa: E402
from fastload.loader.sources import sample_mask  # noqa: E402
from fastload.loader.train_loader import TrainLoader  # noqa: E402
from fastload.pack import PackOptions, pack  # noqa: E402
from fastload.store import open_store  # noqa: E402
from yolo.loss import SegmentLoss  # noqa: E402
from yolo.model import YOLOv5  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from polygons_yolov5 import random_mosaic, yolov5_rows  # noqa: E402

RATIO = 4


def yolov5_labels(tiles, polygons, M, s, scale, perspective):
    """One mosaic's rows, overlap mask and whole masks by YOLOv5's segmentation loader functions: its label path
    (polygons_yolov5.yolov5_rows: load_mosaic's placement and clip, random_perspective's), then
    polygons2masks_overlap, and polygons2masks (--no-overlap)."""
    from yolov5.utils.segment.dataloaders import polygons2masks, polygons2masks_overlap

    targets, _, kept = yolov5_rows(tiles, polygons, M, s, scale, perspective)
    if not kept:
        empty = np.zeros((s // RATIO, s // RATIO), np.uint8)
        return targets, empty, np.zeros(0, np.int64), empty[None][:0]
    mask, order = polygons2masks_overlap((s, s), kept, downsample_ratio=RATIO)
    return targets, mask, order, polygons2masks((s, s), kept, color=1, downsample_ratio=RATIO)


def per_object(mask: np.ndarray, order: np.ndarray) -> list[np.ndarray]:
    """Each object's pixels in an overlap mask (object `order[k]` holds value k + 1), in the objects' own order."""
    where = np.empty(len(order), np.int64)
    where[order] = np.arange(len(order))
    return [mask == where[j] + 1 for j in range(len(order))]


def compare_masks(store, args, rng) -> dict:
    keys = ("canvases", "objects", "rows_differ", "pixels", "pixels_differing", "whole_pixels", "whole_differing")
    s, out = args.imgsz, dict.fromkeys(keys, 0)
    out["max_abs_difference_normalised"], ious, whole_ious = 0.0, [], []
    for c in range(args.canvases):
        perspective = c % 2 == 1
        tiles, polygons, flat, M, scale = random_mosaic(store, rng, s, perspective)
        cid = np.zeros(sum(len(t[0]) for t in tiles), int)
        rows, _, _, shapes = _canvas_boxes(
            tiles, cid, np.array([[2.0 * s] * 2]), M, scale, (s, s), mosaic_polygons(flat), outlines=True
        )
        theirs, their_mask, their_order, their_whole = yolov5_labels(tiles, polygons, M[0], s, scale[0], perspective)
        out["canvases"] += 1
        if rows.shape != theirs.shape:
            out["rows_differ"] += 1
            continue
        worst = float(np.abs(rows - theirs).max(initial=0))
        out["max_abs_difference_normalised"] = max(out["max_abs_difference_normalised"], worst)
        mask, order = overlap_mask(shapes, (s, s), RATIO)
        for a, b in zip(per_object(mask, order), per_object(their_mask, their_order), strict=True):
            out["objects"] += 1
            out["pixels"] += int(b.sum())
            out["pixels_differing"] += int((a != b).sum())
            if b.sum():
                ious.append((a & b).sum() / (a | b).sum())
        for a, b in zip(instance_masks(shapes, (s, s), RATIO) > 0, their_whole > 0, strict=True):
            out["whole_pixels"] += int(b.sum())
            out["whole_differing"] += int((a != b).sum())
            if b.sum():
                whole_ious.append((a & b).sum() / (a | b).sum())
    for key, found in (("object_iou", ious), ("whole_object_iou", whole_ious)):
        out[key] = {"median": float(np.median(found)), "p5": float(np.percentile(found, 5)), "min": float(min(found))}
    return out


def compare_loss(store_path: str, args) -> dict:
    """SegmentLoss against YOLOv5's segment ComputeLoss on random outputs for real loader batches, with overlap
    masks and without (each target's whole mask)."""
    import yolov5
    from yolov5.models.yolo import SegmentationModel
    from yolov5.utils.segment.loss import ComputeLoss

    nc, imgsz = 3, 256
    theirs = SegmentationModel(os.path.join(os.path.dirname(yolov5.__file__), "models/segment/yolov5n-seg.yaml"), nc=nc)
    hyp = {"box": 0.05, "cls": 0.5, "cls_pw": 1.0, "obj": 1.0, "obj_pw": 1.0, "anchor_t": 4.0, "fl_gamma": 0.0}
    hyp["cls"] *= nc / 80  # train.py's scaling (3 levels)
    hyp["obj"] *= (imgsz / 640) ** 2
    theirs.hyp = hyp
    detect = YOLOv5("n-seg", nc).detect
    out = {}
    for overlap in (True, False):
        ours, yolov5_loss = SegmentLoss(detect, imgsz, overlap=overlap), ComputeLoss(theirs, overlap=overlap)
        loader = TrainLoader(open_store(store_path, "train"), imgsz, 16, hyp=Hyp(degrees=10, mixup=0.3), seed=1,
                             workers=1, mask_ratio=RATIO, overlap=overlap)  # fmt: skip
        worst, batches, targets = 0.0, 0, 0
        gen = torch.Generator().manual_seed(0)
        for b in loader:
            n = len(b.images)
            maps = [torch.randn(n, 3, imgsz // st, imgsz // st, 5 + nc + 32, generator=gen) for st in (8, 16, 32)]
            proto = torch.randn(n, 32, imgsz // 4, imgsz // 4, generator=gen)
            a = ours((maps, proto), b.targets, masks=b.masks)[1]
            t = yolov5_loss((maps, proto), b.targets, b.masks.float())[1]
            worst = max(worst, float(((a - t).abs() / t.abs().clamp(min=1e-12)).max()))
            batches, targets = batches + 1, targets + len(b.targets)
            if batches == args.loss_batches:
                break
        out["overlap" if overlap else "whole"] = {"batches": batches, "targets": targets,
                                                  "max_relative_difference": worst}  # fmt: skip
    return out | {"terms": "box, seg, obj, cls"}


def cost(store, args) -> dict:
    s, records = args.imgsz, np.resize(np.random.default_rng(0).permutation(len(store)), args.batch)
    times = {"plan": [], "plan_masks": [], "plan_whole_masks": []}
    mask_bytes = whole_bytes = dense_bytes = jpeg_bytes = 0
    hyp = Hyp(degrees=10)
    for k in range(args.repeats):
        for kind in times:
            t = time.perf_counter()
            outlines = store.outlines if kind != "plan" else None
            plans = plan_batch(np.random.default_rng(k), records, store.sizes, store.labels, s, hyp,
                               polygons=store.polygons, outlines=outlines)  # fmt: skip
            if kind == "plan_masks":
                found = [sample_mask(p, (s, s), RATIO)[0] for p in plans]
                mask_bytes += sum(m.nbytes for m in found)
                jpeg_bytes += sum(len(store.image(int(r))) for r in records)
            elif kind == "plan_whole_masks":
                found = [sample_mask(p, (s, s), RATIO, overlap=False)[0] for p in plans]
                whole_bytes += sum(m.nbytes for m in found)
                dense_bytes += sum(len(p.outlines) for p in plans) * (s // RATIO) ** 2
            times[kind].append(time.perf_counter() - t)
    ms = {k: round(1000 * float(np.median(v)), 2) for k, v in times.items()}
    return {"batch": args.batch, "imgsz": s, "ms": ms, "masks_over_plan": round(ms["plan_masks"] / ms["plan"], 2),
            "whole_masks_over_plan": round(ms["plan_whole_masks"] / ms["plan"], 2),
            "mask_bytes_over_jpeg_bytes": round(mask_bytes / jpeg_bytes, 4),
            "whole_mask_bytes_over_jpeg_bytes": round(whole_bytes / jpeg_bytes, 4),
            "whole_masks_one_byte_a_pixel_over_jpeg_bytes": round(dense_bytes / jpeg_bytes, 4),
            "plan": "scratch-low, degrees 10, mosaic on; median of repeats, same records and draws"}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=200, help="demo images with polygon labels (about 640x480)")
    ap.add_argument("--canvases", type=int, default=300, help="random mosaics compared with YOLOv5's")
    ap.add_argument("--imgsz", type=int, default=640)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=9, help="timed plans of each kind (medians)")
    ap.add_argument("--loss-batches", type=int, default=10)
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    with tempfile.TemporaryDirectory() as tmp:
        generate(f"{tmp}/data", DemoConfig(images=args.images, seed=0, polygons=True), workers=os.cpu_count() or 1)
        pack(f"{tmp}/data", f"{tmp}/p.lmdb", PackOptions(), quiet=True)
        store = open_store(f"{tmp}/p.lmdb")
        result = {"images": args.images, "ratio": RATIO, "masks": compare_masks(store, args, np.random.default_rng(0))}
        result["loss"] = compare_loss(f"{tmp}/p.lmdb", args)
        result["cost"] = cost(store, args)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
