"""The built-in synthetic detection dataset: photo-like JPEGs of circles, rectangles and triangles with
exact boxes, in the YOLO layout. Deterministic per seed (each image draws from its own seeded generator). With
`classify`, one large shape per picture in class folders: a classification dataset.

    fastload demo-data runs/demo-data --images 500 --seed 0
    fastload demo-data runs/shapes-cls --images 500 --classify
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass

import numpy as np
import yaml
from PIL import Image, ImageDraw

from fastload.pool import ordered_map
from fastload.store.tempfiles import write_atomic

NAMES = ["circle", "rectangle", "triangle"]


@dataclass(frozen=True)
class DemoConfig:
    images: int = 500
    seed: int = 0
    val_fraction: float = 0.2
    scale: float = 1.0  # image size multiplier (tests use ~0.25 for 160x120 images)
    quality: int = 90
    polygons: bool = False  # label rows as the shapes' polygons (cls x1 y1 x2 y2 ...; a circle's 32 points)
    classify: bool = False  # one large shape per image, in class folders <split>/<class>/ (a classification dataset)


def _image_size(rng: np.random.Generator, scale: float) -> tuple[int, int]:
    """(w, h): mostly around 640x480, some portrait, some large."""
    kind = rng.random()
    w, h = int(rng.integers(560, 721)), int(rng.integers(400, 521))
    if kind < 0.2:
        w, h = h, w
    elif kind > 0.9:
        w, h = w * 2, h * 2
    return max(32, round(w * scale)), max(32, round(h * scale))


def _background(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """Smooth colour field + oriented texture + sensor noise, as float32 HxWx3."""
    grid = rng.integers(30, 226, size=(3, 4, 3), dtype=np.uint8)
    field = np.asarray(Image.fromarray(grid, "RGB").resize((w, h), Image.Resampling.BICUBIC), np.float32)
    angle, period = rng.uniform(0, np.pi), rng.uniform(6, 40)
    k = np.float32(2 * np.pi / period)
    xx = np.arange(w, dtype=np.float32)[None, :] * (k * np.float32(np.cos(angle)))
    yy = np.arange(h, dtype=np.float32)[:, None] * (k * np.float32(np.sin(angle)))
    field += (np.sin(xx + yy) * np.float32(rng.uniform(3, 12)))[..., None]
    return field


def _shape_polygon(rng: np.random.Generator, cls: int, cx: float, cy: float, r: float) -> list[tuple]:
    if cls == 1:  # rectangle, any aspect in [0.5, 2], rotated
        a, b = r, r * rng.uniform(0.5, 1.0)
        pts = np.array([[-a, -b], [a, -b], [a, b], [-a, b]])
    else:  # triangle
        angles = rng.uniform(0, 2 * np.pi) + np.array([0, 2 * np.pi / 3, 4 * np.pi / 3])
        angles += rng.uniform(-0.3, 0.3, 3)
        pts = np.stack([np.cos(angles), np.sin(angles)], 1) * r
    theta = rng.uniform(0, np.pi) if cls == 1 else 0.0
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    pts = pts @ rot.T + [cx, cy]
    return [(float(x), float(y)) for x, y in pts]


def render_image(index: int, cfg: DemoConfig) -> tuple[bytes, np.ndarray]:
    """One JPEG and its YOLO rows (cls, cx, cy, w, h), boxes exactly enclosing each drawn shape."""
    data, rows, _ = render_labelled(index, cfg)
    return data, rows


def _ellipse(x0: float, y0: float, x1: float, y1: float, points: int = 32) -> list[tuple]:
    """A polygon of `points` on the ellipse inscribed in the pixel box [x0, x1] x [y0, y1], as PIL draws it."""
    a = np.linspace(0, 2 * np.pi, points, endpoint=False)
    cx, cy, rx, ry = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2
    return [(float(x), float(y)) for x, y in zip(cx + rx * np.cos(a), cy + ry * np.sin(a), strict=True)]


def render_labelled(index: int, cfg: DemoConfig) -> tuple[bytes, np.ndarray, list[np.ndarray]]:
    """render_image's JPEG and rows, and each shape's polygon (float64 [k, 2] of x, y normalised to [0, 1])."""
    rng = np.random.default_rng([cfg.seed, index])
    w, h = _image_size(rng, cfg.scale)
    canvas = Image.fromarray(np.clip(_background(rng, w, h), 0, 255).astype(np.uint8), "RGB")
    placed: list[tuple[int, int, int, int]] = []  # boxes as [x0, x1) x [y0, y1) pixel ranges
    rows, polygons = [], []
    shapes = int(rng.integers(1, 11))
    for _ in range(1 if cfg.classify else shapes):
        for _attempt in range(30):
            cls = int(rng.integers(0, len(NAMES)))
            r = max(6.0, rng.uniform(*((0.15, 0.4) if cfg.classify else (0.04, 0.16))) * min(w, h))
            cx, cy = rng.uniform(r, w - r), rng.uniform(r, h - r)
            if cls == 0:
                ry = r * rng.uniform(0.8, 1.0)
                pts = [(cx - r, cy - ry), (cx + r, cy + ry)]
            else:
                pts = _shape_polygon(rng, cls, cx, cy, r)
            # Draw the shape into a small mask around it: the box is the mask's exact pixel extent.
            ox, oy = max(0, int(min(p[0] for p in pts)) - 2), max(0, int(min(p[1] for p in pts)) - 2)
            ex, ey = min(w, int(max(p[0] for p in pts)) + 3), min(h, int(max(p[1] for p in pts)) + 3)
            if any(ox <= b[2] + 2 and b[0] <= ex + 2 and oy <= b[3] + 2 and b[1] <= ey + 2 for b in placed):
                continue  # shapes never overlap, so every box is exact
            mask = Image.new("L", (ex - ox, ey - oy), 0)
            local = [(x - ox, y - oy) for x, y in pts]
            if cls == 0:
                ImageDraw.Draw(mask).ellipse([round(v) for p in local for v in p], fill=255)
                pts = _ellipse(*(round(v) for p in pts for v in p))
            else:
                ImageDraw.Draw(mask).polygon(local, fill=255)
            bbox = mask.getbbox()
            if bbox is None or bbox[2] - bbox[0] < 4 or bbox[3] - bbox[1] < 4:
                continue
            box = (bbox[0] + ox, bbox[1] + oy, bbox[2] + ox, bbox[3] + oy)  # [x0, x1) x [y0, y1)
            x0, y0, x1, y1 = box
            bg = np.asarray(canvas.crop(box), np.float32).mean((0, 1))
            colour = rng.integers(0, 256, 3)
            while np.abs(colour - bg).sum() < 150:
                colour = rng.integers(0, 256, 3)
            canvas.paste(tuple(int(c) for c in colour), (ox, oy), mask)
            placed.append(box)
            rows.append([cls, (x0 + x1) / 2 / w, (y0 + y1) / 2 / h, (x1 - x0) / w, (y1 - y0) / h])
            polygons.append(np.clip(np.asarray(pts, np.float64) / [w, h], 0, 1))
            break
    pixels = rng.standard_normal((h, w, 3), dtype=np.float32)
    pixels *= np.float32(rng.uniform(2, 8))
    pixels += np.asarray(canvas, np.float32)
    out = io.BytesIO()
    subsampling = 0 if cfg.quality >= 95 else 2  # 4:4:4 keeps colour edges exact when asked for quality
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB").save(
        out, "JPEG", quality=cfg.quality, subsampling=subsampling
    )
    return out.getvalue(), np.asarray(rows, np.float64).reshape(-1, 5), polygons


def _write_one(args: tuple[int, DemoConfig, str, str]) -> None:
    index, cfg, out, split = args
    data, rows, polygons = render_labelled(index, cfg)
    name = f"{index:06d}"
    if cfg.classify:  # ImageNet's layout: the class is the folder
        write_atomic(os.path.join(out, split, NAMES[int(rows[0, 0])], name + ".jpg"), data)
        return
    write_atomic(os.path.join(out, "images", split, name + ".jpg"), data)
    if cfg.polygons:
        text = "".join(
            f"{int(r[0])} " + " ".join(f"{v:.6f}" for v in p.ravel()) + "\n"
            for r, p in zip(rows, polygons, strict=True)
        )
    else:
        text = "".join(f"{int(r[0])} {r[1]:.6f} {r[2]:.6f} {r[3]:.6f} {r[4]:.6f}\n" for r in rows)
    write_atomic(os.path.join(out, "labels", split, name + ".txt"), text.encode())


def generate(out: str, cfg: DemoConfig, workers: int = 1, progress=None) -> dict:
    """Write the dataset to `out` (YOLO layout + data.yaml); returns a summary."""
    n_val = int(round(cfg.images * cfg.val_fraction)) if cfg.images > 1 else 0
    jobs = [(i, cfg, out, "val" if i >= cfg.images - n_val else "train") for i in range(cfg.images)]
    folders = [(split, name) for split in ("train", "val") for name in NAMES] if cfg.classify else [
        (kind, split) for split in ("train", "val") for kind in ("images", "labels")]  # fmt: skip
    for folder in folders:
        os.makedirs(os.path.join(out, *folder), exist_ok=True)
    for _ in ordered_map(_write_one, jobs, workers, batch=8):
        progress and progress()
    if cfg.classify:
        return {"path": os.path.abspath(out), "images": cfg.images, "train": cfg.images - n_val, "val": n_val,
                "seed": cfg.seed, "names": NAMES, "task": "classify"}  # fmt: skip
    data = {
        "path": os.path.abspath(out),
        "train": "images/train",
        "val": "images/val",
        "nc": len(NAMES),
        "names": NAMES,
    }
    write_atomic(os.path.join(out, "data.yaml"), yaml.safe_dump(data, sort_keys=False).encode())
    return {
        "path": os.path.abspath(out),
        "images": cfg.images,
        "train": cfg.images - n_val,
        "val": n_val,
        "seed": cfg.seed,
        "names": NAMES,
    }
