"""YOLOv5's training augmentation as numbers: mosaic placement, random affine, box transform and filtering,
HSV gains, flips, multi-scale size, for a whole batch at once (a worker plans a batch of 64 in a few ms).
Deterministic per (seed, epoch, batch), so any process computes the same plan; the worker that plans a batch sends
its pixel arguments and its boxes through the pipeline.

Semantics follow ultralytics/yolov5 `load_mosaic`, `letterbox`, `random_perspective` and `box_candidates`.
A sample is a canvas split into four quadrants at (xc, yc), each showing one resized image (grey where the image
does not reach); a letterboxed sample is a canvas of one quadrant. The warp to the output (the random affine and
the multi-scale factor in one matrix) reads only part of the canvas (a third of a 2s mosaic on average), so the
pipeline assembles only that part, as 2 x 2 cells that are each one window of one image, and warps it once; for
a zoom and shift (YOLOv5's default hyp) it resizes it, which samples the same points at a fraction of the cost.

Mosaic and mixup partners are other images of the same batch (`slot`s), so the pipeline decodes and resizes each
image once per batch instead of four times; the batch is a uniform draw of the epoch permutation, so partners
are still uniform over the dataset, and every image is in four mosaics per epoch on average, as in YOLOv5.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fastload.loader.copy_paste import Paste, paste_mask, paste_rows
from fastload.loader.geometry import letterbox, load_size
from fastload.loader.masks import warped_outlines
from fastload.loader.polygons import mosaic_polygons, placed, polygon_boxes

EMPTY_START = (-4096, -4096)  # a window that misses its image: all grey padding
LAYERS = 4  # the cells of a canvas: top-left, top-right, bottom-left, bottom-right


@dataclass(frozen=True)
class Hyp:
    """Augmentation hyperparameters, defaults from YOLOv5's hyp.scratch-low.yaml."""

    hsv_h: float = 0.015  # hue gain (fraction)
    hsv_s: float = 0.7  # saturation gain (fraction)
    hsv_v: float = 0.4  # value gain (fraction)
    degrees: float = 0.0  # rotation (+/- deg)
    translate: float = 0.1  # translation (+/- fraction)
    scale: float = 0.5  # scale gain (+/- gain)
    shear: float = 0.0  # shear (+/- deg)
    perspective: float = 0.0  # perspective (+/- fraction), range 0-0.001
    flipud: float = 0.0  # vertical flip probability
    fliplr: float = 0.5  # horizontal flip probability
    mosaic: float = 1.0  # mosaic probability
    mixup: float = 0.0  # mixup probability (of a mosaic sample with a second mosaic)
    copy_paste: float = 0.0  # share of a mosaic's polygon labels tried for pasting mirrored (needs polygons)

    def check(self) -> None:
        for name in self.__dataclass_fields__:
            if getattr(self, name) < 0:
                raise ValueError(f"hyp {name} must be >= 0, not {getattr(self, name)}")
        for name in ("flipud", "fliplr", "mosaic", "mixup", "copy_paste"):
            if getattr(self, name) > 1:
                raise ValueError(f"hyp {name} is a probability, not {getattr(self, name)}")
        if self.scale >= 1:  # the zoom is drawn in [1 - scale, 1 + scale]
            raise ValueError(f"hyp scale must be < 1 (a zoom of 1 - scale <= 0 has no image), not {self.scale}")


@dataclass
class Layer:
    """One image of a canvas: its record, its position in the batch and where its pixel (0, 0) lands."""

    index: int  # record index
    slot: int  # position in the batch of the image (decoded and resized once per batch)
    load_hw: tuple[int, int]
    offset: tuple[int, int]  # (y, x) canvas position of the image's pixel (0, 0)


@dataclass
class Window:
    """One cell of the part of a canvas the pipeline assembles: a window of one resized image of the batch."""

    slot: int  # position in the batch of the image the window is cut from (-1: none, all grey)
    start: tuple[int, int]  # (y, x) of the window in the resized image; outside the image: grey 114
    shape: tuple[int, int]  # (h, w)


