"""Polygon labels in YOLOv5's training augmentation (its load_mosaic with segments): which mosaics use them, and the
boxes of their warped polygons, equal to YOLOv5's 1000-point resampling without drawing the points."""

from __future__ import annotations

import numpy as np

RESAMPLED = 1000  # YOLOv5's resample_segments: points per polygon before the warp


def mosaic_polygons(tiles: list[tuple[int, tuple[np.ndarray, np.ndarray] | None]]) -> list:
    """Per tile of a mosaic ((row count, polygons or None) each): its polygons when every tile with rows has them
    (YOLOv5's use_segments: as many segments as labels), else None for all; a tile without rows: None."""
    if not all(found is not None for n, found in tiles if n):
        return [None] * len(tiles)
    return [found if n else None for n, found in tiles]


def placed(points: np.ndarray, counts: np.ndarray, geometry: np.ndarray, canvas_wh) -> np.ndarray:
    """n normalised polygons (`counts` [n] of their `points` [P, 2] each) placed at their tile's (w, h, padw, padh)
    `geometry` [n, 4] and clipped to their canvas (w, h) [n, 2]: float32 canvas pixels, as YOLOv5's xyn2xy and its
    clip of segments4."""
    poly = np.repeat(np.arange(len(counts)), counts.astype(np.int64))
    g = geometry.astype(np.float32)[poly]
    pts = points.astype(np.float32)
    xy = np.stack([g[:, 0] * pts[:, 0] + g[:, 2], g[:, 1] * pts[:, 1] + g[:, 3]], 1)
    return xy.clip(0, np.asarray(canvas_wh, np.float32)[poly])


def polygon_boxes(xy: np.ndarray, counts: np.ndarray, M, out_wh) -> np.ndarray:
    """YOLOv5's random_perspective on polygons (load_mosaic's segments): n polygons, `counts` [n] of their points
    `xy` [P, 2] each (canvas pixels, `placed`); closed and resampled to 1000 points evenly spaced in vertex index
    (resample_segments); warped by their M [n, 3, 3]; boxed by the points inside the output (W, H) (segment2box:
    zeros when none is). Returns float64 [n, 4] xyxy in output pixels.

    Without the 1000 points: along an edge the warp is a line and the output a convex region, so the points inside
    are one run of consecutive samples, and their extremes in x and y are the run's two ends (x / z is monotonic
    along a segment with z > 0). So each edge solves four linear inequalities for its run and evaluates only its two
    end samples: O(vertices), not 1000 points a polygon (~20x less time)."""
    n = len(counts)
    width, height = out_wh
    k = counts.astype(np.int64)
    first = np.concatenate([[0], np.cumsum(k)[:-1]])
    poly = np.repeat(np.arange(n), k)
    xy = xy.astype(np.float64)
    m = M[poly]
    hv = np.einsum("eij,ej->ei", m[:, :, :2], xy) + m[:, :, 2]  # each vertex in homogeneous output coordinates
    # edges: polygon p's edge e runs from vertex e to vertex (e + 1) % k (the closing point is the first)
    e = np.arange(len(xy)) - first[poly]
    kk = k[poly]
    nxt = first[poly] + (e + 1) % kk
    d = hv[nxt] - hv
    # inside: x >= 0, y >= 0, W z - x >= 0, H z - y >= 0, each c0 + c1 f >= 0 at f in [0, 1] along the edge
    c0 = np.stack([hv[:, 0], hv[:, 1], width * hv[:, 2] - hv[:, 0], height * hv[:, 2] - hv[:, 1]], 1)
    c1 = np.stack([d[:, 0], d[:, 1], width * d[:, 2] - d[:, 0], height * d[:, 2] - d[:, 1]], 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        root = -c0 / c1
    lo = np.where(c1 > 0, root, -np.inf).max(1)
    hi = np.where(c1 < 0, root, np.inf).min(1)
    never = ((c1 == 0) & (c0 < 0)).any(1)
    # the edge's samples j (t_j = j k / 999 with floor(t_j) = e; the last edge also holds t = k) inside [lo, hi]
    steps = RESAMPLED - 1
    j_first = -(-steps * e // kk)
    j_last = np.where(e == kk - 1, steps, -(-steps * (e + 1) // kk) - 1)
    j_lo = np.maximum(j_first, np.ceil((e + lo.clip(0, 1)) * steps / kk)).astype(np.int64)
    j_hi = np.minimum(j_last, np.floor((e + hi.clip(0, 1)) * steps / kk)).astype(np.int64)
    run = (j_lo <= j_hi) & ~never & (lo <= hi)
    js = np.stack([j_lo[run], j_hi[run]], 1).ravel()  # in polygon order
    owner = poly[run].repeat(2)
    # the samples themselves, as np.linspace and np.interp place them, tested as segment2box does
    kp, fp = k[owner], first[owner]
    t = np.where(js == steps, kp, js * (kp / steps))
    idx = np.minimum(np.floor(t).astype(np.int64), kp - 1)
    a = fp + idx
    w3 = hv[a] + (t - idx)[:, None] * (hv[fp + (idx + 1) % kp] - hv[a])
    px, py = w3[:, 0] / w3[:, 2], w3[:, 1] / w3[:, 2]
    inside = (px >= 0) & (py >= 0) & (px <= width) & (py <= height)
    owner, px, py = owner[inside], px[inside], py[inside]
    box = np.zeros((n, 4))
    if len(owner):
        starts = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]])
        who = owner[starts]
        box[who] = np.stack([np.minimum.reduceat(px, starts), np.minimum.reduceat(py, starts),
                             np.maximum.reduceat(px, starts), np.maximum.reduceat(py, starts)], 1)  # fmt: skip
    box[box[:, 2] == 0] = 0  # YOLOv5's `if any(x)`: inside points all at x = 0 give zeros
    return box
