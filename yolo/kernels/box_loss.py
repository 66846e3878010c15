"""YOLOv5's whole box-loss term for one detection layer, from the raw outputs of the matched cells: decode
(xy = 2 sigmoid - 0.5, wh = (2 sigmoid)^2 * anchor), CIoU against the targets, the loss `(1 - CIoU).mean()` and the
objectness target `CIoU.detach().clamp(0)`. The reference is YOLOv5's lines of ComputeLoss; the fused version is one
Triton kernel forward (per-block partial sums, added by torch: deterministic) and one backward straight to the raw
outputs, in place of ~25 element-wise launches per layer. The CIoU inside is ciou.py's, operation for operation."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from yolo.kernels.ciou import BLOCK, COMPILE_OPTIONS, _ciou_grads, _div, _load4, _store4, _terms, ciou_reference


def decode(p: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """ComputeLoss's predicted boxes [N, 4] (cx, cy, w, h, relative to the cell) from the raw outputs p [N, 4]."""
    pxy, pwh = p.split(2, 1)
    return torch.cat((pxy.sigmoid() * 2 - 0.5, (pwh.sigmoid() * 2) ** 2 * anchors), 1)


def box_loss_reference(p: torch.Tensor, anchors: torch.Tensor, tbox: torch.Tensor, eps: float = 1e-7):
    """p: [N, 4] raw outputs (x, y, w, h) of the matched cells, anchors: [N, 2] in grid cells, tbox: [N, 4] targets
    relative to the cell -> (the loss (1 - CIoU).mean(), the objectness target CIoU.detach().clamp(0))."""
    iou = ciou_reference(decode(p, anchors), tbox, eps)
    return (1.0 - iou).mean(), iou.detach().clamp(0)


@triton.jit
def _exp_neg(v):
    """exp(v) for v <= 0 (below -87: exp(-87), ~1.6e-38) in IEEE-rounded float32 operations only, Cephes' expf
    (~1 ulp): `tl.exp` compiles to the approximate ex2.approx.f32 and would leave the interpreter's arithmetic, which
    the CPU tests check, for one of its own. exp(v) = 2^k exp(r), k = round(v / ln 2), |r| <= ln 2 / 2."""
    v = tl.maximum(v, -87.0)
    k = (v * 1.4426950408889634 - 0.5).to(tl.int32)  # truncation towards 0 of t - 0.5 rounds t <= 0 to nearest
    kf = k.to(tl.float32)
    r = v - kf * 0.693359375 + kf * 2.12194440e-4  # ln 2 in two parts; k * 0.693359375 is exact (9 + 7 bits)
    z = r * r
    y = (((((1.9875691500e-4 * r + 1.3981999507e-3) * r + 8.3334519073e-3) * r + 4.1665795894e-2) * r
          + 1.6666665459e-1) * r + 5.0000001201e-1) * z + r + 1.0  # fmt: skip
    return y * ((k + 127) << 23).to(tl.float32, bitcast=True)  # 2^k, exact, k >= -126


@triton.jit
def _sigmoids(x):
    """sigmoid(x) and sigmoid(-x) = 1 - sigmoid(x), each without cancellation (exp of -|x| only: no overflow)."""
    e = _exp_neg(-tl.abs(x))
    big, small = _div(1.0, 1.0 + e), _div(e, 1.0 + e)
    pos = x >= 0
    return tl.where(pos, big, small), tl.where(pos, small, big)


@triton.jit
def _decoded(p, stride, anchors, offs, mask):
    """The predicted boxes in YOLOv5's order of operations, and each raw output's sigmoid and 1 - sigmoid."""
    rx, ry, rw, rh = _load4(p, offs, mask, stride)
    aw = tl.load(anchors + offs * 2, mask=mask, other=1.0).to(tl.float32)
    ah = tl.load(anchors + offs * 2 + 1, mask=mask, other=1.0).to(tl.float32)
    sx, nx = _sigmoids(rx)
    sy, ny = _sigmoids(ry)
    sw, nw = _sigmoids(rw)
    sh, nh = _sigmoids(rh)
    tw, th = sw * 2, sh * 2
    x, y, w, h = sx * 2 - 0.5, sy * 2 - 0.5, tw * tw * aw, th * th * ah
    return x, y, w, h, sx, nx, sy, ny, sw, nw, sh, nh, tw, th, aw, ah


