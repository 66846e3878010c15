"""Instance masks for YOLOv5's segmentation models (its LoadImagesAndLabelsAndMasks): each object's outline drawn at
the output's size, shrunk by the mask ratio; then either (overlap masks, YOLOv5's default) the objects painted
largest first into one index map (pixel value k + 1: the image's k-th object, the targets sorted by area to match),
or (YOLOv5's --no-overlap) each object's whole mask, kept in the objects' order as bit planes."""

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


def outline_blocks(outlines: list[np.ndarray], hw: tuple[int, int], ratio: int) -> list[tuple[int, int, np.ndarray]]:
    """Each outline (float [k, 2] output pixels) filled at its integer vertices (YOLOv5's astype(int32),
    cv2.fillPoly) on an (h, w) image and shrunk `ratio` times (`shrink`): YOLOv5's polygon2mask. Drawn only over its
    bounding box, so each is (top, left, its 0/1 uint8 block) in mask pixels; an outline with no points or none
    over the output is an empty block."""
    h, w = hw
    mh, mw = h // ratio, w // ratio
    blocks = []
    for xy in outlines:
        v = np.clip(xy, -FAR, FAR).astype(np.int32).reshape(-1, 2)
        lo, hi = (v.min(0), v.max(0) + 1) if len(v) else (np.zeros(2, int), np.zeros(2, int))
        x0, y0 = max(int(lo[0]), 0) // ratio, max(int(lo[1]), 0) // ratio  # in mask pixels
        x1, y1 = min(-(-int(hi[0]) // ratio), mw), min(-(-int(hi[1]) // ratio), mh)
        if x0 >= x1 or y0 >= y1:  # no points, or none over the output: nothing to draw
            blocks.append((0, 0, np.zeros((0, 0), np.uint8)))
            continue
        image = Image.new("L", ((x1 - x0) * ratio, (y1 - y0) * ratio))
        draw = ImageDraw.Draw(image)
        corners = [(x - x0 * ratio, y - y0 * ratio) for x, y in v.tolist()]
        if len(corners) > 1:
            draw.polygon(corners, fill=1)
            draw.line(corners + corners[:1], fill=1)  # cv2 fills the pixels its 8-connected edges cross
        else:
            draw.point(corners, fill=1)
        blocks.append((y0, x0, shrink(np.asarray(image), ratio)))
    return blocks


def overlap_mask(outlines: list[np.ndarray], hw: tuple[int, int], ratio: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """YOLOv5's polygons2masks_overlap: each outline's mask (`outline_blocks`) painted into one
    [h // ratio, w // ratio] map in order of decreasing area (the smaller object wins an overlap), object k of that
    order as k + 1. Returns (the map, uint8 or int32 when over 255 objects, as YOLOv5; the order [n]: the objects'
    indices, largest first)."""
    blocks = outline_blocks(outlines, hw, ratio)
    order = np.argsort(-np.asarray([int(b.sum()) for _, _, b in blocks], np.int64), kind="stable")
    out = np.zeros((hw[0] // ratio, hw[1] // ratio), np.int32 if len(outlines) > 255 else np.uint8)
    for k, j in enumerate(order.tolist()):
        y0, x0, block = blocks[j]
        window = out[y0 : y0 + block.shape[0], x0 : x0 + block.shape[1]]
        window[block > 0] = k + 1
    return out, order


def instance_masks(outlines: list[np.ndarray], hw: tuple[int, int], ratio: int = 4) -> np.ndarray:
    """YOLOv5's polygons2masks (its --no-overlap): each object's whole mask, uint8 0/1 [n, h // ratio, w // ratio]
    in the objects' order."""
    out = np.zeros((len(outlines), hw[0] // ratio, hw[1] // ratio), np.uint8)
    for k, (y0, x0, block) in enumerate(outline_blocks(outlines, hw, ratio)):
        out[k, y0 : y0 + block.shape[0], x0 : x0 + block.shape[1]] = block
    return out


def instance_planes(outlines: list[np.ndarray], hw: tuple[int, int], ratio: int = 4) -> np.ndarray:
    """YOLOv5's polygons2masks (its --no-overlap: one whole mask per object, in the objects' order) packed as bit
    planes: uint8 [max(1, ceil(n / 8)), h // ratio, w // ratio], object k's mask in bit k % 8 of plane k // 8. An
    eighth of the bytes of n separate masks (`unpack_planes` takes them apart)."""
    planes = np.zeros((max(1, -(-len(outlines) // 8)), hw[0] // ratio, hw[1] // ratio), np.uint8)
    for k, (y0, x0, block) in enumerate(outline_blocks(outlines, hw, ratio)):
        window = planes[k // 8, y0 : y0 + block.shape[0], x0 : x0 + block.shape[1]]
        window |= block << (k % 8)
    return planes


def unpack_planes(planes, image, index):
    """Masks [M, h, w] (0/1, uint8) from per-image bit planes ([N, P, h, w], numpy or torch: `instance_planes`
    padded to the batch's most planes): mask m is object `index[m]` of image `image[m]` ([M] integer arrays)."""
    n, p, h, w = planes.shape
    rows = image * p + index // 8  # each mask's plane among all N x P
    shift = (index % 8).reshape(-1, 1, 1)
    if isinstance(planes, np.ndarray):
        picked = planes.reshape(n * p, h, w)[rows]
        np.right_shift(picked, shift.astype(np.uint8), out=picked)
        return np.bitwise_and(picked, 1, out=picked)
    picked = planes.reshape(n * p, h, w).index_select(0, rows)  # a copy (torch's advanced indexing: 9x slower)
    return picked.bitwise_right_shift_(shift.to(picked.dtype)).bitwise_and_(1)


def stack_masks(masks: list[np.ndarray]) -> np.ndarray:
    """Images' overlap masks as one [N, h, w] array: uint8, or int32 when one of them holds over 255 objects."""
    if all(m.dtype == np.uint8 for m in masks):
        return np.stack(masks)
    return np.stack([m.astype(np.int32) for m in masks])
