"""AutoBatch (`--batch auto`): the batch that fills a fraction of the GPU's free memory, probed at the largest
image the run will see (1.5x imgsz rounded up to the stride with multi-scale, where YOLOv5 probes only imgsz)."""

from __future__ import annotations

import copy

import numpy as np
import torch

from yolo.loss import ComputeLoss, SegmentLoss
from yolo.model import is_segment

DEFAULT = 16
PROBES = (1, 2, 4, 8, 16)


def largest_size(imgsz: int, multi_scale: bool, stride: int = 32) -> int:
    """The largest square side a batch can have: multi-scale draws up to int(1.5 imgsz) rounded down to the stride
    after adding one stride (fastload.loader.augment.multi_scale_size)."""
    return (int(imgsz * 1.5) + stride - 1) // stride * stride if multi_scale else imgsz


def autobatch(model: torch.nn.Module, imgsz: int, multi_scale: bool, fraction: float = 0.8) -> tuple[int, str]:
    """(batch, message). On CUDA: training-step memory (forward + backward under AMP, channels-last) at the largest
    size for 1, 2, 4, 8, 16 images, a line through it, and the batch that uses `fraction` of the free memory."""
    device = next(model.parameters()).device
    if device.type != "cuda":
        return DEFAULT, f"AutoBatch needs a CUDA device; using batch {DEFAULT} on {device.type}"
    size = largest_size(imgsz, multi_scale, model.grid_size)
    probe = copy.deepcopy(model).train()
    segment = is_segment(probe)
    loss_fn = (SegmentLoss if segment else ComputeLoss)(probe.detect, imgsz)
    free, total = torch.cuda.mem_get_info(device)
    used = []
    for b in PROBES:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        x = torch.rand(b, 3, size, size, device=device).contiguous(memory_format=torch.channels_last)
        targets = torch.tensor([[i, 0, 0.5, 0.5, 0.2, 0.2] for i in range(b)], device=device)
        masks = torch.ones(b, size // 4, size // 4, dtype=torch.uint8, device=device) if segment else None
        with torch.autocast("cuda"):
            loss, _ = loss_fn(probe(x), targets, masks=masks)
        loss.backward()
        probe.zero_grad(set_to_none=True)
        used.append(torch.cuda.max_memory_allocated(device) - base)
        del x, loss
    slope, intercept = np.polyfit(PROBES, used, 1)
    batch = int(max(1, (free * fraction - intercept) / slope))
    del probe
    torch.cuda.empty_cache()
    return batch, (
        f"AutoBatch: batch {batch} at {size} px uses ~{(intercept + slope * batch) / 2**30:.1f} of "
        f"{free / 2**30:.1f} GiB free ({fraction:.0%} target, {total / 2**30:.0f} GiB total)"
    )
