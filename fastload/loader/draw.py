"""A batch drawn as the model receives it: its images in a grid with their boxes and class names, to check the
augmentation and the labels by eye (`fastload preview`, the trainer's train_batch*.jpg, as YOLOv5's plot_images).

    batch_grid(b.images, b.targets, store.names).save("batch.jpg")
"""

from __future__ import annotations

import math
import os
import threading

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

# YOLOv5's 20 class colours (utils/plots.py Colors), so a class looks the same in both tools' pictures
PALETTE = [tuple(int(h[i : i + 2], 16) for i in (0, 2, 4)) for h in (
    "FF3838 FF9D97 FF701F FFB21D CFD231 48F90A 92CC17 3DDB86 1A9334 00D4BB "
    "2C99A8 00C2FF 344593 6473FF 0018EC 8438FF 520085 CB38FF FF95C8 FF37C7").split()]  # fmt: skip


def class_colour(cls: int) -> tuple[int, int, int]:
    return PALETTE[int(cls) % len(PALETTE)]


def batch_grid(
    images: torch.Tensor | np.ndarray,
    targets: torch.Tensor | np.ndarray,
    names: list[str],
    titles: list[str] | None = None,
    max_images: int = 16,
    max_size: int = 1920,
    conf: float = 0.25,
    masks: torch.Tensor | np.ndarray | None = None,
) -> Image.Image:
    """The first `max_images` images (N x 3 x H x W, uint8 or float in [0, 1]) in a near-square grid, scaled down
    so that its long side is at most `max_size`, with the boxes of `targets` (rows `image, cls, cx, cy, w, h`
    normalised to H, W, as the loaders yield them). A seventh column is a confidence: those rows are predictions,
    drawn with it when it is at least `conf`. `titles` (e.g. the source paths) go in each tile's corner. `masks`:
    the batch's overlap masks (N x H/r x W/r, value k + 1: the image's k-th target), each target's tinted in its
    class's colour at half strength, as YOLOv5 plots a segmentation batch."""
    images = torch.as_tensor(images)[:max_images].detach().cpu()
    if images.is_floating_point():
        images = (images * 255).round().clamp(0, 255)
    images = images.to(torch.uint8).permute(0, 2, 3, 1).numpy()  # N x H x W x 3
    rows = torch.as_tensor(targets).detach().cpu().double().numpy()
    if masks is not None:
        images = tinted(images, rows, torch.as_tensor(masks)[: len(images)].detach().cpu().numpy())
    n, h, w = images.shape[:3]
    cols = math.ceil(math.sqrt(n))
    scale = min(1.0, max_size / (cols * max(h, w)))
    th, tw = math.ceil(h * scale), math.ceil(w * scale)
    grid = Image.new("RGB", (cols * tw, math.ceil(n / cols) * th), (255, 255, 255))
    draw = ImageDraw.Draw(grid)
    line, font = pen(grid)
    corners = [((j % cols) * tw, (j // cols) * th) for j in range(n)]
    for j, (x0, y0) in enumerate(corners):
        tile = Image.fromarray(images[j])
        grid.paste(tile if scale == 1 else tile.resize((tw, th), Image.BILINEAR), (x0, y0))
        draw.rectangle((x0, y0, x0 + tw - 1, y0 + th - 1), outline=(255, 255, 255), width=line)
    for j, (x0, y0) in enumerate(corners):  # after all tiles: a label may reach into a neighbour
        if titles is not None:
            draw.text((x0 + line + 2, y0 + line + 2), os.path.basename(titles[j])[:40], fill=(220, 220, 220), font=font)
        for r in rows[rows[:, 0] == j]:
            if len(r) > 6 and r[6] < conf:
                continue
            cx, cy, bw, bh = r[2] * tw, r[3] * th, r[4] * tw, r[5] * th
            box = (x0 + cx - bw / 2, y0 + cy - bh / 2, x0 + cx + bw / 2, y0 + cy + bh / 2)
            draw_box(draw, box, int(r[1]), names, r[6] if len(r) > 6 else None, line, font, top=y0)
    return grid


def tinted(images: np.ndarray, rows: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Images (N x H x W x 3 uint8) with each target's pixels in its overlap mask (nearest-upsampled to the image)
    blended half and half with its class's colour."""
    out = images.copy()
    n, h, w = images.shape[:3]
    ys = np.arange(h) * masks.shape[1] // h
    xs = np.arange(w) * masks.shape[2] // w
    for j in range(n):
        big = masks[j][ys][:, xs]
        for k, cls in enumerate(rows[rows[:, 0] == j][:, 1].tolist()):
            where = big == k + 1
            out[j][where] = half_tint(out[j][where], cls)
    return out


def painted(image: np.ndarray, masks: list, classes) -> np.ndarray:
    """A copy of `image` (H x W x 3 uint8) with each mask's pixels (`x`, `y`, `pixels`: its top-left corner and
    bool [h, w]) blended half and half with its class's colour, the last first: the first ends on top."""
    out = image.copy()
    for mask, cls in reversed(list(zip(masks, classes, strict=True))):
        h, w = mask.pixels.shape
        region = out[mask.y : mask.y + h, mask.x : mask.x + w]
        region[mask.pixels] = half_tint(region[mask.pixels], cls)
    return out


def half_tint(pixels: np.ndarray, cls) -> np.ndarray:
    """Pixels [n, 3] uint8 blended half and half with class `cls`'s colour (YOLOv5's mask alpha, 0.5)."""
    return (pixels * 0.5 + np.array(class_colour(int(cls))) * 0.5).astype(np.uint8)


def pen(image: Image.Image) -> tuple[int, ImageFont.ImageFont]:
    """YOLOv5's line width and label font size for a picture of this size."""
    side = (image.width + image.height) / 2
    return max(round(side * 0.003), 2), ImageFont.load_default(size=max(round(side * 0.01), 10))


def draw_box(
    draw: ImageDraw.ImageDraw,
    box,
    cls: int,
    names: list[str],
    conf,
    line: int,
    font,
    top: float = 0,
    label=True,
    colour: tuple[int, int, int] | None = None,
    text: str | None = None,
) -> None:
    """One box (x1, y1, x2, y2) in its class's colour (or `colour`) with its name (and confidence; or `text`) on a
    filled label, above the box, or inside it where the label would cross `top`; `label` False: the box alone."""
    colour = colour or class_colour(cls)
    draw.rectangle(box, outline=colour, width=line)
    if not label:
        return
    if text is None:
        text = (names[cls] if cls < len(names) else str(cls)) + (f" {conf:.2f}" if conf is not None else "")
    anchor = "lb" if draw.textbbox(box[:2], text, font=font, anchor="lb")[1] >= top else "lt"
    draw.rectangle(draw.textbbox(box[:2], text, font=font, anchor=anchor), fill=colour)
    draw.text(box[:2], text, fill=(255, 255, 255), font=font, anchor=anchor)


def annotate(
    image: Image.Image,
    detections: np.ndarray,
    names: list[str],
    line: int = 0,
    labels: bool = True,
    confidences: bool = True,
    masks: list | None = None,
) -> Image.Image:
    """`image` with detections [k, 6] (x1, y1, x2, y2, conf, cls in its pixels) drawn on it, as YOLOv5's detect.py:
    lines `line` pixels wide (0: by the picture's size), with labels (class name, and confidence) unless hidden.
    `masks`: the detections' masks (yolo.segment.BoxMask: `x`, `y`, `pixels`), each blended half and half with its
    class's colour under the boxes, the first detection's on top (as YOLOv5's segment/predict.py)."""
    if masks:
        image = Image.fromarray(painted(np.asarray(image.convert("RGB")), masks, np.asarray(detections)[:, 5]))
    draw = ImageDraw.Draw(image)
    width, font = pen(image)
    for x1, y1, x2, y2, conf, cls in np.asarray(detections, np.float64).reshape(-1, 6):
        score = conf if confidences else None
        draw_box(draw, (x1, y1, x2, y2), int(cls), names, score, line or width, font, label=labels)
    return image


def detection_rows(detections: list[torch.Tensor | np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    """Per-image NMS output ([k, 6] x1, y1, x2, y2, conf, cls in the batch's pixels) as [M, 7] rows for
    `batch_grid`: image, cls, cx, cy, w, h normalised to `shape` (H, W), conf."""
    h, w = shape
    out = []
    for j, det in enumerate(detections):
        d = torch.as_tensor(det).detach().cpu().double().numpy()
        d = d.reshape(len(d), -1)[:, :6] if d.size else np.zeros((0, 6))  # a segmentation model's coefficients off
        xyxy = d[:, :4] / [w, h, w, h]
        cxcywh = np.concatenate([(xyxy[:, :2] + xyxy[:, 2:]) / 2, xyxy[:, 2:] - xyxy[:, :2]], axis=1)
        out.append(np.concatenate([np.full((len(d), 1), j), d[:, 5:6], cxcywh, d[:, 4:5]], axis=1))
    return np.concatenate(out) if out else np.zeros((0, 7))


def save_image(image, path: str, quality: int = 90, dpi: int = 100, tight: bool = False) -> None:
    """Write a PIL image or a matplotlib Figure (at `dpi`; `tight`: cut to what is drawn) completely or not at all
    (temporary name, then rename); the format follows the extension."""
    root, ext = os.path.splitext(path)
    tmp = f"{root}.partial-{os.getpid()}-{threading.get_ident()}{ext or '.jpg'}"
    try:
        if isinstance(image, Image.Image):
            image.save(tmp, quality=quality)  # PNG ignores the quality
        else:
            image.savefig(tmp, dpi=dpi, bbox_inches="tight" if tight else None)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def save_batch_in_thread(
    images: torch.Tensor,
    targets: torch.Tensor,
    names: list[str],
    path: str,
    titles: list[str] | None = None,
    masks: torch.Tensor | None = None,
) -> threading.Thread:
    """`batch_grid` saved to `path` in a thread, so a training step waits neither for the drawing nor for the
    copy from the device (made there, on the thread's current stream); join the thread before reading `path`."""
    thread = threading.Thread(
        target=lambda: save_image(batch_grid(images, targets, names, titles, masks=masks), path),
        name="draw",
        daemon=True,
    )
    thread.start()
    return thread
