"""mAP against pycocotools on the same predictions; NMS semantics."""

import numpy as np
import pytest
import torch
from conftest import coco_stats
from PIL import Image

from yolo.curves import confusion_matrix, save_validation_plots
from yolo.metrics import average_precision, evaluate, match, non_max_suppression


def synthetic(seed: int, images: int = 30, nc: int = 4):
    """Ground truth and noisy predictions (jittered true boxes, misclassifications, false positives)."""
    rng = np.random.default_rng(seed)
    gts, preds = [], []
    for _ in range(images):
        m = int(rng.integers(1, 8))
        xy = rng.uniform(0, 500, (m, 2))
        wh = rng.uniform(10, 150, (m, 2))
        gt = np.concatenate([rng.integers(0, nc, (m, 1)), xy, xy + wh], 1)
        det = gt[:, 1:].copy() + rng.normal(0, 1, (m, 4)) * wh.repeat(2, 1) * rng.uniform(0.02, 0.3, (m, 1))
        cls = np.where(rng.random(m) < 0.85, gt[:, 0], rng.integers(0, nc, m))
        k = int(rng.integers(0, 6))
        fxy = rng.uniform(0, 500, (k, 2))
        false = np.concatenate([fxy, fxy + rng.uniform(10, 150, (k, 2))], 1)
        boxes = np.concatenate([det, false])
        boxes = np.concatenate([np.minimum(boxes[:, :2], boxes[:, 2:]), np.maximum(boxes[:, :2], boxes[:, 2:])], 1)
        pred = np.concatenate(
            [boxes, rng.uniform(0.01, 1, (len(boxes), 1)), np.concatenate([cls, rng.integers(0, nc, k)])[:, None]], 1
        )
        gts.append(gt)
        preds.append(pred[np.argsort(-pred[:, 4])][:100])
    return preds, gts


def pycocotools_map(preds, gts) -> tuple[float, float]:
    images, anns, dets = [], [], []
    for i, (p, g) in enumerate(zip(preds, gts, strict=True)):
        images.append({"id": i, "width": 700, "height": 700})
        for c, x1, y1, x2, y2 in g:
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": i,
                    "category_id": int(c),
                    "iscrowd": 0,
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "area": (x2 - x1) * (y2 - y1),
                }
            )
        for x1, y1, x2, y2, conf, c in p:
            dets.append({"image_id": i, "category_id": int(c), "bbox": [x1, y1, x2 - x1, y2 - y1], "score": conf})
    stats = coco_stats(images, anns, dets, "bbox", 4)
    return stats[1], stats[0]  # mAP@0.5, mAP@0.5:0.95


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_map_equals_pycocotools(seed):
    preds, gts = synthetic(seed)
    ours = evaluate(preds, gts)
    map50, map50_95 = pycocotools_map(preds, gts)
    assert 0.1 < map50 < 0.99  # a non-trivial case
    assert abs(ours["map50"] - map50) < 0.002 and abs(ours["map50_95"] - map50_95) < 0.002


def test_nms_multi_label_thresholds_and_cap():
    pred = torch.zeros(1, 4, 5 + 2)
    pred[0, :, :4] = torch.tensor([[50, 50, 20, 20], [51, 50, 20, 20], [200, 200, 30, 30], [300, 300, 10, 10]])
    pred[0, :, 4] = torch.tensor([0.9, 0.8, 0.9, 0.0005])  # the last is below the confidence threshold
    pred[0, :, 5:] = torch.tensor([[0.9, 0.5], [0.9, 0.1], [0.2, 0.9], [1.0, 1.0]])
    (out,) = non_max_suppression(pred)
    kept = {(round(x1.item()), int(c.item())) for x1, _, _, _, _, c in out}
    assert kept == {(40, 0), (40, 1), (185, 0), (185, 1)}  # box 2 suppressed by box 1 (same class); multi-label
    assert torch.allclose(out[:, 4].max(), torch.tensor(0.81))
    (capped,) = non_max_suppression(pred, max_det=2)
    assert len(capped) == 2


def test_nms_hybrid_labels_stand_at_confidence_one_and_suppress_what_they_overlap():
    """YOLOv5's --save-hybrid: labels join the candidates at confidence 1 (even where no prediction passed the
    threshold), and NMS removes the predictions of their class they overlap, not those of another class."""
    pred = torch.zeros(1, 3, 5 + 2)
    pred[0, :, :4] = torch.tensor([[50, 50, 20, 20], [52, 50, 20, 20], [200, 200, 30, 30]])
    pred[0, :, 4] = torch.tensor([0.9, 0.9, 0.9])
    pred[0, :, 5:] = torch.tensor([[0.9, 0.0], [0.0, 0.8], [0.0, 0.9]])
    labels = [torch.tensor([[0, 51, 50, 20, 20], [1, 400, 400, 40, 40]])]  # (cls, cx, cy, w, h) in pixels
    (out,) = non_max_suppression(pred, 0.25, 0.45, labels=labels, multi_label=False)
    kept = {(round(x1.item()), int(c.item()), round(conf.item(), 2)) for x1, _, _, _, conf, c in out}
    assert kept == {(41, 0, 1.0), (42, 1, 0.72), (185, 1, 0.81), (380, 1, 1.0)}  # box 0 gave way to the label
    (plain,) = non_max_suppression(pred, 0.25, 0.45, multi_label=False)
    assert len(plain) == 3 and float(plain[:, 4].max()) < 1


