"""YOLOv5's ComputeLoss: targets assigned to anchors with a wh ratio < anchor_t in the target's cell and its two
nearest neighbours; CIoU box loss (decode, CIoU and mean in one kernel on CUDA: yolo/kernels/box_loss.py); objectness
BCE against the detached IoU with layer balance (4.0, 1.0, 0.4; other level counts: 4.0, 1.0, 0.25, 0.06, 0.02);
class BCE with optional label smoothing; both BCEs focal when fl_gamma > 0; gains scaled by layers, image size and
class count as train.py does."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from yolo.kernels import box_loss
from yolo.metrics import xywh2xyxy
from yolo.segment import crop_mask

BALANCE = (4.0, 1.0, 0.4)  # objectness weight of P3, P4, P5
BALANCE_P6 = (4.0, 1.0, 0.25, 0.06, 0.02)  # of P3 .. P7: YOLOv5's for any number of levels but 3
NEIGHBOURS = torch.tensor([[0, 0], [1, 0], [0, 1], [-1, 0], [0, -1]], dtype=torch.float32) * 0.5


@dataclass(frozen=True)
class LossHyp:
    """Loss hyperparameters, defaults from YOLOv5's hyp.scratch-low.yaml."""

    box: float = 0.05  # box loss gain
    cls: float = 0.5  # cls loss gain
    cls_pw: float = 1.0  # cls BCE positive weight
    obj: float = 1.0  # obj loss gain (scales with pixels)
    obj_pw: float = 1.0  # obj BCE positive weight
    anchor_t: float = 4.0  # anchor-multiple threshold
    fl_gamma: float = 0.0  # focal loss gamma (0: plain BCE; EfficientDet's is 1.5)
    label_smoothing: float = 0.0  # class targets 1 - eps/2 and eps/2


class FocalLoss(nn.Module):
    """YOLOv5's FocalLoss around a BCEWithLogitsLoss: each element's loss times alpha_t (1 - p_t)^gamma, then
    the wrapped loss's reduction (Lin et al. 2017; torchvision's sigmoid_focal_loss when pos_weight is 1)."""

    def __init__(self, bce: nn.BCEWithLogitsLoss, gamma: float = 1.5, alpha: float = 0.25) -> None:
        super().__init__()
        self.bce = nn.BCEWithLogitsLoss(pos_weight=bce.pos_weight, reduction="none")
        self.gamma, self.alpha, self.reduction = gamma, alpha, bce.reduction

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        loss = self.bce(logits, target)
        p = torch.sigmoid(logits)
        p_t = target * p + (1 - target) * (1 - p)
        loss = loss * (target * self.alpha + (1 - target) * (1 - self.alpha)) * (1.0 - p_t) ** self.gamma
        return loss.mean() if self.reduction == "mean" else loss.sum() if self.reduction == "sum" else loss