@dataclass
class Canvas:
    """One warped canvas (the 2s mosaic or the letterboxed image). The pipeline assembles only the part the warp
    reads: 2 x 2 cells of the canvas (top-left, top-right, bottom-left, bottom-right) inside a 1-pixel grey ring
    (4 more windows, which miss every image), pasted at `places` on a `size` assembly, then warped with `matrix`;
    when the warp is a zoom and a shift (no rotation, shear or perspective: YOLOv5's defaults) it resizes `roi`
    of the assembly instead, which samples the same points (beyond the ring the resize repeats the grey ring,
    as the warp's border fills grey)."""

    layers: list[Layer]  # its images: four for a mosaic, one letterboxed
    windows: list[Window]  # the four cells, then the ring's top, bottom, left and right
    places: list[tuple[int, int]]  # (y, x) of each window in the assembly
    size: tuple[int, int]  # (h, w) of the assembly
    matrix: np.ndarray  # 3 x 3: assembly pixel coordinates -> output pixel coordinates
    roi: tuple[float, float, float, float]  # (y0, x0, y1, x1): the output's corners in assembly coordinates
    boxes: np.ndarray  # float32 [k, 5] (cls, cx, cy, w, h) normalised to the output
    region: tuple[int, int, int, int] = (1, 1, 3, 3)  # (y0, x0, y1, x1): the canvas inside the ring
    paste: Paste | None = None  # YOLOv5's copy_paste, when it pasted something the warp reads


def grey_canvas() -> Canvas:
    """A grey canvas of 2 x 2 cells in the ring: the mixup canvas of a sample without mixup (its weight is 0)."""
    windows = [Window(-1, EMPTY_START, shape) for shape in [(1, 1)] * LAYERS + [(1, 4), (1, 4), (2, 1), (2, 1)]]
    places = [(1, 1), (1, 2), (2, 1), (2, 2), (0, 0), (3, 0), (1, 0), (1, 3)]  # 2 x 2 cells in a ring, as frames()
    return Canvas([], windows, places, (4, 4), np.eye(3), (1.0, 1.0, 3.0, 3.0), np.zeros((0, 5), np.float32))


def canvas_paste(pasted: list[np.ndarray], width: int, canvas: Canvas, centre, quadrant: list[Layer]) -> Paste | None:
    """The pixels of YOLOv5's copy_paste of `pasted` polygons (canvas pixels) on a canvas of `width` whose
    assembly covers `canvas.region`: the mask there (copy_paste.paste_mask) and the mirrored region's cells."""
    found = paste_mask(pasted, width, canvas.region)
    if found is None:
        return None
    (top, left), mask = found
    h, w = mask.shape
    windows, places = cells((top, width - left - w, top + h, width - left), centre, quadrant)
    y0, x0 = canvas.region[:2]
    return Paste((top - y0 + 1, left - x0 + 1), mask, windows, places)


@dataclass
class SamplePlan:
    canvas: Canvas
    boxes: np.ndarray  # float32 [k, 5] of the sample: the canvas's, plus the mixup canvas's
    mix: Canvas | None = None  # mixup: a second mosaic, blended with weight 1 - mix_ratio
    mix_ratio: float = 1.0
    hsv: np.ndarray = field(default_factory=lambda: np.ones(3))  # hue, saturation, value gains
    flip_lr: bool = False
    flip_ud: bool = False
    outlines: list[np.ndarray] | None = None  # masks: each row's polygon in output pixels, before the flips

    @property
    def layers(self) -> list[Layer]:
        return self.canvas.layers + (self.mix.layers if self.mix else [])


def hw_rows(sizes, m: int) -> np.ndarray:
    """Canvas sizes as float [m, 2] rows of (h, w): from one number per square canvas, or (h, w) rows."""
    sizes = np.asarray(sizes, np.float64)
    return np.stack([sizes, sizes], 1) if sizes.ndim == 1 else np.broadcast_to(sizes, (m, 2))