def yolov5_ap_per_class_p_r(tp, conf, pred_cls, target_cls, eps=1e-16):
    """ultralytics/yolov5 utils/metrics.py ap_per_class, the lines that give P and R per class."""

    def smooth(y, f=0.05):
        nf = round(len(y) * f * 2) // 2 + 1
        p = np.ones(nf // 2)
        yp = np.concatenate((p * y[0], y, p * y[-1]), 0)
        return np.convolve(yp, np.ones(nf) / nf, mode="valid")

    i = np.argsort(-conf)
    tp, conf, pred_cls = tp[i], conf[i], pred_cls[i]
    unique_classes, nt = np.unique(target_cls, return_counts=True)
    nc = unique_classes.shape[0]
    px = np.linspace(0, 1, 1000)
    p, r = np.zeros((nc, 1000)), np.zeros((nc, 1000))
    for ci, c in enumerate(unique_classes):
        i = pred_cls == c
        n_l, n_p = nt[ci], i.sum()
        if n_p == 0 or n_l == 0:
            continue
        fpc = (1 - tp[i]).cumsum(0)
        tpc = tp[i].cumsum(0)
        recall = tpc / (n_l + eps)
        r[ci] = np.interp(-px, -conf[i], recall[:, 0], left=0)
        precision = tpc / (tpc + fpc)
        p[ci] = np.interp(-px, -conf[i], precision[:, 0], left=1)
    f1 = 2 * p * r / (p + r + eps)
    i = smooth(f1.mean(0), 0.1).argmax()
    return p[:, i], r[:, i]


def yolov5_confusion_matrix(preds, gts, nc, conf=0.25, iou_thres=0.45):
    """ultralytics/yolov5 utils/metrics.py ConfusionMatrix.process_batch over images, as val.py calls it."""
    from torchvision.ops import box_iou

    matrix = np.zeros((nc + 1, nc + 1))
    for pred, gt in zip(preds, gts, strict=True):
        detections, labels = torch.as_tensor(pred), torch.as_tensor(gt)
        if len(detections) == 0:
            for gc in labels[:, 0].int():
                matrix[nc, gc] += 1
            continue
        detections = detections[detections[:, 4] > conf]
        gt_classes = labels[:, 0].int()
        detection_classes = detections[:, 5].int()
        iou = box_iou(labels[:, 1:], detections[:, :4])
        x = torch.where(iou > iou_thres)
        if x[0].shape[0]:
            matches = torch.cat((torch.stack(x, 1), iou[x[0], x[1]][:, None]), 1).cpu().numpy()
            if x[0].shape[0] > 1:
                matches = matches[matches[:, 2].argsort()[::-1]]
                matches = matches[np.unique(matches[:, 1], return_index=True)[1]]
                matches = matches[matches[:, 2].argsort()[::-1]]
                matches = matches[np.unique(matches[:, 0], return_index=True)[1]]
        else:
            matches = np.zeros((0, 3))
        n = matches.shape[0] > 0
        m0, m1, _ = matches.transpose().astype(int)
        for i, gc in enumerate(gt_classes):
            j = m0 == i
            if n and sum(j) == 1:
                matrix[detection_classes[m1[j]], gc] += 1
            else:
                matrix[nc, gc] += 1
        if n:
            for i, dc in enumerate(detection_classes):
                if not any(m1 == i):
                    matrix[dc, nc] += 1
    return matrix


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_precision_and_recall_are_read_where_yolov5_reads_them(seed):
    """At the confidence maximising the smoothed mean F1 over classes (one for all classes), as ap_per_class."""
    preds, gts = synthetic(seed)
    hits = np.concatenate([match(p, g) for p, g in zip(preds, gts, strict=True)])
    pred, gt = np.concatenate(preds), np.concatenate(gts)
    ours = average_precision(hits, pred[:, 4], pred[:, 5], gt[:, 0])
    p, r = yolov5_ap_per_class_p_r(hits.astype(float), pred[:, 4], pred[:, 5], gt[:, 0])
    np.testing.assert_allclose(ours["p"], p, atol=1e-12)
    np.testing.assert_allclose(ours["r"], r, atol=1e-12)
    assert 0 < ours["precision"] < 1 and 0 < ours["recall"] < 1 and 0 <= ours["f1_conf"] < 1
    assert ours["curves"]["pr"].shape == (4, 1000) and (np.diff(ours["curves"]["pr"], axis=1) <= 1e-12).all()


@pytest.mark.parametrize("seed", [0, 1])
def test_the_confusion_matrix_is_yolov5s(seed):
    preds, gts = synthetic(seed)
    preds[3] = preds[3][:0]  # an image without predictions: all its labels missed
    got = confusion_matrix(preds, gts, 4)
    np.testing.assert_array_equal(got, yolov5_confusion_matrix(preds, gts, 4))
    assert got[:4, :4].trace() > 0 and got[4, :4].sum() > 0 and got[:4, 4].sum() > 0
    # a label found as another class, a missed one, a prediction of nothing
    gt = np.array([[0, 0, 0, 10, 10], [2, 50, 50, 60, 60]], float)
    pred = np.array([[0, 0, 10, 10, 0.9, 1], [100, 100, 110, 110, 0.8, 3]])
    expected = np.zeros((5, 5))
    expected[1, 0] = expected[4, 2] = expected[3, 4] = 1
    np.testing.assert_array_equal(confusion_matrix([pred], [gt], 4), expected)


def test_validation_plots_are_written(tmp_path):
    preds, gts = synthetic(0)
    metrics = evaluate(preds, gts)
    paths = save_validation_plots(metrics, preds, gts, ["a", "b", "c", "d"], str(tmp_path / "v_"))
    names = ["confusion_matrix", "PR_curve", "F1_curve", "P_curve", "R_curve"]
    assert paths == [str(tmp_path / f"v_{n}.png") for n in names]
    for path in paths:
        with Image.open(path) as im:
            assert im.size[0] > 1000 and len(im.getcolors(1 << 20)) > 50  # a drawn picture, not a blank one
