"""Images already decoded (H x W x 3 uint8 RGB arrays) letterboxed into one batch with torch on the device, each
placed as the validation loader places a file of its size: what video frames and yolo.predictor's Detector run on.

    shape = batch_shape([(720, 1280), (480, 640)], imgsz=640, stride=32)   # (384, 640): around both letterboxes
    b = letterbox_arrays([frame, photo], 640, shape, "cuda")               # Batch: images, orig_size, ratio, pad
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from fastload.loader.batch import Batch
from fastload.loader.geometry import letterbox, rect_batch_shapes
from fastload.loader.pipelines import FILL


def batch_shape(sizes, imgsz: int, stride: int = 32, square: bool = False) -> tuple[int, int]:
    """The (H, W) of a batch of images of `sizes` [(h, w)]: the smallest multiple of the stride around each one's
    letterbox (YOLOv5 detect.py's auto letterbox), or imgsz x imgsz with `square` (a model exported for one shape)."""
    if square:
        return imgsz, imgsz
    sizes = np.asarray(sizes, np.float64).reshape(-1, 2)
    return rect_batch_shapes(sizes, imgsz, len(sizes), stride, pad=0.0)[1][0]


def letterbox_arrays(
    images: list[np.ndarray | torch.Tensor], imgsz: int, shape: tuple[int, int], device: str = "cpu", first: int = 0
) -> Batch:
    """One batch of `images` (H x W x 3 uint8 arrays, or tensors: sliced inference's tiles, on the device already)
    in a canvas of `shape` filled with YOLOv5's grey, each resized bilinearly without smoothing (detect.py's
    cv2.INTER_LINEAR) to its letterbox for `imgsz`; indices count from `first`."""
    n, sizes = len(images), np.array([tuple(im.shape[:2]) for im in images], np.int64).reshape(-1, 2)
    canvas = torch.full((n, 3, *shape), FILL, dtype=torch.uint8, device=device)
    ratio, pad = np.zeros((n, 2)), np.zeros((n, 2), np.int64)
    for size in {tuple(s) for s in sizes.tolist()}:  # same-sized images (a video's frames) resized together
        js = [j for j in range(n) if tuple(sizes[j]) == size]
        p = letterbox(*size, imgsz, shape)
        group = [images[j] for j in js]
        x = torch.stack(group) if isinstance(group[0], torch.Tensor) else torch.from_numpy(np.stack(group))
        x = x.to(device).permute(0, 3, 1, 2).float()
        if (p.nh, p.nw) != size:
            x = F.interpolate(x, size=(p.nh, p.nw), mode="bilinear", align_corners=False, antialias=False)
        canvas[js, :, p.top : p.top + p.nh, p.left : p.left + p.nw] = x.round().clamp_(0, 255).to(torch.uint8)
        ratio[js], pad[js] = p.ratio(*size), (p.top, p.left)
    empty = torch.zeros((0, 6), device=device)
    return Batch(canvas, empty, np.arange(first, first + n), sizes, ratio, pad)


def frames_batch(frames: list[np.ndarray], device: str = "cpu", first: int = 0) -> Batch:
    """A batch of decoded frames that sliced inference cuts into tiles itself (`detect --tile`): their indices and
    sizes, and no images (letterboxing the whole frames would be work thrown away)."""
    sizes = np.array([tuple(f.shape[:2]) for f in frames], np.int64).reshape(-1, 2)
    empty = torch.zeros((0, 6), device=device)
    return Batch(torch.zeros((0, 3, 0, 0), dtype=torch.uint8), empty, np.arange(first, first + len(frames)), sizes)
