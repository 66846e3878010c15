"""Fused kernels, each beside its plain PyTorch reference (issue 5). Until a fused version lands, the reference
runs everywhere; CPU runs always use the reference."""

from yolo.kernels.ciou import ciou_reference


def ciou(pred, target):
    """CIoU of paired boxes [N, 4] (cx, cy, w, h) -> [N]; YOLOv5's bbox_iou(xywh=True, CIoU=True)."""
    return ciou_reference(pred, target)
