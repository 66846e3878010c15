"""YOLOv5's training augmentation as numbers: mosaic placement, random affine, box transform and filtering,
HSV gains, flips, multi-scale size. Deterministic per (seed, epoch, position), so DALI's source workers (which
move pixels) and the iterator (which moves boxes) compute the same plan independently.

Semantics follow ultralytics/yolov5 `load_mosaic`, `letterbox`, `random_perspective` and `box_candidates`.
A sample is a canvas split into four quadrants at (xc, yc); each quadrant is one window of one resized image
(padded where the image does not reach), so the pipeline assembles the canvas by concatenation and warps it once,
with the random affine and the multi-scale factor folded into one matrix. A letterboxed sample is the top-left
quadrant of an (s + 1)-square canvas whose other quadrants are 1 pixel wide and empty.

Mosaic and mixup partners are other images of the same batch (`slot`s), so the pipeline decodes and resizes each
image once per batch instead of four times; the batch is a uniform draw of the epoch permutation, so partners
are still uniform over the dataset, and every image is in four mosaics per epoch on average, as in YOLOv5.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from fastload.loader.geometry import letterbox, load_size

EMPTY_START = (-4096, -4096)  # a window that misses its image: the quadrant is all grey padding


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

    def check(self) -> None:
        for name in self.__dataclass_fields__:
            if getattr(self, name) < 0:
                raise ValueError(f"hyp {name} must be >= 0, not {getattr(self, name)}")
        for name in ("flipud", "fliplr", "mosaic", "mixup"):
            if getattr(self, name) > 1:
                raise ValueError(f"hyp {name} is a probability, not {getattr(self, name)}")


@dataclass
class Layer:
    """One quadrant of the canvas: a window of an image resized to `load_hw` (padded outside the image)."""

    index: int  # record index; -1 for an empty quadrant
    slot: int  # position in the batch of the image the window is cut from (any, for an empty quadrant)
    load_hw: tuple[int, int]
    start: tuple[int, int]  # (y, x) of the window in the resized image; negative = padding before it
    shape: tuple[int, int]  # (h, w) of the quadrant


@dataclass
class Canvas:
    """One warped canvas: four quadrant windows and the matrix that takes the canvas to the output."""

    layers: list[Layer]  # top-left, top-right, bottom-left, bottom-right quadrants
    matrix: np.ndarray  # 3 x 3: canvas pixel coordinates -> output pixel coordinates
    boxes: np.ndarray  # float32 [k, 5] (cls, cx, cy, w, h) normalised to the output


@dataclass
class SamplePlan:
    canvas: Canvas
    boxes: np.ndarray  # float32 [k, 5] of the sample: the canvas's, plus the mixup canvas's
    mix: Canvas | None = None  # mixup: a second mosaic, blended with weight 1 - mix_ratio
    mix_ratio: float = 1.0
    hsv: np.ndarray = field(default_factory=lambda: np.ones(3))  # hue, saturation, value gains
    flip_lr: bool = False
    flip_ud: bool = False

    @property
    def layers(self) -> list[Layer]:
        return self.canvas.layers + (self.mix.layers if self.mix else [])


def translation(x: float, y: float) -> np.ndarray:
    return np.array([[1, 0, x], [0, 1, y], [0, 0, 1]], np.float64)


def random_perspective(rng: np.random.Generator, hyp: Hyp, in_wh: tuple[int, int], out_wh: tuple[int, int]):
    """YOLOv5's random_perspective matrix M = T @ S @ R @ P @ C, and its scale."""
    C = translation(-in_wh[0] / 2, -in_wh[1] / 2)
    P = np.eye(3)
    P[2, 0] = rng.uniform(-hyp.perspective, hyp.perspective)
    P[2, 1] = rng.uniform(-hyp.perspective, hyp.perspective)
    a = math.radians(rng.uniform(-hyp.degrees, hyp.degrees))
    s = rng.uniform(1 - hyp.scale, 1 + hyp.scale)
    R = np.array([[s * math.cos(a), s * math.sin(a), 0], [-s * math.sin(a), s * math.cos(a), 0], [0, 0, 1]])
    S = np.eye(3)
    S[0, 1] = math.tan(math.radians(rng.uniform(-hyp.shear, hyp.shear)))
    S[1, 0] = math.tan(math.radians(rng.uniform(-hyp.shear, hyp.shear)))
    T = translation(
        rng.uniform(0.5 - hyp.translate, 0.5 + hyp.translate) * out_wh[0],
        rng.uniform(0.5 - hyp.translate, 0.5 + hyp.translate) * out_wh[1],
    )
    return T @ S @ R @ P @ C, s


