"""Polygon labels against YOLOv5's own code (PyPI `yolov5`, `pip install 'fastload[compare]'`): random mosaics of a
polygon store's records (random tile sizes and places, many polygons cut by the canvas or the output) under random
affines with rotation, shear and perspective, boxed by fastload (`_canvas_boxes`: each edge's run of samples inside
the output) and by YOLOv5's load_mosaic label path (xywhn2xyxy, xyn2xy, clip, resample_segments, the warp,
segment2box, box_candidates(area_thr=0.01), xyxy2xywhn). On every fifth mosaic also its copy_paste, YOLOv5's
function made to draw what fastload drew: the boxes again, and the pixels that show the mirror image (cv2's
drawContours there, PIL's polygon fill here). Then the time to plan a batch, boxes only against polygons (and with
copy_paste), on the same records and draws. Prints one JSON object.

    python benchmarks/polygons_yolov5.py --images 200 --canvases 500
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from fastload.demo_data import DemoConfig, generate  # noqa: E402
from fastload.loader.augment import Hyp, _canvas_boxes, perspective_matrices, plan_batch  # noqa: E402
from fastload.loader.copy_paste import paste_mask  # noqa: E402
from fastload.loader.polygons import mosaic_polygons  # noqa: E402
from fastload.pack import PackOptions, pack  # noqa: E402
from fastload.store import open_store  # noqa: E402


class Drawn:
    """Stands for the `random` module in YOLOv5's copy_paste: its random.sample returns the order fastload drew."""

    def __init__(self, order) -> None:
        self.order = order

    def sample(self, population, k):
        assert len(self.order) == k
        return list(self.order)


def yolov5_copy_paste(labels4, segments4, s, p, order):
    """YOLOv5's copy_paste on a 2s mosaic whose pixels encode their column, with its draw made `order`: (labels,
    segments, where the canvas now shows its mirror image)."""
    from yolov5.utils import augmentations

    column = np.arange(2 * s)
    im = np.zeros((2 * s, 2 * s, 3), np.uint8)
    im[:, :, 0], im[:, :, 1] = column // 256, column % 256
    before, drawn = im.copy(), augmentations.random
    augmentations.random = Drawn(order)
    try:
        im, labels4, segments4 = augmentations.copy_paste(im, labels4, segments4, p=p)
    finally:
        augmentations.random = drawn
    return labels4, segments4, (im != before).any(2)


def yolov5_rows(tiles, polygons, M, s, scale, perspective, paste=None):
    """One mosaic's labels by YOLOv5's functions, as load_mosaic and random_perspective call them; `paste`:
    (p, order), its copy_paste first. Returns (rows, the copy_paste mask or None, the kept rows' warped
    segments: its segmentation loader's, 1,000 points each)."""
    from yolov5.utils.augmentations import box_candidates
    from yolov5.utils.general import resample_segments, segment2box, xyn2xy, xywhn2xyxy, xyxy2xywhn

    labels4, segments4 = [], []
    for (rows, w, h, padw, padh), polys in zip(tiles, polygons, strict=True):
        labels = rows.astype(np.float32).copy()
        labels[:, 1:] = xywhn2xyxy(labels[:, 1:], w, h, padw, padh)
        labels4.append(labels)
        segments4 += [xyn2xy(p, w, h, padw, padh) for p in polys]
    labels4 = np.concatenate(labels4)
    for x in (labels4[:, 1:], *segments4):
        np.clip(x, 0, 2 * s, out=x)
    mask = None
    if paste is not None:
        labels4, segments4, mask = yolov5_copy_paste(labels4, segments4, s, *paste)
    new, warped = np.zeros((len(labels4), 4)), []
    for i, segment in enumerate(resample_segments(segments4)):
        xy = np.ones((len(segment), 3))
        xy[:, :2] = segment
        xy = xy @ M.T
        xy = xy[:, :2] / xy[:, 2:3] if perspective else xy[:, :2]
        new[i] = segment2box(xy, s, s)
        warped.append(xy)
    keep = box_candidates(box1=labels4[:, 1:5].T * scale, box2=new.T, area_thr=0.01)
    targets = labels4[keep]
    targets[:, 1:5] = xyxy2xywhn(new[keep], w=s, h=s, clip=True, eps=1e-3)
    return targets, mask, [xy for xy, k in zip(warped, keep, strict=True) if k]


