"""Instance masks for YOLOv5's segmentation models (its LoadImagesAndLabelsAndMasks with overlap masks): each
object's outline drawn at the output's size, shrunk by the mask ratio, the objects painted largest first into one
index map (pixel value k + 1: the image's k-th object, the targets sorted by area to match)."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

FAR = 1 << 20  # outline coordinates are clipped here before the int32 cast: far outside any output either way


def warped_outlines(points: np.ndarray, counts: np.ndarray, M: np.ndarray) -> list[np.ndarray]:
    """n outlines (`counts` [n] of their canvas-pixel `points` [P, 2] each) warped by their M [n, 3, 3] (affine or
    perspective, with the division): float64 [k, 2] output pixels each. A warp maps a polygon's edges to lines, so
    its vertices alone are the warped outline (YOLOv5 warps 1000 resampled points of it)."""
    owner = np.repeat(np.arange(len(counts)), counts.astype(np.int64))
    m = M[owner]
    hv = np.einsum("pij,pj->pi", m[:, :, :2], points.astype(np.float64)) + m[:, :, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        xy = np.nan_to_num(hv[:, :2] / hv[:, 2:3], nan=-FAR, posinf=FAR, neginf=-FAR)
    return np.split(xy, np.cumsum(counts.astype(np.int64))[:-1]) if len(counts) else []


def shrink(mask: np.ndarray, ratio: int) -> np.ndarray:
    """A 0/1 mask shrunk `ratio` times as cv2.resize's bilinear does it (YOLOv5's polygon2mask): each output pixel
    samples the input at (i + 0.5) r - 0.5, so for an even ratio it is the rounded mean of the 2 x 2 pixels around
    that point (1 when at least 2 of them are), for an odd one the pixel there."""
    if ratio == 1:
        return mask
    if ratio % 2:
        c = (ratio - 1) // 2
        return mask[c::ratio, c::ratio]
    c = ratio // 2 - 1
    h, w = mask.shape[0] // ratio, mask.shape[1] // ratio
    total = sum(mask[c + dy :: ratio, c + dx :: ratio][:h, :w].astype(np.uint8) for dy in (0, 1) for dx in (0, 1))
    return (total >= 2).astype(np.uint8)


def overlap_mask(outlines: list[np.ndarray], hw: tuple[int, int], ratio: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """YOLOv5's polygons2masks_overlap: each outline (float [k, 2] output pixels) filled at its integer vertices
    (YOLOv5's astype(int32), cv2.fillPoly) on an (h, w) image, shrunk `ratio` times (`shrink`), then all painted
    into one [h // ratio, w // ratio] map in order of decreasing area (the smaller object wins an overlap), object k
    of that order as k + 1. Each outline is drawn only over its bounding box. Returns (the map, uint8 or int32 when
    over 255 objects, as YOLOv5; the order [n]: the objects' indices, largest first)."""
    h, w = hw
    mh, mw = h // ratio, w // ratio
    blocks, areas = [], []
    for xy in outlines:
        v = np.clip(xy, -FAR, FAR).astype(np.int32).reshape(-1, 2)
        lo, hi = (v.min(0), v.max(0) + 1) if len(v) else (np.zeros(2, int), np.zeros(2, int))
        x0, y0 = max(int(lo[0]), 0) // ratio, max(int(lo[1]), 0) // ratio  # in mask pixels
        x1, y1 = min(-(-int(hi[0]) // ratio), mw), min(-(-int(hi[1]) // ratio), mh)
        if x0 >= x1 or y0 >= y1:  # no points, or none over the output: nothing to draw
            blocks.append((0, 0, np.zeros((0, 0), np.uint8)))
            areas.append(0)
            continue
        image = Image.new("L", ((x1 - x0) * ratio, (y1 - y0) * ratio))
        draw = ImageDraw.Draw(image)
        corners = [(x - x0 * ratio, y - y0 * ratio) for x, y in v.tolist()]
        if len(corners) > 1:
            draw.polygon(corners, fill=1)
            draw.line(corners + corners[:1], fill=1)  # cv2 fills the pixels its 8-connected edges cross
        else:
            draw.point(corners, fill=1)
        block = shrink(np.asarray(image), ratio)
        blocks.append((y0, x0, block))
        areas.append(int(block.sum()))
    order = np.argsort(-np.asarray(areas, np.int64), kind="stable")
    out = np.zeros((mh, mw), np.int32 if len(outlines) > 255 else np.uint8)
    for k, j in enumerate(order.tolist()):
        y0, x0, block = blocks[j]
        window = out[y0 : y0 + block.shape[0], x0 : x0 + block.shape[1]]
        window[block > 0] = k + 1
    return out, order


def stack_masks(masks: list[np.ndarray]) -> np.ndarray:
    """Images' overlap masks as one [N, h, w] array: uint8, or int32 when one of them holds over 255 objects."""
    if all(m.dtype == np.uint8 for m in masks):
        return np.stack(masks)
    return np.stack([m.astype(np.int32) for m in masks])