def box_candidates(box1: np.ndarray, box2: np.ndarray, wh_thr=2, ar_thr=100, area_thr=0.1, eps=1e-16):
    """YOLOv5's rule: keep boxes wider and taller than 2 px, aspect < 100, keeping > 10% of their area.
    box1 (before) and box2 (after) are [n, 4] xyxy."""
    w1, h1 = box1[:, 2] - box1[:, 0], box1[:, 3] - box1[:, 1]
    w2, h2 = box2[:, 2] - box2[:, 0], box2[:, 3] - box2[:, 1]
    ar = np.maximum(w2 / (h2 + eps), h2 / (w2 + eps))
    return (w2 > wh_thr) & (h2 > wh_thr) & (w2 * h2 / (w1 * h1 + eps) > area_thr) & (ar < ar_thr)


def warp_boxes(xyxy: np.ndarray, M: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Corners through M (with the perspective divide), enclosing box, clipped to the (w, h) output."""
    n = len(xyxy)
    xy = np.ones((n * 4, 3))
    xy[:, :2] = xyxy[:, [0, 1, 2, 3, 0, 3, 2, 1]].reshape(n * 4, 2)
    xy = xy @ M.T
    xy = (xy[:, :2] / xy[:, 2:3]).reshape(n, 8)
    x, y = xy[:, [0, 2, 4, 6]], xy[:, [1, 3, 5, 7]]
    new = np.stack([x.min(1), y.min(1), x.max(1), y.max(1)], 1)
    new[:, [0, 2]] = new[:, [0, 2]].clip(0, size[0])
    new[:, [1, 3]] = new[:, [1, 3]].clip(0, size[1])
    return new


def _xywhn_to_xyxy(rows: np.ndarray, w: float, h: float, padw: float, padh: float) -> np.ndarray:
    cx, cy, bw, bh = rows[:, 1] * w + padw, rows[:, 2] * h + padh, rows[:, 3] * w, rows[:, 4] * h
    return np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], 1)


def mosaic_tiles(rng: np.random.Generator, indices: list[int], sizes: np.ndarray, s: int):
    """YOLOv5's load_mosaic placement on the 2s x 2s canvas: per tile (index, load (h, w), canvas box
    x1a, y1a, x2a, y2a, image box x1b, y1b, x2b, y2b)."""
    yc, xc = (int(rng.uniform(s // 2, 2 * s - s // 2)) for _ in range(2))
    tiles = []
    for i, index in enumerate(indices):
        h, w = load_size(*(int(v) for v in sizes[index]), s)
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
        tiles.append((index, (h, w), a, b))
    return tiles


def _quadrants(xc: int, yc: int, w: int, h: int) -> list[tuple[int, int, int, int]]:
    """(y0, x0, h, w) of the four quadrants of a w x h canvas split at (xc, yc)."""
    return [(0, 0, yc, xc), (0, xc, yc, w - xc), (yc, 0, h - yc, xc), (yc, xc, h - yc, w - xc)]


def partners(rng: np.random.Generator, slot: int, n: int, k: int) -> list[int]:
    """k other slots of a batch of n, distinct when the batch allows (YOLOv5 draws with replacement from the
    whole dataset, where repeats are rare; in a batch they would not be)."""
    if n - 1 >= k:
        picks = rng.choice(n - 1, k, replace=False)
        return [int(p) + (p >= slot) for p in picks]
    return rng.integers(0, n, k).tolist()


def plan_canvas(
    rng: np.random.Generator,
    slot: int,
    records: np.ndarray,
    sizes: np.ndarray,
    labels,
    s: int,
    hyp: Hyp,
    mosaic: bool,
) -> Canvas:
    """YOLOv5's load_mosaic (or load_image + letterbox) followed by random_perspective, at size s, for the image
    in `slot` of the batch whose record indices are `records`; mosaic partners are other slots of the batch."""
    boxes = []
    if mosaic:
        slots = [slot, *partners(rng, slot, len(records), 3)]
        rng.shuffle(slots)
        tiles = mosaic_tiles(rng, [int(records[k]) for k in slots], sizes, s)
        xc, yc = tiles[0][2][2], tiles[0][2][3]  # the top-left tile ends at the mosaic centre
        canvas, layers = (2 * s, 2 * s), []
        quads = _quadrants(xc, yc, 2 * s, 2 * s)
        for k, (idx, (h, w), a, b), (qy, qx, qh, qw) in zip(slots, tiles, quads, strict=True):
            padw, padh = a[0] - b[0], a[1] - b[1]  # image pixel u lands on canvas pixel u + pad
            layers.append(Layer(idx, k, (h, w), (qy - padh, qx - padw), (qh, qw)))
            boxes.append((labels(idx), w, h, padw, padh))
    else:
        index = int(records[slot])
        h0, w0 = (int(v) for v in sizes[index])
        p = letterbox(h0, w0, s, (s, s))
        canvas = (s, s)
        quads = _quadrants(s, s, s + 1, s + 1)
        layers = [Layer(index, slot, (p.nh, p.nw), (-p.top, -p.left), quads[0][2:])]
        layers += [Layer(-1, slot, (p.nh, p.nw), EMPTY_START, q[2:]) for q in quads[1:]]
        boxes.append((labels(index), p.nw, p.nh, p.left, p.top))
    M, scale = random_perspective(rng, hyp, canvas, (s, s))
    cls = np.concatenate([r[:, :1] for r, *_ in boxes])
    xyxy = np.concatenate([_xywhn_to_xyxy(r, w, h, pw, ph) for r, w, h, pw, ph in boxes]).reshape(-1, 4)
    xyxy = xyxy.clip(0, canvas[0])  # load_mosaic clips to the canvas before warping
    new = warp_boxes(xyxy, M, (s, s))
    keep = box_candidates(xyxy * scale, new)
    new = new[keep]
    new[:, [0, 2]] = new[:, [0, 2]].clip(0, s - 1e-3)  # xyxy2xywhn(clip=True, eps=1e-3)
    new[:, [1, 3]] = new[:, [1, 3]].clip(0, s - 1e-3)
    rows = np.concatenate([cls[keep], (new[:, :2] + new[:, 2:]) / 2 / s, (new[:, 2:] - new[:, :2]) / s], axis=1)
    return Canvas(layers, M, rows.astype(np.float32))


def plan_sample(
    rng: np.random.Generator,
    slot: int,
    records: np.ndarray,
    sizes: np.ndarray,
    labels,
    s: int,
    hyp: Hyp,
    out: int | None = None,
) -> SamplePlan:
    """The plan of the batch's sample `slot` (record `records[slot]`) at base size `s`, rendered at `out`
    (multi-scale) pixels square. `labels(i)` gives record i's normalised (cls, cx, cy, w, h) rows; `sizes` is
    [N, 2] of (h, w); mosaic and mixup partners are other images of the batch."""
    out = out or s
    mosaic = rng.random() < hyp.mosaic
    plan = SamplePlan(plan_canvas(rng, slot, records, sizes, labels, s, hyp, mosaic), np.zeros((0, 5), np.float32))
    plan.boxes = plan.canvas.boxes
    if mosaic and rng.random() < hyp.mixup:  # as YOLOv5: a second mosaic, blended with r ~ Beta(32, 32)
        plan.mix = plan_canvas(rng, partners(rng, slot, len(records), 1)[0], records, sizes, labels, s, hyp, True)
        plan.mix_ratio = float(rng.beta(32.0, 32.0))
        plan.boxes = np.concatenate([plan.boxes, plan.mix.boxes])
    plan.boxes = plan.boxes.copy()
    plan.hsv = rng.uniform(-1, 1, 3) * [hyp.hsv_h, hyp.hsv_s, hyp.hsv_v] + 1
    if rng.random() < hyp.flipud:
        plan.flip_ud = True
        plan.boxes[:, 2] = 1 - plan.boxes[:, 2]
    if rng.random() < hyp.fliplr:
        plan.flip_lr = True
        plan.boxes[:, 1] = 1 - plan.boxes[:, 1]
    zoom = np.diag([out / s, out / s, 1.0])
    for canvas in (plan.canvas, plan.mix):
        if canvas is not None:
            canvas.matrix = zoom @ canvas.matrix
    return plan


def multi_scale_size(rng: np.random.Generator, s: int, stride: int = 32) -> int:
    """YOLOv5's per-batch size: uniform in [0.5 s, 1.5 s], rounded down to the stride."""
    return int(rng.integers(int(s * 0.5), int(s * 1.5) + stride)) // stride * stride