class ComputeLoss:
    def __init__(self, detect: nn.Module, imgsz: int = 640, hyp: LossHyp | None = None) -> None:
        h = hyp or LossHyp()
        device = detect.anchors.device
        nl = len(detect.m)
        self.detect, self.nc, self.na, self.nl, self.anchor_t = detect, detect.nc, detect.na, nl, h.anchor_t
        self.balance = BALANCE if nl == 3 else BALANCE_P6[:nl]
        # train.py scales the gains to the number of layers, classes and the image size
        self.gain_box = h.box * 3 / nl
        self.gain_cls = h.cls * self.nc / 80 * 3 / nl
        self.gain_obj = h.obj * (imgsz / 640) ** 2 * 3 / nl
        self.cp, self.cn = 1.0 - 0.5 * h.label_smoothing, 0.5 * h.label_smoothing
        self.bce_cls = nn.BCEWithLogitsLoss(pos_weight=torch.tensor([h.cls_pw], device=device))
        self.bce_obj = nn.BCEWithLogitsLoss(pos_weight=torch.tensor([h.obj_pw], device=device))
        if h.fl_gamma > 0:
            self.bce_cls, self.bce_obj = FocalLoss(self.bce_cls, h.fl_gamma), FocalLoss(self.bce_obj, h.fl_gamma)
        self.neighbours = NEIGHBOURS.to(device)

    def __call__(
        self, preds: list[torch.Tensor], targets: torch.Tensor, assigned: list[tuple] | None = None, masks=None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """preds: per level [N, na, H, W, 5 + nc] raw outputs; targets: [M, 6] (image, cls, cx, cy, w, h) normalised;
        assigned: `assign_targets`' result for these targets, if made ahead (the trainer's loader makes it on the
        CPU while the previous step runs: the step then never waits for the device); masks: segmentation's
        (SegmentLoss), unused here. Returns (loss * batch size, detached [box, obj, cls])."""
        lbox, lobj, lcls = self.terms(preds, assigned or self.build_targets(preds, targets))
        return (lbox + lobj + lcls) * preds[0].shape[0], torch.cat((lbox, lobj, lcls)).detach()

    def terms(self, preds: list[torch.Tensor], assigned: list[tuple], matched=None) -> tuple[torch.Tensor, ...]:
        """The box, objectness and class losses, scaled by their gains; `matched(level, its matched cells' outputs,
        its assignment)` is called on each level with matches (segmentation's mask loss)."""
        device = preds[0].device
        lbox, lobj, lcls = (torch.zeros(1, device=device) for _ in range(3))
        for i, (pi, match) in enumerate(zip(preds, assigned, strict=True)):
            b, a, gj, gi, tbox, tcls, anchors, grid, _ = match
            if grid != tuple(pi.shape[2:4]):
                raise ValueError(f"targets assigned on a {grid} grid for a {tuple(pi.shape[2:4])} level: not this size")
            tobj = torch.zeros(pi.shape[:4], dtype=pi.dtype, device=device)
            if n := b.shape[0]:
                ps = pi[b, a, gj, gi]  # the matched cells' outputs: x, y, w, h, objectness, classes (, masks)
                # decode, CIoU, (1 - CIoU).mean() and the detached CIoU: one kernel each way on CUDA
                box, iou = box_loss(ps[:, :4], anchors, tbox, tobj.dtype)
                lbox += box
                tobj[b, a, gj, gi] = iou
                pcls = ps[:, 5 : 5 + self.nc]
                if self.nc > 1:
                    t = torch.full_like(pcls, self.cn)
                    t[torch.arange(n, device=device), tcls] = self.cp
                    lcls += self.bce_cls(pcls, t)
                if matched is not None:
                    matched(i, ps, match)
            lobj += self.bce_obj(pi[..., 4], tobj) * self.balance[i]
        return lbox * self.gain_box, lobj * self.gain_obj, lcls * self.gain_cls

    def build_targets(self, preds: list[torch.Tensor], targets: torch.Tensor) -> list[tuple]:
        """`assign_targets` on the targets' device with the model's anchors. On CUDA its two boolean selections per
        level make the host wait for the device (the step's only waits: the trainer assigns in the loader)."""
        grids = [tuple(p.shape[2:4]) for p in preds]
        return assign_targets(targets, self.detect.anchors, grids, self.anchor_t, self.neighbours)

    def assigner(self) -> Callable[[torch.Tensor, tuple[int, int]], list[tuple]]:
        """`assign_targets` on the CPU with a copy of the anchors as they are now (after autoanchor or a resume):
        f(targets [M, 6], (H, W) of the batch) -> `assign_targets`' result for the model's grids at that size."""
        anchors, strides = self.detect.anchors.detach().cpu().clone(), self.detect.stride.cpu().tolist()
        anchor_t = self.anchor_t

        def assign(targets: torch.Tensor, hw: tuple[int, int]) -> list[tuple]:
            grids = [(int(hw[0] // s), int(hw[1] // s)) for s in strides]
            return assign_targets(targets, anchors, grids, anchor_t, NEIGHBOURS)

        return assign


def assign_targets(
    targets: torch.Tensor, anchors: torch.Tensor, grids: list, anchor_t: float, neighbours: torch.Tensor
) -> list[tuple]:
    """YOLOv5's build_targets. targets: [M, 6] normalised; anchors: [nl, na, 2] in grid cells; grids: (ny, nx) per
    level. Per level: (image, anchor, grid y, grid x, target box relative to its cell, class, anchor wh) on the
    targets' device, the grid (ny, nx), and each match's target row (its index in `targets`: segmentation's masks);
    the same values on any device (IEEE operations only)."""
    device = targets.device
    na, nt = anchors.shape[1], targets.shape[0]
    ai = torch.arange(na, device=device).float().view(na, 1).repeat(1, nt)
    row = torch.arange(nt, device=device).float().view(1, nt).repeat(na, 1)
    targets = torch.cat((targets.repeat(na, 1, 1), ai[..., None], row[..., None]), 2)  # [na, nt, 8]
    out = []
    for level, (ny, nx) in zip(anchors, grids, strict=True):
        t = targets.clone()
        t[..., 2:6:2] *= nx  # cx, w in grid cells
        t[..., 3:6:2] *= ny  # cy, h
        if nt:
            r = t[..., 4:6] / level[:, None]
            t = t[torch.max(r, 1 / r).max(2)[0] < anchor_t]  # anchors within the wh ratio
            gxy = t[:, 2:4]
            gxi = torch.stack((nx - gxy[:, 0], ny - gxy[:, 1]), 1)
            left, up = ((gxy % 1 < 0.5) & (gxy > 1)).T  # also the left / upper neighbour cell
            right, down = ((gxi % 1 < 0.5) & (gxi > 1)).T  # also the right / lower neighbour cell
            pick = torch.stack((torch.ones_like(left), left, up, right, down)).nonzero(as_tuple=True)
            t = t.repeat((5, 1, 1))[pick]
            offsets = (torch.zeros_like(gxy)[None] + neighbours[:, None])[pick]
        else:
            t, offsets = targets[0], 0
        bc, gxy, gwh, a, r = t.split((2, 2, 2, 1, 1), 1)
        a, r, (b, c) = a.long().view(-1), r.long().view(-1), bc.long().T
        gij = (gxy - offsets).long()
        gi, gj = gij.T
        gj, gi = gj.clamp_(0, ny - 1), gi.clamp_(0, nx - 1)
        out.append((b, a, gj, gi, torch.cat((gxy - gij, gwh), 1), c, level[a], (ny, nx), r))
    return out


class SegmentLoss(ComputeLoss):
    """YOLOv5's segmentation ComputeLoss (utils/segment/loss.py): the detection losses, plus per level and image the
    mask loss of its matches: each one's mask (its coefficients times the image's prototypes) against its target's
    (with `overlap`, the overlap mask's pixels of its index; else its own mask, YOLOv5's --no-overlap), BCE averaged
    inside its target box (at the prototypes' size) over the box's normalised area, the matches averaged per image,
    the images and levels summed; gain box / batch size."""

    def __init__(self, detect: nn.Module, imgsz: int = 640, hyp: LossHyp | None = None, overlap: bool = True) -> None:
        super().__init__(detect, imgsz, hyp)
        self.overlap = overlap

    def __call__(self, preds, targets: torch.Tensor, assigned: list[tuple] | None = None, masks=None):
        """preds: (per level maps [N, na, H, W, 5 + nc + nm], prototypes [N, nm, h, w]); masks: with overlap
        [N, H', W'] (value k + 1: the image's k-th target), else [M, H', W'] 0/1 (the targets' own, in their order);
        nearest-resized to the prototypes' size when not theirs. Returns (loss * batch size, detached [box, seg,
        obj, cls])."""
        if masks is None:
            raise ValueError("a segmentation loss needs the targets' masks (a loader with mask_ratio)")
        maps, proto = preds
        bs, nm, mh, mw = proto.shape
        if tuple(masks.shape[-2:]) != (mh, mw):
            masks = F.interpolate(masks[None].float(), (mh, mw), mode="nearest")[0]
        if self.overlap:  # each image's first target row (the targets come in image order)
            counts = torch.bincount(targets[:, 0].long(), minlength=bs)
            first = torch.cumsum(counts, 0) - counts
        scale = torch.tensor([mw, mh, mw, mh], device=proto.device, dtype=targets.dtype)
        lseg = torch.zeros(1, device=proto.device)

        def mask_loss(level: int, ps: torch.Tensor, match: tuple) -> None:
            nonlocal lseg
            b, rows = match[0], match[8]
            xywhn = targets[rows, 2:6]
            area = xywhn[:, 2:].prod(1)
            xyxy = xywh2xyxy(xywhn * scale)  # the targets' boxes in prototype pixels
            pmask = ps[:, 5 + self.nc :]
            index = rows - first[b] + 1 if self.overlap else None  # the target's value in its image's overlap mask
            for bi in b.unique().tolist():
                j = b == bi
                gt = (masks[bi][None] == index[j].view(-1, 1, 1)) if self.overlap else masks[rows[j]]
                gt = gt.to(proto.dtype)
                pred = (pmask[j] @ proto[bi].view(nm, -1)).view(-1, mh, mw)
                loss = F.binary_cross_entropy_with_logits(pred, gt, reduction="none")
                lseg = lseg + (crop_mask(loss, xyxy[j]).mean(dim=(1, 2)) / area[j]).mean()

        lbox, lobj, lcls = self.terms(maps, assigned or self.build_targets(maps, targets), mask_loss)
        lseg = lseg * self.gain_box / bs
        return (lbox + lseg + lobj + lcls) * bs, torch.cat((lbox, lseg, lobj, lcls)).detach()
