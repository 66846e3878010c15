"""YOLOv5's autoanchor: the best possible recall (BPR) of the anchors on the dataset's boxes at the training size;
below 0.98, k-means on the box sizes plus a genetic evolution of the result, kept if it fits better."""

from __future__ import annotations

import numpy as np
import torch

THRESHOLD = 4.0  # the loss's anchor_t (hyp): a box matches an anchor whose wh ratio is within 4x


def label_wh(sizes: np.ndarray, labels, imgsz: int, rng: np.random.Generator) -> np.ndarray:
    """Box (w, h) in pixels at the training size (long side imgsz), each image scaled by YOLOv5's random factor
    in [0.9, 1.1]."""
    shapes = imgsz * sizes[:, ::-1] / sizes.max(1, keepdims=True)  # (w, h) of each image at imgsz
    shapes = shapes * rng.uniform(0.9, 1.1, (len(shapes), 1))
    wh = [labels(i)[:, 3:5] * shapes[i] for i in range(len(sizes))]
    wh = np.concatenate(wh) if wh else np.zeros((0, 2))
    return wh[(wh >= 2.0).all(1)]  # YOLOv5 drops boxes under 2 pixels


def fitness(anchors: np.ndarray, wh: np.ndarray, thr: float = THRESHOLD) -> tuple[float, float]:
    """(BPR, mean best-anchor score): per box the best anchor's worst side ratio, counted above 1/thr."""
    with np.errstate(divide="ignore"):  # `anchors: 3` placeholders have a side of 0, as YOLOv5's
        r = wh[:, None] / anchors[None]
    best = np.minimum(r, 1 / r).min(2).max(1)
    return float((best > 1 / thr).mean()), float((best * (best > 1 / thr)).mean())


def kmeans(wh: np.ndarray, k: int, rng: np.random.Generator, iters: int = 30) -> np.ndarray:
    """k-means on whitened (w, h) as scipy.cluster.vq.kmeans in YOLOv5, back in pixels, sorted by area."""
    s = wh.std(0)
    x = wh / s
    centres = x[rng.choice(len(x), k, replace=False)]
    for _ in range(iters):
        nearest = ((x[:, None] - centres[None]) ** 2).sum(2).argmin(1)
        centres = np.stack([x[nearest == j].mean(0) if (nearest == j).any() else centres[j] for j in range(k)])
    centres = centres * s
    return centres[np.argsort(centres.prod(1))]


def evolve(
    anchors: np.ndarray, wh: np.ndarray, rng: np.random.Generator, generations: int = 1000, thr: float = THRESHOLD
) -> np.ndarray:
    """YOLOv5's anchor evolution: multiplicative mutations (p 0.9, sigma 0.1) kept when the fitness improves."""
    best, (_, f) = anchors, fitness(anchors, wh, thr)
    for _ in range(generations):
        v = np.ones_like(best)
        while (v == 1).all():
            v = ((rng.random(best.shape) < 0.9) * rng.random() * rng.standard_normal(best.shape) * 0.1 + 1).clip(0.3, 3)
        candidate = (best * v).clip(min=2.0)
        _, fc = fitness(candidate, wh, thr)
        if fc > f:
            best, f = candidate, fc
    return best[np.argsort(best.prod(1))]


def check_anchors(
    detect: torch.nn.Module,
    sizes: np.ndarray,
    labels,
    imgsz: int,
    seed: int = 0,
    thr: float = THRESHOLD,
    refit: bool = False,
) -> dict:
    """Replace `detect`'s anchors (grid units per level) by k-means + evolved ones when their BPR is under 0.98
    and the new ones fit better, or always with `refit` (a hyp file's `anchors: 3`: YOLOv5 then starts from
    placeholder anchors); returns the BPRs before and after and whether they changed."""
    rng = np.random.default_rng(seed)
    wh = label_wh(sizes, labels, imgsz, rng)
    stride = detect.stride.cpu().numpy()
    pixels = (detect.anchors.cpu().numpy() * stride[:, None, None]).reshape(-1, 2)
    bpr, _ = fitness(pixels, wh, thr) if len(wh) else (1.0, 0.0)
    report = {"bpr": bpr, "bpr_after": bpr, "changed": False, "boxes": len(wh)}
    if (bpr >= 0.98 and not refit) or len(wh) < len(pixels):
        return report
    fresh = evolve(kmeans(wh, len(pixels), rng), wh, rng, thr=thr)
    new_bpr, _ = fitness(fresh, wh, thr)
    if new_bpr > bpr or refit:
        grid = torch.tensor(fresh, dtype=detect.anchors.dtype).view_as(detect.anchors) / detect.stride.cpu().view(
            -1, 1, 1
        )
        detect.anchors.copy_(grid.to(detect.anchors.device))
        report.update(bpr_after=new_bpr, changed=True, anchors=fresh.round(1).tolist())
    return report