def perspective_matrices(u: np.ndarray, in_size, out) -> tuple[np.ndarray, np.ndarray]:
    """YOLOv5's random_perspective matrices M = T @ S @ R @ P @ C for m canvases at once, from the uniform draws
    u [m, 8] (perspective x, y, degrees, scale, shear x, y, translate x, y), canvases of in_size ([m] square, or
    [m, 2] (h, w)) and an output of `out` pixels (square, or (h, w)); returns (M [m, 3, 3], scale [m])."""
    m = len(u)
    in_hw = hw_rows(in_size, m)
    out_h, out_w = (out, out) if np.isscalar(out) else out
    eye = np.broadcast_to(np.eye(3), (m, 3, 3))
    C, P, R, S, T = (eye.copy() for _ in range(5))
    C[:, 0, 2], C[:, 1, 2] = -in_hw[:, 1] / 2, -in_hw[:, 0] / 2
    P[:, 2, 0], P[:, 2, 1] = u[:, 0], u[:, 1]
    a, scale = np.radians(u[:, 2]), u[:, 3]
    R[:, 0, 0] = R[:, 1, 1] = scale * np.cos(a)
    R[:, 0, 1], R[:, 1, 0] = scale * np.sin(a), -scale * np.sin(a)
    S[:, 0, 1], S[:, 1, 0] = np.tan(np.radians(u[:, 4])), np.tan(np.radians(u[:, 5]))
    T[:, 0, 2], T[:, 1, 2] = u[:, 6] * out_w, u[:, 7] * out_h
    return T @ S @ R @ P @ C, scale


def box_candidates(box1: np.ndarray, box2: np.ndarray, wh_thr=2, ar_thr=100, area_thr=0.1, eps=1e-16):
    """YOLOv5's rule: keep boxes wider and taller than 2 px, aspect < 100, keeping > 10% of their area.
    box1 (before) and box2 (after) are [n, 4] xyxy."""
    w1, h1 = box1[:, 2] - box1[:, 0], box1[:, 3] - box1[:, 1]
    w2, h2 = box2[:, 2] - box2[:, 0], box2[:, 3] - box2[:, 1]
    ar = np.maximum(w2 / (h2 + eps), h2 / (w2 + eps))
    return (w2 > wh_thr) & (h2 > wh_thr) & (w2 * h2 / (w1 * h1 + eps) > area_thr) & (ar < ar_thr)


