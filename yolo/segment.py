"""Instance masks of YOLOv5's segmentation models (utils/segment/general.py): a detection's mask is the sigmoid of
its coefficients times the image's prototypes, cut to its box; masks compare by their IoU."""

from __future__ import annotations

import torch


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
    return crop_mask(masks, boxes.float() * scale).gt_(0.5)


def mask_iou(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """YOLOv5's mask_iou: masks [n, h, w] and [m, h, w] (0/1 or bool) -> IoU [n, m]."""
    a, b = a.flatten(1).float(), b.flatten(1).float()
    inter = (a @ b.T).clamp(0)
    return inter / (a.sum(1)[:, None] + b.sum(1)[None] - inter + eps)


def target_masks(overlap: torch.Tensor, count: int) -> torch.Tensor:
    """An image's overlap mask [h, w] (value k + 1: its k-th target) -> its `count` targets' masks [count, h, w]."""
    index = torch.arange(1, count + 1, device=overlap.device).view(-1, 1, 1)
    return overlap[None] == index
