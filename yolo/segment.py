"""Instance masks of YOLOv5's segmentation models (utils/segment/general.py): a detection's mask is the sigmoid of
its coefficients times the image's prototypes, cut to its box; masks compare by their IoU. For detect, each mask at
the original image's resolution within its box (`native_masks`, `BoxMask`), its outline (`BoxMask.polygon`) and its
YOLO segment label line (`polygon_lines`); for validation's pictures, the predictions as overlap maps; the target
masks' size (`MASK_RATIO`, `check_mask_ratio`)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from contourpy import LineType, contour_generator

from fastload.errors import FastloadError

MASK_RATIO = 4  # a segmentation run's target masks: 4x smaller than the images (YOLOv5's --mask-ratio), the prototypes'


def check_mask_ratio(ratio: int) -> None:
    """A segmentation run's --mask-ratio: the masks' side must divide the images' (a multiple of 32)."""
    if ratio < 1 or 32 % ratio:
        raise FastloadError(f"--mask-ratio {ratio}: the masks' side must divide the images' (1, 2, 4, 8, 16 or 32)")


def crop_mask(masks: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """YOLOv5's crop_mask: [n, h, w] masks zeroed outside their [n, 4] xyxy boxes (mask pixels; x1 <= x < x2)."""
    n, h, w = masks.shape
    x1, y1, x2, y2 = torch.chunk(boxes[:, :, None], 4, 1)
    r = torch.arange(w, device=masks.device, dtype=x1.dtype)[None, None, :]
    c = torch.arange(h, device=masks.device, dtype=x1.dtype)[None, :, None]
    return masks * ((r >= x1) * (r < x2) * (c >= y1) * (c < y2))


def process_mask(proto: torch.Tensor, coefficients: torch.Tensor, boxes: torch.Tensor, shape) -> torch.Tensor:
    """YOLOv5's process_mask (validation's, no upsampling): one image's prototypes [nm, h, w], its n detections'
    coefficients [n, nm] and xyxy boxes [n, 4] in input pixels of `shape` (H, W) -> bool masks [n, h, w], each cut
    to its box (scaled to the prototypes' size) and > 0.5 after the sigmoid."""
    c, mh, mw = proto.shape
    masks = (coefficients.float() @ proto.float().view(c, -1)).sigmoid().view(-1, mh, mw)
    scale = torch.tensor([mw / shape[1], mh / shape[0], mw / shape[1], mh / shape[0]], device=boxes.device)
    return crop_mask(masks, boxes.float() * scale) > 0.5


def mask_iou(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """YOLOv5's mask_iou: masks [n, h, w] and [m, h, w] (0/1 or bool) -> IoU [n, m]."""
    a, b = a.flatten(1).float(), b.flatten(1).float()
    inter = (a @ b.T).clamp(0)
    return inter / (a.sum(1)[:, None] + b.sum(1)[None] - inter + eps)


def prediction_overlap(proto: torch.Tensor, detections: list[torch.Tensor], shape, conf: float = 0.25) -> torch.Tensor:
    """A batch's detections' masks as the loaders' overlap masks, to draw (`batch_grid(masks=)`): per image [h, w]
    at the prototypes' size, value k + 1 where its k-th detection's mask is (those of confidence >= `conf` only, as
    YOLOv5's plots; the first, most confident, on top). `proto` [N, nm, h, w]; detections [k, 6 + nm] in input pixels
    of `shape` (H, W)."""
    out = torch.zeros((len(detections), *proto.shape[-2:]), dtype=torch.int32, device=proto.device)
    for j, det in enumerate(detections):
        masks = process_mask(proto[j], det[:, 6:], det[:, :4], shape)
        for k in reversed(torch.nonzero(det[:, 4] >= conf).flatten().tolist()):
            out[j][masks[k]] = k + 1
    return out


def target_masks(overlap: torch.Tensor, count: int) -> torch.Tensor:
    """An image's overlap mask [h, w] (value k + 1: its k-th target) -> its `count` targets' masks [count, h, w]."""
    index = torch.arange(1, count + 1, device=overlap.device).view(-1, 1, 1)
    return overlap[None] == index


@dataclass
class BoxMask:
    """One detection's mask at the original image's resolution, kept within its box (what is outside is 0):
    `pixels` [h, w] bool, its top-left pixel at column `x`, row `y` of the image."""

    x: int
    y: int
    pixels: np.ndarray

    def dense(self, size) -> np.ndarray:
        """The mask over the whole image of `size` (H, W): bool [H, W]."""
        out = np.zeros((int(size[0]), int(size[1])), bool)
        h, w = self.pixels.shape
        out[self.y : self.y + h, self.x : self.x + w] = self.pixels
        return out

    def polygon(self) -> np.ndarray:
        """Its outline as a polygon [n, 2] (x, y) in image pixels (0 at the image's left and top edges): the
        largest region's, traced along its pixels' edges (marching squares at 0.5, collinear points dropped; YOLOv5's
        masks2segments keeps the longest of cv2's contours). An empty mask: its box's corners."""
        h, w = self.pixels.shape
        if not self.pixels.any():
            x0, y0, x1, y1 = self.x, self.y, self.x + w, self.y + h
            return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float64)
        lines = contour_generator(z=np.pad(self.pixels, 1).astype(np.float32), line_type=LineType.Separate).lines(0.5)
        line = max(lines, key=lambda p: abs(shoelace(p)))
        line = line[:-1] if len(line) > 1 and (line[0] == line[-1]).all() else line  # closed: the first point again
        (ax, ay), (bx, by) = (line - np.roll(line, 1, 0)).T, (np.roll(line, -1, 0) - line).T
        turn = ax * by - ay * bx  # zero where a point is on the line through its neighbours
        line = line[np.abs(turn) > 1e-9] if (np.abs(turn) > 1e-9).sum() >= 3 else line
        return line + (self.x - 0.5, self.y - 0.5)  # padded index -> pixel centre (x + 0.5) in the image


def union_mask(masks: list[BoxMask]) -> BoxMask:
    """The masks of one object's parts (sliced inference's merged detections) as one: their pixels together over the
    rectangle holding them all."""
    if len(masks) == 1:
        return masks[0]
    x0, y0 = min(m.x for m in masks), min(m.y for m in masks)
    x1, y1 = max(m.x + m.pixels.shape[1] for m in masks), max(m.y + m.pixels.shape[0] for m in masks)
    out = np.zeros((y1 - y0, x1 - x0), bool)
    for m in masks:
        h, w = m.pixels.shape
        out[m.y - y0 : m.y - y0 + h, m.x - x0 : m.x - x0 + w] |= m.pixels
    return BoxMask(x0, y0, out)


def box_mask_iou(a: list[BoxMask], b: list[BoxMask]) -> np.ndarray:
    """The IoU [len(a), len(b)] of each mask of `a` with each of `b`, at their pixels' resolution, counted only
    where their rectangles meet (sliced validation's masks: at the original's resolution, not the prototypes')."""
    out = np.zeros((len(a), len(b)))
    if not len(a) or not len(b):
        return out
    rect = [np.array([[m.x, m.y, m.x + m.pixels.shape[1], m.y + m.pixels.shape[0]] for m in ms]) for ms in (a, b)]
    area = [np.array([int(m.pixels.sum()) for m in ms]) for ms in (a, b)]
    lo, hi = (
        np.maximum(rect[0][:, None, :2], rect[1][None, :, :2]),
        np.minimum(rect[0][:, None, 2:], rect[1][None, :, 2:]),
    )
    for i, j in zip(*np.nonzero((hi > lo).all(-1)), strict=True):
        (x0, y0), (x1, y1) = lo[i, j], hi[i, j]
        p, q = a[i], b[j]
        both = int(
            (
                p.pixels[y0 - p.y : y1 - p.y, x0 - p.x : x1 - p.x] & q.pixels[y0 - q.y : y1 - q.y, x0 - q.x : x1 - q.x]
            ).sum()
        )
        out[i, j] = both / max(area[0][i] + area[1][j] - both, 1)
    return out


def shoelace(points: np.ndarray) -> float:
    """A polygon's signed area."""
    x, y = points[:, 0], points[:, 1]
    return float(x @ np.roll(y, -1) - y @ np.roll(x, -1)) / 2


SMALL_BOX = 64  # boxes up to this side are sampled NATIVE_BATCH at a time (a call each costs more than them)
NATIVE_BATCH = 256


def native_masks(proto: torch.Tensor, coefficients: torch.Tensor, boxes, shape, orig_size, ratio, pad) -> list[BoxMask]:
    """YOLOv5's process_mask_native (its --retina-masks): one image's detections' masks at the original
    resolution. `proto` [nm, h, w] and `coefficients` [n, nm] as process_mask's, `boxes` [n, 4] xyxy in original
    pixels, the input's `shape` (H, W), the image's `orig_size` (h0, w0) and how it was letterboxed (`ratio` (rh,
    rw), `pad` (top, left)). Each mask's sigmoid is sampled bilinearly at its box's pixel centres (one resampling
    where YOLOv5 resizes twice: to the input, then to the original: grid_sample's bilinear with border padding), cut
    to the pixels x1 <= x < x2, > 0.5. Small boxes go through grid_sample together (by size, NATIVE_BATCH at a time,
    each grid as large as the largest box's), larger ones one by one."""
    c, mh, mw = proto.shape
    masks = (coefficients.float() @ proto.float().view(c, -1)).sigmoid().view(-1, 1, mh, mw)
    H, W = (float(v) for v in shape)
    h0, w0 = (int(v) for v in orig_size)
    corners = []
    for x1, y1, x2, y2 in np.asarray(boxes, np.float64).reshape(-1, 4).tolist():
        c0, c1 = max(math.ceil(x1), 0), min(math.ceil(x2), w0)
        r0, r1 = max(math.ceil(y1), 0), min(math.ceil(y2), h0)
        corners.append((c0, r0, max(c1 - c0, 0), max(r1 - r0, 0)))
    table = np.array(corners, np.int64).reshape(-1, 4)
    pixels: list[np.ndarray | None] = [None] * len(table)
    dev = masks.device
    cols = (((torch.arange(w0, device=dev) + 0.5) * float(ratio[1]) + float(pad[1])) * 2 / W - 1).float()
    rows = (((torch.arange(h0, device=dev) + 0.5) * float(ratio[0]) + float(pad[0])) * 2 / H - 1).float()
    small = (table[:, 2] <= SMALL_BOX) & (table[:, 3] <= SMALL_BOX) & (table[:, 2] * table[:, 3] > 0)
    order = np.flatnonzero(small)[np.argsort((table[small, 2] * table[small, 3]), kind="stable")].tolist()
    for first in range(0, len(order), NATIVE_BATCH):  # small boxes by size, together, each grid as the largest's
        part = order[first : first + NATIVE_BATCH]
        bw, bh = int(table[part, 2].max()), int(table[part, 3].max())
        x = torch.from_numpy(table[part, :1] + np.arange(bw)).to(dev).clamp(max=w0 - 1)  # (past its box: cut off)
        y = torch.from_numpy(table[part, 1:2] + np.arange(bh)).to(dev).clamp(max=h0 - 1)
        grid = torch.stack([cols[x][:, None, :].expand(-1, bh, -1), rows[y][:, :, None].expand(-1, -1, bw)], -1)
        chunk = (F.grid_sample(masks[part], grid, mode="bilinear", padding_mode="border", align_corners=False)[:, 0]
                 > 0.5).cpu().numpy()  # fmt: skip
        for j, k in enumerate(part):
            pixels[k] = chunk[j, : table[k, 3], : table[k, 2]]
    large = np.flatnonzero(~small & (table[:, 2] * table[:, 3] > 0)).tolist()
    found = []
    for k in large:  # one by one: its pixels outweigh the call
        c0, r0, w, h = table[k].tolist()
        grid = torch.stack([cols[c0 : c0 + w][None, :].expand(h, -1), rows[r0 : r0 + h][:, None].expand(-1, w)], -1)
        sampled = F.grid_sample(masks[k : k + 1], grid[None], mode="bilinear", padding_mode="border",
                                align_corners=False)  # fmt: skip
        found.append((sampled[0, 0] > 0.5).flatten())
    flat, at = torch.cat(found).cpu().numpy() if found else np.zeros(0, bool), 0  # one copy to the host
    for k in large:
        w, h = table[k, 2:].tolist()
        pixels[k], at = flat[at : at + w * h].reshape(h, w), at + w * h
    return [BoxMask(c0, r0, np.zeros((h, w), bool) if p is None else p)
            for (c0, r0, w, h), p in zip(corners, pixels, strict=True)]  # fmt: skip


def reference_native_masks(proto: torch.Tensor, coefficients: torch.Tensor, boxes, shape, orig_size, ratio, pad,
                           sigmoid: bool = False) -> list[BoxMask]:  # fmt: skip
    """native_masks box by box with torch's grid_sample (its first version; benchmarks/native_masks.py): the
    reference it is tested against. With `sigmoid`, each BoxMask's pixels are the sampled values, not > 0.5."""
    c, mh, mw = proto.shape
    masks = (coefficients.float() @ proto.float().view(c, -1)).sigmoid().view(-1, 1, mh, mw)
    H, W = (float(v) for v in shape)
    h0, w0 = (int(v) for v in orig_size)
    out = []
    for k, (x1, y1, x2, y2) in enumerate(np.asarray(boxes, np.float64).reshape(-1, 4).tolist()):
        c0, c1 = max(math.ceil(x1), 0), min(math.ceil(x2), w0)
        r0, r1 = max(math.ceil(y1), 0), min(math.ceil(y2), h0)
        if c1 <= c0 or r1 <= r0:
            out.append(BoxMask(c0, r0, np.zeros((max(r1 - r0, 0), max(c1 - c0, 0)), np.float32 if sigmoid else bool)))
            continue
        xs = ((torch.arange(c0, c1, device=masks.device) + 0.5) * float(ratio[1]) + float(pad[1])) * 2 / W - 1
        ys = ((torch.arange(r0, r1, device=masks.device) + 0.5) * float(ratio[0]) + float(pad[0])) * 2 / H - 1
        grid = torch.stack([xs[None, :].expand(len(ys), -1), ys[:, None].expand(-1, len(xs))], -1)[None].float()
        sampled = F.grid_sample(masks[k : k + 1], grid, mode="bilinear", padding_mode="border", align_corners=False)
        out.append(BoxMask(c0, r0, sampled[0, 0].cpu().numpy() if sigmoid else (sampled[0, 0] > 0.5).cpu().numpy()))
    return out


def batch_native_masks(proto: torch.Tensor, detections, original, b, shape) -> list[list[BoxMask]]:
    """`native_masks` for each image of a loader batch `b` (its orig_size, ratio, pad): `proto` [N, nm, h, w], the
    NMS detections [k, 6 + nm] in input pixels of `shape` (H, W) and the same boxes in original pixels [k, 6]."""
    return [native_masks(proto[j], det[:, 6:], orig[:, :4], shape, b.orig_size[j], b.ratio[j], b.pad[j])
            for j, (det, orig) in enumerate(zip(detections, original, strict=True))]  # fmt: skip


def polygon_lines(det: np.ndarray, masks: list[BoxMask], size, save_conf: bool) -> str:
    """Detections [k, 6] and their masks in an image of `size` (h, w) as YOLO segment label lines: cls x1 y1 x2 y2
    ... normalised (then the confidence), as YOLOv5's segment/predict.py --save-txt."""
    h, w = (float(v) for v in size)
    lines = []
    for d, mask in zip(det, masks, strict=True):
        points = (mask.polygon() / (w, h)).clip(0, 1).reshape(-1).tolist()
        row = points + ([d[4]] if save_conf else [])
        lines.append(" ".join([str(int(d[5]))] + [f"{v:.6g}" for v in row]))
    return "".join(line + "\n" for line in lines)
