"""DALI TensorLists to torch tensors on the training device."""

from __future__ import annotations

import torch
from nvidia.dali.backend import TensorListCPU


def to_torch(tensors, device: str) -> torch.Tensor:
    """A uniform-shape DALI TensorList as one torch tensor: CPU outputs through numpy, GPU outputs copied
    device-to-device on the current stream."""
    if isinstance(tensors, TensorListCPU):
        return torch.from_numpy(tensors.as_array())
    from nvidia.dali.plugin.pytorch import feed_ndarray

    dense = tensors.as_tensor()
    out = torch.empty(dense.shape(), dtype=torch.uint8, device=device)
    feed_ndarray(dense, out, cuda_stream=torch.cuda.current_stream(out.device))
    return out
