"""EMA update v = d * v + (1 - d) * p over all floating-point parameters and buffers: the per-tensor reference
(YOLOv5's loop, two small kernels per tensor), the multi-tensor `torch._foreach_lerp_` (one call), and a Triton
multi-tensor kernel (`EmaTriton`: one launch over a table of tensor addresses, built once per model)."""

from __future__ import annotations

import torch
import triton
import triton.language as tl


def ema_reference(ema: list[torch.Tensor], model: list[torch.Tensor], d: float) -> None:
    """YOLOv5's ModelEMA.update: two small kernels per tensor."""
    for v, p in zip(ema, model, strict=True):
        v *= d
        v += (1 - d) * p.detach()


def ema_foreach(ema: list[torch.Tensor], model: list[torch.Tensor], d: float) -> None:
    """One multi-tensor launch: v += (1 - d) * (p - v)."""
    torch._foreach_lerp_(ema, [p.detach() for p in model] if model and model[0].requires_grad else model, 1 - d)


@triton.jit
def _ema_blocks(v_addr, p_addr, numel, block_tensor, block_start, d, BLOCK: tl.constexpr):
    """One program per BLOCK of one tensor: tensor k = block_tensor[pid], elements block_start[pid] + [0, BLOCK)."""
    pid = tl.program_id(0)
    k = tl.load(block_tensor + pid)
    start = tl.load(block_start + pid)
    n = tl.load(numel + k)
    v = tl.load(v_addr + k).to(tl.pointer_type(tl.float32))
    p = tl.load(p_addr + k).to(tl.pointer_type(tl.float32))
    offs = start + tl.arange(0, BLOCK)
    mask = offs < n
    x = tl.load(v + offs, mask=mask)
    y = tl.load(p + offs, mask=mask)
    tl.store(v + offs, x * d + (1 - d) * y, mask=mask)


def dense_float32(t: torch.Tensor) -> bool:
    return t.dtype == torch.float32 and (
        t.is_contiguous() or (t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last))
    )


class EmaTriton:
    """The table of (EMA tensor, model tensor) addresses and blocks for one pair of tensor lists, which must stay
    allocated (parameters updated in place): then each update is one kernel launch. float32 tensors, dense
    (contiguous or channels-last) with the same strides in both lists, so that the update runs over storage."""

    BLOCK = 4096

    def __init__(self, ema: list[torch.Tensor], model: list[torch.Tensor]) -> None:
        pairs = zip(ema, model, strict=True)
        if not all(dense_float32(v) and dense_float32(p) and v.stride() == p.stride() for v, p in pairs):
            raise ValueError("EmaTriton needs dense float32 tensors laid out alike")
        device = ema[0].device
        numel = [t.numel() for t in ema]
        blocks = [(k, s) for k, n in enumerate(numel) for s in range(0, n, self.BLOCK)]

        def table(values):
            return torch.tensor(values, dtype=torch.int64, device=device)

        self.v_addr, self.p_addr = table([t.data_ptr() for t in ema]), table([t.data_ptr() for t in model])
        self.numel = table(numel)
        self.block_tensor, self.block_start = table([b[0] for b in blocks]), table([b[1] for b in blocks])
        self.keep = (ema, model)  # the addresses stay valid while these live
        self.programs = len(blocks)

    def __call__(self, d: float) -> None:
        _ema_blocks[(self.programs,)](
            self.v_addr, self.p_addr, self.numel, self.block_tensor, self.block_start, d, BLOCK=self.BLOCK
        )