@triton.jit
def _box_loss_fwd(p, stride, anchors, tbox, part, iou_out, n, inv_n, eps, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    x1, y1, w1, h1, _, _, _, _, _, _, _, _, _, _, _, _ = _decoded(p, stride, anchors, offs, mask)
    x2, y2, w2, h2 = _load4(tbox, offs, mask, 4)
    _, _, _, _, iou, _, _, c2, _, _, rho2, _, v, alpha = _terms(x1, y1, w1, h1, x2, y2, w2, h2, eps)
    ciou = iou - (_div(rho2, c2) + v * alpha)
    tl.store(iou_out + offs, tl.maximum(ciou, 0.0).to(iou_out.dtype.element_ty), mask=mask)
    tl.store(part + pid, tl.sum(tl.where(mask, 1.0 - ciou, 0.0), axis=0) * inv_n)


@triton.jit
def _box_loss_bwd(p, stride, anchors, tbox, grad, gp, n, inv_n, eps, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    g = tl.zeros([BLOCK], dtype=tl.float32) - tl.load(grad).to(tl.float32) * inv_n  # d mean(1 - ciou) / d ciou
    x1, y1, w1, h1, sx, nx, sy, ny, sw, nw, sh, nh, tw, th, aw, ah = _decoded(p, stride, anchors, offs, mask)
    x2, y2, w2, h2 = _load4(tbox, offs, mask, 4)
    gx, gy, gw, gh, _, _, _, _ = _ciou_grads(x1, y1, w1, h1, x2, y2, w2, h2, g, eps)  # targets carry no gradient
    # through the decode: d(2s - 0.5)/dr = 2 s (1 - s); d((2s)^2 a)/dr = 2 (2s) a * 2 s (1 - s)
    gx = gx * 2 * (sx * nx)
    gy = gy * 2 * (sy * ny)
    gw = gw * aw * 2 * tw * 2 * (sw * nw)
    gh = gh * ah * 2 * th * 2 * (sh * nh)
    _store4(gp, offs, mask, gx, gy, gw, gh)


class _BoxLoss(torch.autograd.Function):
    @staticmethod
    def forward(ctx, p: torch.Tensor, anchors: torch.Tensor, tbox: torch.Tensor, eps: float, iou_dtype: torch.dtype):
        if p.stride(1) != 1:
            p = p.contiguous()
        anchors, tbox = anchors.contiguous(), tbox.contiguous()
        n = p.shape[0]
        blocks = triton.cdiv(n, BLOCK)
        part = torch.empty(blocks, dtype=torch.float32, device=p.device)
        iou = torch.empty(n, dtype=iou_dtype, device=p.device)
        if n == 0:
            loss = torch.full((), float("nan"), device=p.device)  # the mean of nothing, as torch's
        else:
            args = (p, p.stride(0), anchors, tbox, part, iou, n, 1.0 / n, eps)
            _box_loss_fwd[(blocks,)](*args, BLOCK=BLOCK, **COMPILE_OPTIONS)
            loss = part.view(()) if blocks == 1 else part.sum()  # one block (<= 512 pairs): no second launch
        ctx.save_for_backward(p, anchors, tbox)
        ctx.eps = eps
        ctx.mark_non_differentiable(iou)
        return loss, iou

    @staticmethod
    def backward(ctx, grad: torch.Tensor, _):
        p, anchors, tbox = ctx.saved_tensors
        n = p.shape[0]
        gp = torch.empty((n, 4), dtype=p.dtype, device=p.device)
        if n:
            args = (p, p.stride(0), anchors, tbox, grad.contiguous(), gp, n, 1.0 / n, ctx.eps)
            _box_loss_bwd[(triton.cdiv(n, BLOCK),)](*args, BLOCK=BLOCK, **COMPILE_OPTIONS)
        return gp, None, None, None, None


def box_loss_fused(p: torch.Tensor, anchors: torch.Tensor, tbox: torch.Tensor, eps: float = 1e-7, iou_dtype=None):
    """The reference's loss, objectness target and gradient (to p only: anchors and targets carry none) from two
    Triton kernels, float32 inside; the objectness target comes in `iou_dtype` (default p's), ready for tobj."""
    return _BoxLoss.apply(p, anchors, tbox, eps, iou_dtype or p.dtype)