def random_mosaic(store, rng: np.random.Generator, s: int, perspective: bool):
    """Four random records of a polygon store at random sizes and places on a 2s canvas, and a random affine (with
    rotation to 45 degrees and shear; `perspective`: also up to 0.001): (tiles as _canvas_boxes takes them, their
    polygons per tile, (row count, polygons) per tile for mosaic_polygons, M [1, 3, 3], scale [1])."""
    tiles, polygons, flat = [], [], []
    for r in rng.choice(len(store), 4):
        rows, (points, offsets) = store.labels(int(r)), store.polygons(int(r))
        w, h = (int(v) for v in rng.integers(s // 4, s + 1, 2))
        tiles.append((rows, w, h, int(rng.integers(-s // 2, 3 * s // 2)), int(rng.integers(-s // 2, 3 * s // 2))))
        polygons.append([points[a:b] for a, b in zip(offsets[:-1], offsets[1:], strict=True)])
        flat.append((len(rows), (points, offsets)))
    p = 0.001 if perspective else 0.0
    u = rng.uniform((-p, -p, -45, 0.5, -10, -10, 0.4, 0.4), (p, p, 45, 1.5, 10, 10, 0.6, 0.6), (1, 8))
    M, scale = perspective_matrices(u, np.array([2 * s]), s)
    return tiles, polygons, flat, M, scale


def fastload_mask(pasted, s):
    """fastload's copy_paste mask (paste_mask) over the whole 2s canvas."""
    mask = np.zeros((2 * s, 2 * s), bool)
    if pasted:
        (top, left), m = paste_mask(pasted, 2 * s, (0, 0, 2 * s, 2 * s))
        mask[top : top + m.shape[0], left : left + m.shape[1]] = m > 0
    return mask


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=200, help="demo images with polygon labels (about 640x480)")
    ap.add_argument("--canvases", type=int, default=500, help="random mosaics compared with YOLOv5's")
    ap.add_argument("--imgsz", type=int, default=640)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=15, help="timed plans of each kind (medians)")
    ap.add_argument("--copy-paste", type=float, default=0.5, help="copy_paste's p on every fifth mosaic (0: off)")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        generate(f"{tmp}/data", DemoConfig(images=args.images, seed=0, polygons=True), workers=os.cpu_count() or 1)
        pack(f"{tmp}/data", f"{tmp}/p.lmdb", PackOptions(), quiet=True)
        store = open_store(f"{tmp}/p.lmdb")
        s, compared, worst, kept_differs, vertices = args.imgsz, 0, 0.0, 0, []
        paste = dict.fromkeys(("canvases", "pasted", "boxes_compared", "canvases_keeping_other_boxes"), 0)
        paste |= {"max_abs_difference_normalised": 0.0, "mask_pixels": 0, "mask_pixels_differing": 0}
        for c in range(args.canvases):
            perspective = c % 2 == 1
            tiles, polygons, flat, M, scale = random_mosaic(store, rng, s, perspective)
            vertices += [len(p) for tile in polygons for p in tile]
            cid = np.zeros(sum(len(t[0]) for t in tiles), int)
            canvas = np.array([[2.0 * s] * 2])
            ours = _canvas_boxes(tiles, cid, canvas, M, scale, (s, s), mosaic_polygons(flat))[0]
            theirs = yolov5_rows(tiles, polygons, M[0], s, scale[0], perspective)[0]
            if ours.shape != theirs.shape:
                kept_differs += 1
            else:
                compared += len(ours)
                worst = max(worst, float(np.abs(ours - theirs).max(initial=0)))
            if c % 5 or not args.copy_paste:  # copy_paste on every fifth canvas (its masks take the time)
                continue
            draw, n = np.random.default_rng(c), len(cid)
            order = np.random.default_rng(c).permutation(n)[: round(args.copy_paste * n)].tolist()
            ours, _, pasted = _canvas_boxes(
                tiles, cid, canvas, M, scale, (s, s), mosaic_polygons(flat), (draw, args.copy_paste)
            )
            theirs, their_mask, _ = yolov5_rows(
                tiles, polygons, M[0], s, scale[0], perspective, (args.copy_paste, order)
            )
            mask = fastload_mask(pasted.get(0, []), s)
            paste["canvases"] += 1
            paste["pasted"] += len(pasted.get(0, []))
            paste["mask_pixels"] += int(their_mask.sum())
            paste["mask_pixels_differing"] += int((mask != their_mask).sum())
            if ours.shape != theirs.shape:
                paste["canvases_keeping_other_boxes"] += 1
                continue
            paste["boxes_compared"] += len(ours)
            paste["max_abs_difference_normalised"] = max(
                paste["max_abs_difference_normalised"], float(np.abs(ours - theirs).max(initial=0))
            )
        records = np.resize(rng.permutation(len(store)), args.batch)
        times = {"boxes": [], "polygons": [], "polygons_copy_paste": []}
        mask_bytes, jpeg_bytes = [], []
        kinds = (("boxes", None, 0.0), ("polygons", store.polygons, 0.0), ("polygons_copy_paste", store.polygons, 0.1))
        for k in range(args.repeats):
            for kind, polys, p in kinds:
                hyp = Hyp(degrees=10, copy_paste=p)
                t = time.perf_counter()
                plans = plan_batch(np.random.default_rng(k), records, store.sizes, store.labels, s, hyp, polygons=polys)
                times[kind].append(time.perf_counter() - t)
                if p:  # what the copy_paste masks add to the bytes a worker hands over, packed as the source does
                    canvases = [c for plan in plans for c in (plan.canvas, plan.mix) if c is not None and c.paste]
                    mask_bytes.append(sum(np.packbits(c.paste.mask, axis=1).size for c in canvases))
                    jpeg_bytes.append(sum(len(store.image(int(r))) for r in records))
    ms = {k: round(1000 * float(np.median(v)), 2) for k, v in times.items()}
    print(json.dumps({
        "images": args.images, "imgsz": s, "canvases": args.canvases, "boxes_compared": compared,
        "canvases_keeping_other_boxes": kept_differs, "max_abs_difference_normalised": worst,
        "vertices_per_polygon": {"median": float(np.median(vertices)), "max": int(np.max(vertices))},
        "plan_batch_ms": ms, "batch": args.batch, "polygons_over_boxes": round(ms["polygons"] / ms["boxes"], 2),
        "plan": "hyp.scratch-low with degrees 10 (mosaic on; copy_paste 0.1 for polygons_copy_paste), median of "
                "repeats, same records and draws",
        "copy_paste": {"p": args.copy_paste, **paste},
        "copy_paste_mask_bytes_over_jpeg_bytes": round(sum(mask_bytes) / sum(jpeg_bytes), 4),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