def _xywhn_to_xyxy(tiles: list[tuple[np.ndarray, int, int, int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """(classes [n, 1], xyxy [n, 4]) of the tiles' normalised rows placed at (w, h, padw, padh) each."""
    rows = np.concatenate([r for r, *_ in tiles])
    geometry = np.array([g for _, *g in tiles], np.float64).repeat([len(r) for r, *_ in tiles], axis=0)
    w, h, padw, padh = geometry.T
    cx, cy, bw, bh = rows[:, 1] * w + padw, rows[:, 2] * h + padh, rows[:, 3] * w, rows[:, 4] * h
    xyxy = np.empty((len(rows), 4))
    xyxy[:, 0], xyxy[:, 1], xyxy[:, 2], xyxy[:, 3] = cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2
    return rows[:, :1], xyxy


def mosaic_tiles(xc: int, yc: int, loads: list[tuple[int, int]], s: int):
    """YOLOv5's load_mosaic placement on the 2s x 2s canvas around the centre (xc, yc) of images of load sizes
    (h, w): per tile (load (h, w), canvas box x1a, y1a, x2a, y2a, image box x1b, y1b, x2b, y2b)."""
    tiles = []
    for i, (h, w) in enumerate(loads):
        if i == 0:  # top left
            a = (max(xc - w, 0), max(yc - h, 0), xc, yc)
            b = (w - (a[2] - a[0]), h - (a[3] - a[1]), w, h)
        elif i == 1:  # top right
            a = (xc, max(yc - h, 0), min(xc + w, s * 2), yc)
            b = (0, h - (a[3] - a[1]), min(w, a[2] - a[0]), h)
        elif i == 2:  # bottom left
            a = (max(xc - w, 0), yc, xc, min(s * 2, yc + h))
            b = (w - (a[2] - a[0]), 0, w, min(a[3] - a[1], h))
        else:  # bottom right
            a = (xc, yc, min(xc + w, s * 2), min(s * 2, yc + h))
            b = (0, 0, min(w, a[2] - a[0]), min(a[3] - a[1], h))
        tiles.append(((h, w), a, b))
    return tiles


def frames(M: np.ndarray, sizes, centres: np.ndarray, quadrants: list[list[Layer]], out) -> list:
    """What the pipeline assembles of each of m canvases (sizes [m] square or [m, 2] (h, w), quadrants split at
    centres [m] (yc, xc), `quadrants[c][q]` the image of canvas c's quadrant q) for its warp M [m, 3, 3] to an
    output of `out` pixels (square, or (h, w)): bilinear sampling
    reads the pixels around the inverse images of the output pixels, so the bounding box of the output's corners
    mapped back, one pixel wider, clipped to the canvas (so memory stays bounded whatever the zoom), in a 1-pixel
    grey ring. The numbers for all canvases at once, then the windows per canvas from plain ints.
    Returns per canvas the Canvas fields (windows, places, size, matrix, roi)."""
    out_h, out_w = (out, out) if np.isscalar(out) else out
    corners = np.linalg.inv(M) @ np.array([[0, out_w, 0, out_w], [0, 0, out_h, out_h], [1, 1, 1, 1]], np.float64)
    horizon = (corners[:, 2] <= 0).any(1)  # a perspective so strong that the output sees the horizon: read all
    top = hw_rows(sizes, len(M))[:, ::-1]  # (w, h): the far corner, as (x, y)
    whole = np.array([[0, 1, 0, 1], [0, 0, 1, 1]], np.float64) * top[:, :, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        xy = np.where(horizon[:, None, None], whole, corners[:, :2] / corners[:, 2:3])  # [m, (x, y), 4]
    start = (np.floor(xy.min(2)) - 1).clip(0, top - 2)  # (x, y), at least 2 x 2 inside the canvas
    end = np.maximum((np.ceil(xy.max(2)) + 2).clip(0, top), start + 2)
    origin = start - 1  # canvas coordinates of the assembly's pixel (0, 0)
    shift = np.broadcast_to(np.eye(3), M.shape).copy()
    shift[:, :2, 2] = origin
    matrix = M @ shift
    roi = np.concatenate([xy[:, ::-1, 0] - origin[:, ::-1], xy[:, ::-1, 3] - origin[:, ::-1]], 1)  # y0 x0 y1 x1
    out_fields = []
    for c, ((x0, y0), (x1, y1), centre) in enumerate(
        zip(start.astype(int).tolist(), end.astype(int).tolist(), centres.tolist(), strict=True)
    ):
        windows, places = cells((y0, x0, y1, x1), centre, quadrants[c])
        places = [(y + 1, x + 1) for y, x in places]
        h, w = y1 - y0, x1 - x0
        windows += [Window(-1, EMPTY_START, shape) for shape in ((1, w + 2), (1, w + 2), (h, 1), (h, 1))]
        places += [(0, 0), (h + 1, 0), (1, 0), (1, w + 1)]
        out_fields.append((windows, places, (h + 2, w + 2), matrix[c], tuple(roi[c].tolist()), (y0, x0, y1, x1)))
    return out_fields


def cells(region: tuple[int, int, int, int], centre: tuple[int, int], quadrant: list[Layer]):
    """The canvas `region` (y0, x0, y1, x1), at least 2 x 2, as 2 x 2 cells split at the canvas's `centre`
    (yc, xc) (moved inside the region when outside it: each cell on one side of the centre), each one window of
    its quadrant's image: (windows, their (y, x) places in the region)."""
    (y0, x0, y1, x1), (yc, xc) = region, centre
    ys, xs = min(max(yc, y0 + 1), y1 - 1), min(max(xc, x0 + 1), x1 - 1)
    windows, places = [], []
    for ya, yb in ((y0, ys), (ys, y1)):
        for xa, xb in ((x0, xs), (xs, x1)):
            layer = quadrant[2 * (ya >= yc) + (xa >= xc)]
            windows.append(Window(layer.slot, (ya - layer.offset[0], xa - layer.offset[1]), (yb - ya, xb - xa)))
            places.append((ya - y0, xa - x0))
    return windows, places


def partners(rng: np.random.Generator, slots: np.ndarray, n: int, k: int) -> np.ndarray:
    """[m, k] other slots of a batch of n for each of `slots`, distinct when the batch allows (YOLOv5 draws with
    replacement from the whole dataset, where repeats are rare; within a batch they would not be)."""
    if n - 1 < k:
        return rng.integers(0, n, (len(slots), k))
    picks = rng.random((len(slots), n - 1)).argsort(1)[:, :k]
    return picks + (picks >= slots[:, None])


def _canvas_boxes(tiles, cid, size_hw, M, scale, out_hw, polygons=None, paste=None, outlines=False):
    """All canvases' boxes at once: the tiles' rows (record rows, w, h, padw, padh) of canvas cid [n] placed,
    clipped to the canvas (size_hw [m, 2], load_mosaic), warped by M [m, 3, 3] to out_hw (h, w), filtered by
    box_candidates and clipped as YOLOv5's xyxy2xywhn(clip=True, eps=1e-3). `polygons`: per tile, its rows'
    polygons (points, offsets) or None; a tile's rows with them are boxed from their warped polygons
    (polygons.polygon_boxes) and kept with YOLOv5's area threshold for polygons (1%, not 10%). `paste`: (rng, p),
    YOLOv5's copy_paste on each canvas whose rows have polygons (their mirror images, boxed from their mirrored
    polygons, after all the others). Returns (rows [k, 5] normalised to the output, their canvas [k], {canvas:
    the pasted polygons in canvas pixels, as drawn before the flip}, with `outlines` (every row has a polygon)
    the kept rows' polygons warped to output pixels (masks.warped_outlines), else None)."""
    cls, xyxy = _xywhn_to_xyxy(tiles)
    xyxy = xyxy.clip(0, np.tile(size_hw[cid][:, ::-1], 2))  # (w, h, w, h)
    boxed = np.zeros(len(xyxy), bool)
    pasted = {}
    if polygons is not None and any(p is not None for p in polygons):
        counts = [len(r) for r, *_ in tiles]
        boxed = np.repeat([p is not None for p in polygons], counts)  # the rows boxed from their polygons
        found = [(p, np.diff(p[1]), g) for p, (_, *g) in zip(polygons, tiles, strict=True) if p is not None]
        per_row = np.concatenate([c for _, c, _ in found])
        geometry = np.repeat(np.array([g for *_, g in found], np.float64), [len(c) for _, c, _ in found], axis=0)
        points = placed(np.concatenate([p[0] for p, _, _ in found]), per_row, geometry, size_hw[cid[boxed]][:, ::-1])
        if paste is not None and paste[1] > 0:
            cls, xyxy, cid, boxed, points, per_row, pasted = paste_rows(
                *paste, cls, xyxy, cid, boxed, points, per_row, size_hw
            )
    n = len(xyxy)
    corners = np.ones((n, 4, 3))
    corners[:, :, :2] = xyxy[:, [0, 1, 2, 3, 0, 3, 2, 1]].reshape(n, 4, 2)
    warped = np.einsum("nkj,nij->nki", corners, M[cid])
    xy = warped[:, :, :2] / warped[:, :, 2:3]
    wh = np.array(out_hw[::-1], np.float64)
    new = np.concatenate([xy.min(1), xy.max(1)], 1).clip(0, np.tile(wh, 2))
    area_thr = np.full(n, 0.1)
    if boxed.any():
        new[boxed] = polygon_boxes(points, per_row, M[cid[boxed]], (wh[0], wh[1]))
        area_thr[boxed] = 0.01
    keep = box_candidates(xyxy * scale[cid][:, None], new, area_thr=area_thr)
    new = new[keep].clip(0, np.tile(wh - 1e-3, 2))
    rows = np.concatenate([cls[keep], (new[:, :2] + new[:, 2:]) / 2 / wh, (new[:, 2:] - new[:, :2]) / wh], axis=1)
    shapes = None if not outlines else []
    if outlines and keep.any():  # every row is boxed from its polygon: row r's points are the r-th run of `points`
        kept = np.flatnonzero(keep)
        pick = keep[np.repeat(np.arange(len(per_row)), per_row.astype(np.int64))]
        shapes = warped_outlines(points[pick], per_row[kept], M[cid[kept]])
    return rows.astype(np.float32), cid[keep], pasted, shapes


def plan_batch(
    rng: np.random.Generator,
    records: np.ndarray,
    sizes: np.ndarray,
    labels,
    s: int,
    hyp: Hyp,
    out: int | tuple[int, int] | None = None,
    shape: tuple[int, int] | None = None,
    polygons=None,
    outlines=None,
) -> list[SamplePlan]:
    """The plans of one batch (record indices `records`) at base size `s`, rendered at `out` (multi-scale) pixels
    square: YOLOv5's load_mosaic (or load_image + letterbox), random_perspective, mixup, HSV and flips, with the
    numbers for all samples drawn and computed at once. `labels(i)` gives record i's normalised (cls, cx, cy,
    w, h) rows; `sizes` is [N, 2] of (h, w); mosaic and mixup partners are other images of the batch.
    With `shape`, YOLOv5's rectangular training: every image letterboxed into the batch's (h, w) (no mosaic, so
    no mixup), the random affine centred there and the output that size, or `out`'s (h, w) (multi-scale).
    `polygons(i)`: record i's polygon labels ((points, offsets) or None, Store.polygons); a mosaic whose labelled
    images all have them is boxed from the warped polygons, as YOLOv5's load_mosaic (its other canvases never are).
    `outlines(i)`: for masks (YOLOv5's segmentation loader), record i's outline of every row (Store.outlines): every
    canvas, mosaic or not, is boxed from them and each plan carries its rows' outlines in output pixels."""
    base = (s, s) if shape is None else (int(shape[0]), int(shape[1]))  # (h, w) before multi-scale
    out_hw = base if out is None else (out, out) if np.isscalar(out) else (int(out[0]), int(out[1]))
    n = len(records)
    loads = [load_size(*(int(v) for v in sizes[i]), s) for i in records]
    t = hyp.translate
    low = (-hyp.perspective, -hyp.perspective, -hyp.degrees, 1 - hyp.scale, -hyp.shear, -hyp.shear, 0.5 - t, 0.5 - t)
    high = (hyp.perspective, hyp.perspective, hyp.degrees, 1 + hyp.scale, hyp.shear, hyp.shear, 0.5 + t, 0.5 + t)

    def draw(main: np.ndarray):
        """Per canvas: the four slots (the main image in a random quadrant), the centre (yc, xc), the affine draws."""
        four = np.concatenate([main[:, None], partners(rng, main, n, 3)], 1)
        four = np.take_along_axis(four, rng.random((len(main), 4)).argsort(1), 1)
        return (
            four,
            rng.uniform(s // 2, 2 * s - s // 2, (len(main), 2)).astype(int),
            rng.uniform(low, high, (len(main), 8)),
        )

    # the samples' own canvases first, then the mixup ones: turning mixup on leaves the first canvases as they were
    mosaic = (rng.random(n) < hyp.mosaic) & (shape is None)  # YOLOv5: no mosaic in rectangular training
    mix_draws = rng.random(n)
    four, centres, u = draw(np.arange(n))
    hsv = rng.uniform(-1, 1, (n, 3)) * [hyp.hsv_h, hyp.hsv_s, hyp.hsv_v] + 1
    flip_ud, flip_lr = rng.random(n) < hyp.flipud, rng.random(n) < hyp.fliplr
    ratios = rng.beta(32.0, 32.0, n)  # as YOLOv5: mixup blends two mosaics, im * r + im2 * (1 - r)
    mixed = np.flatnonzero(mosaic & (mix_draws < hyp.mixup))
    main = np.concatenate([np.arange(n), partners(rng, mixed, n, 1)[:, 0]])
    if len(mixed):
        more = draw(main[n:])
        four, centres, u = (np.concatenate(pair) for pair in zip((four, centres, u), more, strict=True))
    owner = np.concatenate([np.arange(n), mixed])  # canvas c belongs to sample owner[c]
    is_mosaic = np.concatenate([mosaic, np.ones(len(mixed), bool)])
    m = len(owner)
    size = np.where(is_mosaic[:, None], 2 * s, np.array(base)).astype(np.float64)  # [m, (h, w)]
    M, scale = perspective_matrices(u, size, base)
    layers, tiles, cid, tile_polygons = [], [], [], []
    read = outlines if outlines is not None else polygons  # a mosaic tile's polygons: masks want every row's
    for c in range(m):
        if is_mosaic[c]:
            slots = four[c].tolist()
            yc, xc = centres[c].tolist()
            canvas_layers, canvas_polygons = [], []
            for k, ((h, w), a, b) in zip(slots, mosaic_tiles(xc, yc, [loads[k] for k in slots], s), strict=True):
                padw, padh = a[0] - b[0], a[1] - b[1]  # image pixel u lands on canvas pixel u + pad
                canvas_layers.append(Layer(int(records[k]), k, (h, w), (padh, padw)))
                rows = labels(int(records[k]))
                tiles.append((rows, w, h, padw, padh))
                found = read(int(records[k])) if read is not None and len(rows) else None
                canvas_polygons.append((len(rows), found))
            tile_polygons += mosaic_polygons(canvas_polygons)
        else:
            j = int(main[c])
            index = int(records[j])
            p = letterbox(*(int(v) for v in sizes[index]), s, base)
            canvas_layers = [Layer(index, j, (p.nh, p.nw), (p.top, p.left))]
            rows = labels(index)
            tiles.append((rows, p.nw, p.nh, p.left, p.top))
            tile_polygons.append(outlines(index) if outlines is not None and len(rows) else None)
        layers.append(canvas_layers)
        cid += [c] * len(canvas_layers)
    counts = [len(r) for r, *_ in tiles]
    paste = (rng, hyp.copy_paste) if hyp.copy_paste > 0 else None
    rows, row_canvas, pasted, shapes = _canvas_boxes(
        tiles, np.repeat(cid, counts), size, M, scale, base, tile_polygons, paste, outlines is not None
    )
    if pasted:  # the pasted rows came last: each canvas's rows together again
        order = np.argsort(row_canvas, kind="stable")
        rows, row_canvas = rows[order], row_canvas[order]
        shapes = None if shapes is None else [shapes[k] for k in order.tolist()]
    bounds = np.cumsum(np.bincount(row_canvas, minlength=m))[:-1]
    per_canvas = np.split(rows, bounds)
    zoom = np.array([out_hw[1] / base[1], out_hw[0] / base[0]])
    M = np.diag([*zoom, 1.0]) @ M  # multi-scale: one more zoom in the warp
    # a letterboxed canvas is all quadrant 0: its centre is its far corner
    centre = np.where(is_mosaic[:, None], centres, size.astype(int))
    quadrants = [layers[c] if is_mosaic[c] else layers[c] * 4 for c in range(m)]
    fields = frames(M, size, centre, quadrants, out_hw)
    canvases = [Canvas(layers[c], *fields[c][:5], per_canvas[c], fields[c][5]) for c in range(m)]
    for c, polygons in pasted.items():  # mosaics only
        canvases[c].paste = canvas_paste(polygons, int(size[c][1]), canvases[c], centre[c].tolist(), quadrants[c])
    plans = [SamplePlan(canvases[j], per_canvas[j].copy(), hsv=hsv[j]) for j in range(n)]
    if shapes is not None:
        shapes = [xy * zoom for xy in shapes]
        starts = np.concatenate([[0], bounds, [len(shapes)]]).tolist()
        for j in range(n):
            plans[j].outlines = shapes[starts[j] : starts[j + 1]]
    for c in range(n, m):
        plan = plans[owner[c]]
        plan.mix, plan.mix_ratio = canvases[c], float(ratios[owner[c]])
        plan.boxes = np.concatenate([plan.boxes, per_canvas[c]])
        if shapes is not None:
            plan.outlines = plan.outlines + shapes[starts[c] : starts[c + 1]]
    for j, plan in enumerate(plans):
        plan.flip_ud, plan.flip_lr = bool(flip_ud[j]), bool(flip_lr[j])
        if plan.flip_ud:
            plan.boxes[:, 2] = 1 - plan.boxes[:, 2]
        if plan.flip_lr:
            plan.boxes[:, 1] = 1 - plan.boxes[:, 1]
    return plans


def multi_scale_size(rng: np.random.Generator, s: int, stride: int = 32) -> int:
    """YOLOv5's per-batch size: uniform in [0.5 s, 1.5 s], rounded down to the stride."""
    return int(rng.integers(int(s * 0.5), int(s * 1.5) + stride)) // stride * stride
