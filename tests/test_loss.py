"""YOLOv5's loss: the CIoU reference against an independent float64 computation, target assignment to cells and
anchors, and a model that overfits one batch under it."""

import math

import pytest
import torch
from conftest import same_assignment

from yolo.kernels.ciou import ciou_reference
from yolo.loss import ComputeLoss
from yolo.model import YOLOv5


def ciou_by_hand(b1, b2, eps=1e-7):
    """CIoU written from its definition, per pair, in Python floats."""
    out = []
    for (x1, y1, w1, h1), (x2, y2, w2, h2) in zip(b1.tolist(), b2.tolist(), strict=True):
        ax0, ax1, ay0, ay1 = x1 - w1 / 2, x1 + w1 / 2, y1 - h1 / 2, y1 + h1 / 2
        bx0, bx1, by0, by1 = x2 - w2 / 2, x2 + w2 / 2, y2 - h2 / 2, y2 + h2 / 2
        inter = max(0.0, min(ax1, bx1) - max(ax0, bx0)) * max(0.0, min(ay1, by1) - max(ay0, by0))
        iou = inter / (w1 * h1 + w2 * h2 - inter + eps)
        diag2 = (max(ax1, bx1) - min(ax0, bx0)) ** 2 + (max(ay1, by1) - min(ay0, by0)) ** 2 + eps
        centre2 = (x2 - x1) ** 2 + (y2 - y1) ** 2
        v = 4 / math.pi**2 * (math.atan(w2 / h2) - math.atan(w1 / h1)) ** 2
        alpha = v / (v - iou + 1 + eps)
        out.append(iou - centre2 / diag2 - alpha * v)
    return torch.tensor(out, dtype=torch.float64)


def test_ciou_reference_matches_the_definition_on_random_and_hard_cases():
    g = torch.Generator().manual_seed(0)
    b1 = torch.cat([torch.rand(200, 2, generator=g) * 10, torch.rand(200, 2, generator=g) * 5 + 0.1], 1).double()
    b2 = torch.cat([torch.rand(200, 2, generator=g) * 10, torch.rand(200, 2, generator=g) * 5 + 0.1], 1).double()
    hard1 = torch.tensor([[5, 5, 2, 2], [0, 0, 1, 1], [5, 5, 4, 4], [1, 1, 100, 0.01], [3, 3, 1e-3, 2]]).double()
    hard2 = torch.tensor([[5, 5, 2, 2], [9, 9, 1, 1], [5, 5, 1, 1], [1, 1, 0.01, 100], [3, 3, 2, 1e-3]]).double()
    for a, b in ((b1, b2), (hard1, hard2)):
        assert torch.allclose(ciou_reference(a, b), ciou_by_hand(a, b), rtol=1e-9, atol=1e-12)
    assert abs(ciou_reference(hard1, hard2)[0].item() - 1) < 1e-6  # identical boxes
    assert ciou_reference(hard1, hard2)[1] < 0  # disjoint: IoU 0, minus the centre-distance penalty


def test_targets_go_to_the_cell_and_its_two_nearest_neighbours():
    model = YOLOv5("n", nc=3)
    loss = ComputeLoss(model.detect, imgsz=256)
    preds = [torch.zeros(1, 3, s, s, 8) for s in (32, 16, 8)]
    # one 24x24 px target centred at (100.4, 60.6) px: on P3 (stride 8) cell (12.55, 7.575) -> x frac 0.55, y 0.575
    target = torch.tensor([[0, 2, 100.4 / 256, 60.6 / 256, 24 / 256, 24 / 256]])
    b, a, gj, gi, tbox, tcls, anchors, grid, _ = loss.build_targets(preds, target)[0]
    cells = sorted(set(zip(gi.tolist(), gj.tolist(), strict=True)))
    assert cells == [(12, 7), (12, 8), (13, 7)]  # own cell, right neighbour (x frac > .5), lower (y frac > .5)
    assert set(a.tolist()) == {0, 1, 2} and (tcls == 2).all() and (b == 0).all()  # 3 / 8 = all P3 anchors fit
    assert (tbox[:, :2] > -0.5).all() and (tbox[:, :2] < 1.5).all()
    far = loss.build_targets(preds, torch.tensor([[0, 0, 0.5, 0.5, 0.9, 0.02]]))[0]  # wh ratio > 4: no anchor
    assert far[0].numel() == 0


