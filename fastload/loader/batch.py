"""What the iterators yield, and DALI TensorLists turned into torch tensors on the training device."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from nvidia.dali.backend import TensorListCPU

from fastload.loader.masks import stack_masks, unpack_planes
from fastload.loader.sources import box_rows


@dataclass
class Batch:
    images: torch.Tensor  # N x 3 x H x W, uint8 (or float in [0, 1] on request), on the loader's device
    targets: torch.Tensor  # M x 6 float32: batch_idx, cls, cx, cy, w, h normalised to the batch's H, W
    indices: np.ndarray  # [N] record index of each image (the first tile's record for a mosaic)
    orig_size: np.ndarray | None = None  # validation: [N, 2] original (h, w)
    ratio: np.ndarray | None = None  # validation: [N, 2] (rh, rw), original pixels -> canvas pixels
    pad: np.ndarray | None = None  # validation: [N, 2] (top, left) of the image in the canvas
    assigned: object = None  # training: the loader's `prepare_targets` result, its tensors on the device
    # segmentation: with overlap, N x H/r x W/r, value k + 1: the image's k-th target; without (YOLOv5's
    # --no-overlap), M x H/r x W/r, 0/1: each target's whole mask, in the targets' order
    masks: torch.Tensor | None = None
    overlap: bool = True

    def overlap_masks(self) -> torch.Tensor | None:
        """The masks as overlap masks (N x H/r x W/r, value k + 1: the image's k-th target), to draw: as they are,
        or (without overlap) each target's painted into its image's largest first, so the smaller shows on top."""
        if self.masks is None or self.overlap:
            return self.masks
        out = torch.zeros((len(self.images), *self.masks.shape[-2:]), dtype=torch.int32, device=self.masks.device)
        image = self.targets[:, 0].long().cpu().numpy()
        index = places_in_images(image, len(self.images))
        order = torch.argsort(-self.masks.flatten(1).sum(1), stable=True).cpu().numpy()
        for m, j, k in zip(order.tolist(), image[order].tolist(), index[order].tolist(), strict=True):
            out[j][self.masks[m] > 0] = k + 1
        return out

    def tensors(self):
        """The batch's tensors on the device (the images, the targets, those in `assigned`)."""
        yield self.images
        yield self.targets
        yield from tensors_in(self.assigned)
        if self.masks is not None:
            yield self.masks


def tensors_in(tree):
    """The tensors in nested tuples and lists."""
    if isinstance(tree, torch.Tensor):
        yield tree
    elif isinstance(tree, list | tuple):
        for t in tree:
            yield from tensors_in(t)


def to_device(tree, device: str):
    """Nested tuples and lists with their tensors moved to `device`; anything else kept as it is."""
    if isinstance(tree, torch.Tensor):
        return tree.to(device)
    if isinstance(tree, list | tuple):
        return type(tree)(to_device(t, device) for t in tree)
    return tree


def targets_tensor(per_image: list[np.ndarray], device: str) -> torch.Tensor:
    """Per-image [k, 5] rows -> one [M, 6] tensor with the image's position in the batch first."""
    return batch_targets(box_rows(per_image), device)


def batch_targets(rows: np.ndarray, device: str) -> torch.Tensor:
    """`box_rows`' [B, 1 + 5 * k] array -> the [M, 6] targets, in image order."""
    count = rows[:, 0].astype(np.int64)
    boxes = rows[:, 1:].reshape(len(rows), -1, 5)
    kept = np.arange(boxes.shape[1]) < count[:, None]
    image = np.nonzero(kept)[0].astype(np.float32)
    return torch.from_numpy(np.concatenate([image[:, None], boxes[kept]], axis=1)).to(device)


def mask_tensor(samples: list[np.ndarray]) -> torch.Tensor:
    """Per-image overlap masks as the sources send them ([h, w, 1] uint8, or [h, w, 2]: an int16 value's bytes,
    with over 255 objects) -> one [N, h, w] tensor (`stack_masks`)."""
    return torch.from_numpy(stack_masks([m[:, :, 0] if m.shape[2] == 1 else m.view("<i2")[:, :, 0] for m in samples]))


def instance_tensor(samples: list[np.ndarray], targets: torch.Tensor, device: str) -> torch.Tensor:
    """Per-image bit planes as the sources send them without overlap ([P, h, w], masks.instance_planes) -> each
    target's mask, [M, h, w] uint8 0/1 in the order of `targets` (rows `image, ...`, in image order). The planes go
    to a GPU packed (an eighth of the bytes) and are taken apart there."""
    planes = np.zeros((len(samples), max(m.shape[0] for m in samples), *samples[0].shape[1:]), np.uint8)
    for j, m in enumerate(samples):
        planes[j, : len(m)] = m
    image = targets[:, 0].long().cpu().numpy()
    index = places_in_images(image, len(samples))
    if device == "cpu":  # numpy's single thread: torch's threads wait on DALI's for the two cores (20 ms a batch)
        return torch.from_numpy(unpack_planes(planes, image, index))
    device_planes = torch.from_numpy(planes).to(device)
    return unpack_planes(device_planes, *(torch.from_numpy(v).to(device) for v in (image, index)))


def places_in_images(image: np.ndarray, n: int) -> np.ndarray:
    """Each target row's place among its image's rows ([M] image indices of n images, in image order)."""
    counts = np.bincount(image, minlength=n)
    return np.arange(len(image)) - (np.cumsum(counts) - counts)[image]


def to_torch(tensors, device: str, dtype: torch.dtype = torch.uint8) -> torch.Tensor:
    """A uniform-shape DALI TensorList as one torch tensor (CPU through numpy, GPU copied on the current
    stream); float dtypes are scaled to [0, 1] on the device."""
    if isinstance(tensors, TensorListCPU):
        out = torch.from_numpy(tensors.as_array())
    else:
        from nvidia.dali.plugin.pytorch import feed_ndarray

        dense = tensors.as_tensor()
        out = torch.empty(dense.shape(), dtype=torch.uint8, device=device)
        feed_ndarray(dense, out, cuda_stream=torch.cuda.current_stream(out.device))
    return out if dtype == torch.uint8 else out.to(dtype).div_(255)


QUAD_TILES = ((0.0, 0.0), (0.0, 1.0), (1.0, 0.0), (1.0, 1.0))  # (x, y) of images i .. i+3: i+1 below i, i+2 right of it


def quad(images: torch.Tensor, targets: torch.Tensor, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """YOLOv5's --quad (its collate_fn4): each 4 images in a row become one of twice the side: with probability 0.5
    the first alone, upscaled 2x (bilinear, then truncated to the images' dtype, as YOLOv5), else the four tiled
    2 x 2 (the first top left, the second below it, the third right of it). The targets follow, normalised to the
    new side. A last group of fewer than 4 (an epoch's short last batch) is its first image upscaled. Returns
    (images [ceil(N / 4), 3, 2H, 2W], targets [M', 6])."""
    n = -(-len(images) // 4)
    alone = (rng.random(n) < 0.5) | (np.arange(n) * 4 + 4 > len(images))
    owner = targets[:, 0].long()
    out, rows = [], []
    for q in range(n):
        i = 4 * q
        if alone[q]:
            big = F.interpolate(images[i : i + 1].float(), scale_factor=2.0, mode="bilinear", align_corners=False)
            out.append(big[0].to(images.dtype))
            t = targets[owner == i].clone()
        else:
            out.append(
                torch.cat((torch.cat((images[i], images[i + 1]), 1), torch.cat((images[i + 2], images[i + 3]), 1)), 2)
            )
            t = torch.cat(
                [
                    targets[owner == i + j] + targets.new_tensor([0, 0, dx, dy, 0, 0])
                    for j, (dx, dy) in enumerate(QUAD_TILES)
                ]
            )
            t[:, 2:] *= 0.5
        t[:, 0] = q
        rows.append(t)
    return torch.stack(out), torch.cat(rows)
