"""CIoU of paired boxes: the plain PyTorch reference (YOLOv5's formula) and the fused Triton version, forward and
backward each in one pass over the N pairs (`ciou_fused`, an autograd.Function). Semantics are YOLOv5's
`bbox_iou(xywh=True, CIoU=True)` with `eps`, and `alpha` a constant in the backward (YOLOv5 computes it under
no_grad); ties in min/max split the gradient as torch.minimum/maximum do, and clamp(0) passes none at 0, as torch."""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl


def ciou_reference(box1: torch.Tensor, box2: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """YOLOv5's bbox_iou(box1, box2, xywh=True, CIoU=True) for paired [N, 4] (cx, cy, w, h) boxes -> [N].
    alpha is computed without gradient, as YOLOv5 does."""
    (x1, y1, w1, h1), (x2, y2, w2, h2) = box1.unbind(-1), box2.unbind(-1)
    b1_x1, b1_x2, b1_y1, b1_y2 = x1 - w1 / 2, x1 + w1 / 2, y1 - h1 / 2, y1 + h1 / 2
    b2_x1, b2_x2, b2_y1, b2_y2 = x2 - w2 / 2, x2 + w2 / 2, y2 - h2 / 2, y2 + h2 / 2
    inter = (b1_x2.minimum(b2_x2) - b1_x1.maximum(b2_x1)).clamp(0) * (
        b1_y2.minimum(b2_y2) - b1_y1.maximum(b2_y1)
    ).clamp(0)
    union = w1 * h1 + w2 * h2 - inter + eps
    iou = inter / union
    cw = b1_x2.maximum(b2_x2) - b1_x1.minimum(b2_x1)  # enclosing box
    ch = b1_y2.maximum(b2_y2) - b1_y1.minimum(b2_y1)
    c2 = cw**2 + ch**2 + eps
    rho2 = ((b2_x1 + b2_x2 - b1_x1 - b1_x2) ** 2 + (b2_y1 + b2_y2 - b1_y1 - b1_y2) ** 2) / 4
    v = (4 / math.pi**2) * (torch.atan(w2 / h2) - torch.atan(w1 / h1)).pow(2)
    with torch.no_grad():
        alpha = v / (v - iou + (1 + eps))
    return iou - (rho2 / c2 + v * alpha)


V_GAIN = 4 / math.pi**2


@triton.jit
def _div(a, b):
    """IEEE-rounded division, as the interpreter divides. Triton's `/` on CUDA is div.full.f32 (within 2 ulp), which
    can turn a tie or a touching edge into a flipped branch: likely why the hard cases' gradients were 0.89 of their
    largest off on the H100. The kernels are launch-bound (0.62 ms for 11k pairs), so exact division should not show
    in their time."""
    return tl.math.div_rn(a, b)


@triton.jit
def _atan(x):
    """Cephes' atanf (reduction to |x| <= tan(pi/8), odd polynomial; ~2e-7 relative): libdevice's atan does not
    run under TRITON_INTERPRET, this runs in both modes."""
    ax = tl.abs(x)
    big = ax > 2.414213562373095
    mid = ax > 0.41421356237309503
    z = tl.where(big, _div(-1.0, ax), tl.where(mid, _div(ax - 1.0, ax + 1.0), ax))
    y0 = tl.where(big, 1.5707963267948966, tl.where(mid, 0.7853981633974483, 0.0))
    zz = z * z
    p = (((8.05374449538e-2 * zz - 1.38776856032e-1) * zz + 1.99777106478e-1) * zz - 3.33329491539e-1) * zz * z + z
    r = y0 + p
    return tl.where(x < 0, -r, r)


@triton.jit
def _first(a, b, pick_smaller: tl.constexpr):
    """d min(a, b)/da (or d max): 1 where a wins, 1/2 on a tie, as torch.minimum/maximum's backward."""
    wins = (a < b) if pick_smaller else (a > b)
    return tl.where(wins, 1.0, tl.where(a == b, 0.5, 0.0))


@triton.jit
def _load4(ptr, offs, mask, stride):
    """Columns 0..3 of rows `offs` (row stride `stride`, column stride 1) as float32; masked rows (0, 0, 1, 1)."""
    a = tl.load(ptr + offs * stride, mask=mask, other=0.0).to(tl.float32)
    b = tl.load(ptr + offs * stride + 1, mask=mask, other=0.0).to(tl.float32)
    c = tl.load(ptr + offs * stride + 2, mask=mask, other=1.0).to(tl.float32)
    d = tl.load(ptr + offs * stride + 3, mask=mask, other=1.0).to(tl.float32)
    return a, b, c, d


@triton.jit
def _load_boxes(b1, b2, offs, mask):
    x1, y1, w1, h1 = _load4(b1, offs, mask, 4)
    x2, y2, w2, h2 = _load4(b2, offs, mask, 4)
    return x1, y1, w1, h1, x2, y2, w2, h2


@triton.jit
def _corners(x, y, w, h):
    return x - w * 0.5, x + w * 0.5, y - h * 0.5, y + h * 0.5  # halves exact (a division need not be)


@triton.jit
def _terms(x1, y1, w1, h1, x2, y2, w2, h2, eps):
    """Every intermediate of YOLOv5's CIoU, in its order of operations."""
    b1x1, b1x2, b1y1, b1y2 = _corners(x1, y1, w1, h1)
    b2x1, b2x2, b2y1, b2y2 = _corners(x2, y2, w2, h2)
    iw_raw = tl.minimum(b1x2, b2x2) - tl.maximum(b1x1, b2x1)
    ih_raw = tl.minimum(b1y2, b2y2) - tl.maximum(b1y1, b2y1)
    inter = tl.maximum(iw_raw, 0.0) * tl.maximum(ih_raw, 0.0)
    union = w1 * h1 + w2 * h2 - inter + eps
    iou = _div(inter, union)
    cw = tl.maximum(b1x2, b2x2) - tl.minimum(b1x1, b2x1)  # enclosing box
    ch = tl.maximum(b1y2, b2y2) - tl.minimum(b1y1, b2y1)
    c2 = cw * cw + ch * ch + eps
    dx = b2x1 + b2x2 - b1x1 - b1x2
    dy = b2y1 + b2y2 - b1y1 - b1y2
    rho2 = (dx * dx + dy * dy) * 0.25
    da = _atan(_div(w2, h2)) - _atan(_div(w1, h1))
    v = 0.4052847345693511 * da * da  # 4 / pi^2
    alpha = _div(v, v - iou + (1.0 + eps))
    return iw_raw, ih_raw, inter, union, iou, cw, ch, c2, dx, dy, rho2, da, v, alpha


@triton.jit
def _ciou_fwd(b1, b2, out, n, eps, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    x1, y1, w1, h1, x2, y2, w2, h2 = _load_boxes(b1, b2, offs, mask)
    _, _, _, _, iou, _, _, c2, _, _, rho2, _, v, alpha = _terms(x1, y1, w1, h1, x2, y2, w2, h2, eps)
    tl.store(out + offs, iou - (_div(rho2, c2) + v * alpha), mask=mask)


@triton.jit
def _ciou_grads(x1, y1, w1, h1, x2, y2, w2, h2, g, eps):
    """d(g * CIoU) for both boxes (x, y, w, h each); the compiler drops what a caller does not store."""
    # the forward again (cheaper than storing it)
    iw_raw, ih_raw, inter, union, iou, cw, ch, c2, dx, dy, rho2, da, v, alpha = _terms(
        x1, y1, w1, h1, x2, y2, w2, h2, eps
    )
    iw, ih = tl.maximum(iw_raw, 0.0), tl.maximum(ih_raw, 0.0)
    b1x1, b1x2, b1y1, b1y2 = _corners(x1, y1, w1, h1)
    b2x1, b2x2, b2y1, b2y2 = _corners(x2, y2, w2, h2)
    r1, r2 = _div(w1, h1), _div(w2, h2)
    # out = iou - rho2 / c2 - alpha * v, alpha constant
    g_union = _div(-g * inter, union * union)
    g_inter = _div(g, union) - g_union
    g_c2 = _div(g * rho2, c2 * c2)
    g_dx = _div(-g, c2) * dx * 0.5
    g_dy = _div(-g, c2) * dy * 0.5
    g_da = -g * alpha * 0.4052847345693511 * 2 * da
    g_iw = tl.where(iw_raw > 0, g_inter * ih, 0.0)  # clamp(0) passes no gradient at 0, as torch
    g_ih = tl.where(ih_raw > 0, g_inter * iw, 0.0)
    g_cw = g_c2 * 2 * cw
    g_ch = g_c2 * 2 * ch
    # corners: intersection (min of right edges - max of left edges), enclosure (max of right - min of left), centres
    g_b1x2 = g_iw * _first(b1x2, b2x2, True) + g_cw * _first(b1x2, b2x2, False) - g_dx
    g_b1x1 = -g_iw * _first(b1x1, b2x1, False) - g_cw * _first(b1x1, b2x1, True) - g_dx
    g_b1y2 = g_ih * _first(b1y2, b2y2, True) + g_ch * _first(b1y2, b2y2, False) - g_dy
    g_b1y1 = -g_ih * _first(b1y1, b2y1, False) - g_ch * _first(b1y1, b2y1, True) - g_dy
    g_r1 = _div(-g_da, 1 + r1 * r1)
    gx1 = g_b1x1 + g_b1x2
    gy1 = g_b1y1 + g_b1y2
    gw1 = (g_b1x2 - g_b1x1) * 0.5 + g_union * h1 + _div(g_r1, h1)
    gh1 = (g_b1y2 - g_b1y1) * 0.5 + g_union * w1 - _div(g_r1 * w1, h1 * h1)
    g_b2x2 = g_iw * _first(b2x2, b1x2, True) + g_cw * _first(b2x2, b1x2, False) + g_dx
    g_b2x1 = -g_iw * _first(b2x1, b1x1, False) - g_cw * _first(b2x1, b1x1, True) + g_dx
    g_b2y2 = g_ih * _first(b2y2, b1y2, True) + g_ch * _first(b2y2, b1y2, False) + g_dy
    g_b2y1 = -g_ih * _first(b2y1, b1y1, False) - g_ch * _first(b2y1, b1y1, True) + g_dy
    g_r2 = _div(g_da, 1 + r2 * r2)
    gx2 = g_b2x1 + g_b2x2
    gy2 = g_b2y1 + g_b2y2
    gw2 = (g_b2x2 - g_b2x1) * 0.5 + g_union * h2 + _div(g_r2, h2)
    gh2 = (g_b2y2 - g_b2y1) * 0.5 + g_union * w2 - _div(g_r2 * w2, h2 * h2)
    return gx1, gy1, gw1, gh1, gx2, gy2, gw2, gh2


@triton.jit
def _ciou_bwd(b1, b2, grad, g1, g2, n, eps, GRAD1: tl.constexpr, GRAD2: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    g = tl.load(grad + offs, mask=mask, other=0.0).to(tl.float32)
    x1, y1, w1, h1, x2, y2, w2, h2 = _load_boxes(b1, b2, offs, mask)
    gx1, gy1, gw1, gh1, gx2, gy2, gw2, gh2 = _ciou_grads(x1, y1, w1, h1, x2, y2, w2, h2, g, eps)
    if GRAD1:
        _store4(g1, offs, mask, gx1, gy1, gw1, gh1)
    if GRAD2:
        _store4(g2, offs, mask, gx2, gy2, gw2, gh2)


@triton.jit
def _store4(ptr, offs, mask, a, b, c, d):
    """Rows of 4 (x, y, w, h) into a contiguous [N, 4], in the pointer's dtype."""
    ty = ptr.dtype.element_ty
    tl.store(ptr + offs * 4, a.to(ty), mask=mask)
    tl.store(ptr + offs * 4 + 1, b.to(ty), mask=mask)
    tl.store(ptr + offs * 4 + 2, c.to(ty), mask=mask)
    tl.store(ptr + offs * 4 + 3, d.to(ty), mask=mask)


BLOCK = 512
# No contraction of a*b+c into fma: with it off and division exact, every operation of the compiled kernel is an
# IEEE-rounded float32 one, as in the interpreter, so the CPU tests against float64 hold for the GPU's code too.
COMPILE_OPTIONS = {"enable_fp_fusion": False}


class _CIoU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, box1: torch.Tensor, box2: torch.Tensor, eps: float) -> torch.Tensor:
        box1, box2 = box1.contiguous(), box2.contiguous()
        n = box1.shape[0]
        out = torch.empty(n, dtype=torch.float32, device=box1.device)
        if n:
            _ciou_fwd[(triton.cdiv(n, BLOCK),)](box1, box2, out, n, eps, BLOCK=BLOCK, **COMPILE_OPTIONS)
        ctx.save_for_backward(box1, box2)
        ctx.eps = eps
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        box1, box2 = ctx.saved_tensors
        need1, need2 = ctx.needs_input_grad[:2]
        n = box1.shape[0]
        g1 = torch.empty(box1.shape, dtype=torch.float32, device=box1.device) if need1 else box1
        g2 = torch.empty(box2.shape, dtype=torch.float32, device=box2.device) if need2 else box2
        if n and (need1 or need2):
            flags = {"GRAD1": need1, "GRAD2": need2, "BLOCK": BLOCK, **COMPILE_OPTIONS}
            _ciou_bwd[(triton.cdiv(n, BLOCK),)](box1, box2, grad.contiguous(), g1, g2, n, ctx.eps, **flags)
        return (g1.to(box1.dtype) if need1 else None), (g2.to(box2.dtype) if need2 else None), None


def ciou_fused(box1: torch.Tensor, box2: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """The reference's values and gradients from two Triton kernels (float32 inside; returns float32)."""
    return _CIoU.apply(box1, box2, eps)