def test_a_model_overfits_one_batch():
    torch.manual_seed(0)
    model = YOLOv5("n", nc=3).train()
    loss = ComputeLoss(model.detect, imgsz=128)
    images = torch.rand(2, 3, 128, 128)
    targets = torch.tensor([[0, 0, 0.3, 0.3, 0.2, 0.25], [0, 1, 0.7, 0.6, 0.3, 0.2], [1, 2, 0.5, 0.5, 0.4, 0.4]])
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    first = None
    for _ in range(40):
        opt.zero_grad()
        total, parts = loss(model(images), targets)
        total.backward()
        opt.step()
        first = first if first is not None else parts.clone()
    # box and class losses fall; objectness may rise at first since its targets are the growing IoUs
    assert torch.isfinite(total) and parts[0] < first[0] and parts[2] < first[2] and parts.sum() < 0.5 * first.sum()


def random_targets(n_images: int, per_image: int, nc: int, seed: int) -> torch.Tensor:
    """[M, 6] targets, sizes from tiny to whole-image, centres anywhere (edges included)."""
    g = torch.Generator().manual_seed(seed)
    m = n_images * per_image
    wh = torch.exp(torch.randn(m, 2, generator=g) * 1.2 - 2.0).clamp(0.004, 1)
    xy = torch.rand(m, 2, generator=g)
    cls = torch.randint(0, nc, (m, 1), generator=g)
    return torch.cat([(torch.arange(m) // per_image)[:, None], cls, xy, wh], 1).float()


def test_the_assignment_made_ahead_is_the_steps_own_and_gives_the_same_loss():
    """The trainer's loader assigns targets on the CPU with `assigner()`: the same indices, boxes and anchors as the
    step's own assignment, at every multi-scale size, after the anchors changed (autoanchor), and so the same loss."""
    torch.manual_seed(0)
    model = YOLOv5("n", nc=5).train()
    loss = ComputeLoss(model.detect, imgsz=128)
    model.detect.anchors.mul_(torch.tensor([1.3, 0.8]))  # autoanchor's in-place change, before the assigner is made
    assign = loss.assigner()
    for size, (n_images, per_image) in ((96, (3, 7)), (128, (2, 40)), (160, (1, 1)), (64, (2, 0))):
        targets = random_targets(n_images, per_image, 5, seed=size)
        preds = model(torch.rand(n_images, 3, size, size))
        ahead, own = assign(targets, (size, size)), loss.build_targets(preds, targets)
        assert same_assignment(ahead, own)
        assert [level[7] for level in ahead] == [(size // s, size // s) for s in (8, 16, 32)]  # the levels' grids
        if per_image > 1:
            assert sum(level[0].numel() for level in ahead) > len(targets)  # neighbours and anchors: several each
        total, items = loss(preds, targets, ahead)
        total_own, items_own = loss(preds, targets)
        assert torch.equal(total, total_own) and torch.equal(items, items_own)
    targets = random_targets(2, 4, 5, seed=1)
    with pytest.raises(ValueError, match="grid"):  # made for another image size
        loss(model(torch.rand(2, 3, 128, 128)), targets, assign(targets, (96, 96)))


def test_focal_loss_is_torchvisions_sigmoid_focal_loss_and_reweights_the_loss():
    from torchvision.ops import sigmoid_focal_loss

    from yolo.loss import FocalLoss, LossHyp

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(64, 7, generator=g) * 3
    for target in ((torch.rand(64, 7, generator=g) > 0.7).float(), torch.rand(64, 7, generator=g)):  # hard and IoU
        focal = FocalLoss(torch.nn.BCEWithLogitsLoss(), gamma=1.5)
        torch.testing.assert_close(focal(logits, target), sigmoid_focal_loss(logits, target, 0.25, 1.5, "mean"))
    torch.manual_seed(0)
    model = YOLOv5("n", nc=3).train()
    preds = model(torch.rand(2, 3, 128, 128))
    targets = random_targets(2, 4, 3, seed=1)
    plain = ComputeLoss(model.detect, imgsz=128)(preds, targets)[1]
    focal = ComputeLoss(model.detect, imgsz=128, hyp=LossHyp(fl_gamma=1.5))(preds, targets)[1]
    # the box term is not focal; objectness and class terms are, and shrink (confident cells count less)
    assert focal[0] == plain[0] and (focal[1:] < plain[1:]).all() and (focal[1:] > 0).all()
