"""The picture hashes `verify --duplicates` compares: a 128-bit dHash of a 9x9 grey thumbnail, of the whole picture
and (for cropped copies) of 75 windows of it, and the colour-layout check that confirms a cropped copy."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

PLACES = (0, 0.25, 0.5, 0.75, 1)  # where a window sits, as a fraction of the room left in x and in y
WINDOWS = [(z, fx, fy) for z in (0.07, 0.14, 0.2) for fx in PLACES for fy in PLACES]  # zoom, place in x and y
BOXES = np.array([(0.0, 0.0, 1.0, 1.0)] + [(fx * z, fy * z, fx * z + 1 - z, fy * z + 1 - z) for z, fx, fy in WINDOWS])
WINDOW_COLUMNS = 4 + 3 * len(WINDOWS)  # window_prints' width
CROP_DISTANCE = 10  # 97% of 150 crops within it of a window of their original, no other picture matched
LAYOUT_GAP = 16.0  # 4x4 colour layouts: crops at most 7.3 from their window (mean per channel), others 29.5+


def small(data: bytes, size: tuple[int, int] = (64, 64)) -> Image.Image | None:
    """The image decoded small, to at least `size` (a JPEG at 1/2 to 1/8 scale, in the DCT: a fraction of the
    cost), RGB; None if it does not decode."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.draft("RGB", size)
            return im.convert("RGB")
    except Exception:
        return None


def dhash(grey: np.ndarray) -> np.ndarray:
    """[k, 2] uint64 dHashes of grey thumbnails [k, 9, 9]: is each of 8x8 pixels brighter than its right neighbour,
    and than the one below."""
    k = len(grey)
    bits = np.concatenate([(grey[:, :8, 1:] > grey[:, :8, :-1]).reshape(k, -1),
                           (grey[:, 1:, :8] > grey[:, :-1, :8]).reshape(k, -1)], 1)  # fmt: skip
    return np.packbits(bits, axis=1).view(">u8").astype(np.uint64)


def window_prints(rgb: Image.Image) -> np.ndarray:
    """[WINDOW_COLUMNS] uint64: the whole picture's dHash and its mirror image's (from `thumbnails`, as the windows'
    are), then each window's dHash (two words) and packed mean colour."""
    cells, colour = thumbnails(_square(rgb), BOXES)
    return np.concatenate([dhash(cells[:1])[0], dhash(cells[:1, :, ::-1])[0],
                           np.concatenate([dhash(cells[1:]), colour[1:, None]], 1).ravel()])  # fmt: skip


def layout_gap(a: Image.Image, b: Image.Image, window: int, mirrored: bool) -> float:
    """How far apart (mean difference per channel, 0-255) picture a's 4x4 colour layout (its mirror image's if
    `mirrored`) and that of `window` of picture b are: the check of a cropped copy its dHash matched, which sees
    colour where the dHash sees only grey steps (smooth pictures of other colours can share the dHash)."""
    edges = np.linspace(0, 1, 5)[None]
    box = BOXES[1 + window]
    mine = _areas(_square(a).astype(np.float32), edges, edges)[0]
    xs, ys = box[0] + (box[2] - box[0]) * edges, box[1] + (box[3] - box[1]) * edges
    theirs = _areas(_square(b).astype(np.float32), xs, ys)[0]
    return float(np.abs((mine[:, ::-1] if mirrored else mine) - theirs).mean())


def _square(rgb: Image.Image) -> np.ndarray:
    return np.asarray(rgb.resize((64, 64), Image.Resampling.BOX))


def thumbnails(pixels: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """9x9 grey thumbnails [k, 9, 9] of `boxes` (fractions of the picture, [k, 4] x0 y0 x1 y1) of `pixels` (RGB,
    uint8 [h, w, 3]), each cell the exact mean of its area, and each box's packed mean colour [k] (R << 16 | G << 8 |
    B, plus one: 0 is not decoded). From summed-area tables, bilinear between their entries (exact: the area under a
    piecewise-constant image is bilinear within each pixel): one numpy pass for every box."""
    rgb = pixels.astype(np.float32)
    grey = rgb @ np.float32([0.299, 0.587, 0.114])
    steps = np.linspace(0, 1, 10)
    xs = boxes[:, 0, None] + (boxes[:, 2] - boxes[:, 0])[:, None] * steps  # [k, 10] cell edges
    ys = boxes[:, 1, None] + (boxes[:, 3] - boxes[:, 1])[:, None] * steps
    cells = _areas(grey[..., None], xs, ys)[..., 0]
    colour = _areas(rgb, xs[:, [0, -1]], ys[:, [0, -1]])[:, 0, 0]
    r, g, b = np.round(colour).astype(np.uint64).T
    return cells, (r << 16 | g << 8 | b) + 1


def _areas(image: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """[k, len(ys) - 1, len(xs) - 1, c]: the mean of `image` ([h, w, c]) over each cell between edges `xs`, `ys`
    (fractions of the width and height, [k, n])."""
    h, w, c = image.shape
    table = np.zeros((h + 1, w + 1, c), np.float64)
    table[1:, 1:] = image.cumsum(0, dtype=np.float64).cumsum(1)
    xs, ys = xs * w, ys * h
    x0, y0 = np.minimum(xs.astype(int), w - 1), np.minimum(ys.astype(int), h - 1)
    fx, fy = (xs - x0)[:, None, :, None], (ys - y0)[:, :, None, None]
    x0, y0 = x0[:, None, :], y0[:, :, None]
    area = (table[y0, x0] * (1 - fx) + table[y0, x0 + 1] * fx) * (1 - fy)
    area += (table[y0 + 1, x0] * (1 - fx) + table[y0 + 1, x0 + 1] * fx) * fy  # the area to each pair of edges
    sums = area[:, 1:, 1:] - area[:, :-1, 1:] - area[:, 1:, :-1] + area[:, :-1, :-1]
    return sums / (np.diff(xs, axis=1)[:, None, :] * np.diff(ys, axis=1)[:, :, None])[..., None]
