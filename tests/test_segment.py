"""YOLOv5's segmentation models: the Segment head (YOLOv5's parameter counts, a YOLOv5 checkpoint's output to the
bit), its loss (the mask term from its definition), NMS that carries the mask coefficients, the masks' IoU, and a
run that learns masks, validated by `fastload val`; detect and export say they take detection models."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import cli, coco_stats

from fastload.cli import main
from yolo.loss import SegmentLoss
from yolo.metrics import evaluate, non_max_suppression
from yolo.model import YOLOv5, is_segment
from yolo.segment import crop_mask, mask_iou, process_mask, target_masks
from yolo.weights import read_weights
from yolo.yaml_model import YamlModel

DATA = os.path.join(os.path.dirname(__file__), "data")
HUB = json.load(open(os.path.join(DATA, "yolov5-hub.json")))


def test_segmentation_models_have_yolov5s_parameter_counts():
    counts = {"n": 1_991_549, "s": 7_621_277, "m": 21_990_397, "l": 47_924_957, "x": 88_819_517}  # YOLOv5's, nc=80
    for size, count in counts.items():
        model = YOLOv5(f"{size}-seg", nc=80)
        assert sum(p.numel() for p in model.parameters()) == count, size
        assert model.detect.npr == HUB[f"segment/yolov5{size}-seg.yaml"]["yaml"]["head"][-1][-1][-1] * {
            "n": 0.25, "s": 0.5, "m": 0.75, "l": 1.0, "x": 1.25}[size]  # fmt: skip
    built = YamlModel(HUB["segment/yolov5s-seg.yaml"]["yaml"], nc=80)
    assert is_segment(built) and sum(p.numel() for p in built.parameters()) == counts["s"]


def test_a_yolov5_segmentation_checkpoint_gives_yolov5s_output_and_prototypes():
    w = read_weights(os.path.join(DATA, "yolov5n-seg-3cls.pt"))
    assert (w.arch, w.source, w.segments, w.names) == ("n-seg", "yolov5", True, ["circle", "rectangle", "triangle"])
    model = w.model().eval()
    ref = torch.load(os.path.join(DATA, "yolov5n-seg-3cls-output.pt"))
    with torch.no_grad():
        decoded, maps, proto = model(ref["input"])
    assert decoded.shape == ref["output"].shape == (1, 756, 5 + 3 + 32)
    assert torch.allclose(decoded, ref["output"], rtol=1e-5, atol=1e-4)  # mask coefficients raw, the rest decoded
    assert torch.allclose(proto, ref["proto"], rtol=1e-5, atol=1e-5)
    model.train()
    maps, proto = model(ref["input"])
    assert [m.shape[-1] for m in maps] == [40] * 3 and proto.shape == (1, 32, 24, 32)


def brute_force_mask_term(loss: SegmentLoss, maps, proto, targets, masks) -> torch.Tensor:
    """The mask term from its definition, one match at a time: for each level and image, the mean over its matches
    of BCE(coefficients . prototypes, target mask) inside the target box, over the box's area; summed, times the
    box gain over the batch size."""
    total = torch.zeros(())
    for i, level in enumerate(loss.build_targets(maps, targets)):
        b, a, gj, gi, rows = level[0], level[1], level[2], level[3], level[8]
        per_image = {}
        for k in range(len(b)):
            image, row = int(b[k]), int(rows[k])
            index = row - int((targets[:, 0] < image).sum()) + 1
            coefficients = maps[i][image, a[k], gj[k], gi[k]]
            logits = torch.einsum("c,chw->hw", coefficients[5 + loss.nc :], proto[image])
            gt = (masks[image] == index).float()
            bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, gt, reduction="none")
            cx, cy, w, h = targets[row, 2:6].tolist()
            mh, mw = proto.shape[-2:]
            ys, xs = torch.meshgrid(torch.arange(mh).float(), torch.arange(mw).float(), indexing="ij")
            inside = (xs >= (cx - w / 2) * mw) & (xs < (cx + w / 2) * mw) & (ys >= (cy - h / 2) * mh)
            inside &= ys < (cy + h / 2) * mh
            per_image.setdefault(image, []).append((bce * inside).mean() / (w * h))
        for values in per_image.values():
            total = total + torch.stack(values).mean()
    return total * loss.gain_box / proto.shape[0]


def test_the_mask_loss_is_its_definition_and_teaches_the_prototypes():
    torch.manual_seed(0)
    model = YOLOv5("n-seg", nc=3)
    loss = SegmentLoss(model.detect, imgsz=128)
    x = torch.rand(2, 3, 128, 128)
    targets = torch.tensor([[0, 1, 0.3, 0.3, 0.3, 0.2], [0, 2, 0.6, 0.6, 0.4, 0.5], [1, 0, 0.5, 0.5, 0.5, 0.5]])
    masks = torch.zeros(2, 32, 32, dtype=torch.uint8)
    masks[0, 3:16, 4:15], masks[0, 11:28, 12:26], masks[1, 8:24, 8:24] = 1, 2, 1  # the second paints over the first
    maps, proto = model(x)
    total, items = loss((maps, proto), targets, masks=masks)
    assert items.shape == (4,) and torch.isclose(total, items.sum() * 2)
    want = brute_force_mask_term(loss, [m.detach() for m in maps], proto.detach(), targets, masks)
    assert items[1] > 0 and torch.isclose(items[1], want, rtol=1e-5)
    total.backward()
    assert model.detect.proto.cv3[0].weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="masks"):
        loss((maps, proto), targets)
    half = torch.nn.functional.interpolate(masks[None].float(), (16, 16), mode="nearest")[0].repeat_interleave(2, 1)
    resized = loss(([m.detach() for m in maps], proto.detach()), targets, masks=half.repeat_interleave(2, 2))[1]
    assert torch.isfinite(resized).all()  # other-sized masks are resized to the prototypes' (YOLOv5's nearest)


def test_nms_carries_the_mask_coefficients_and_masks_compare_by_iou():
    pred = torch.zeros(1, 3, 5 + 2 + 4)
    pred[0, :, :4] = torch.tensor([[20, 20, 10, 10], [21, 20, 10, 10], [60, 60, 20, 20]], dtype=torch.float32)
    pred[0, :, 4] = torch.tensor([0.9, 0.8, 0.7])
    pred[0, :, 5:7] = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    pred[0, :, 7:] = torch.arange(12, dtype=torch.float32).view(3, 4)  # each row's coefficients
    (det,) = non_max_suppression(pred, 0.25, 0.45, nm=4)
    assert det.shape == (2, 10) and det[:, 5].tolist() == [0.0, 1.0]  # the second box is suppressed
    assert det[0, 6:].tolist() == [0, 1, 2, 3] and det[1, 6:].tolist() == [8, 9, 10, 11]
    assert non_max_suppression(pred[..., :7], 0.25, 0.45)[0].shape == (2, 6)  # no coefficients without nm

    overlap = torch.zeros(8, 8, dtype=torch.uint8)
    overlap[:4, :4], overlap[4:, 4:] = 1, 2
    gt = target_masks(overlap, 2)
    assert gt.shape == (2, 8, 8) and gt[0].sum() == 16 and gt[1].sum() == 16
    found = torch.zeros(2, 8, 8, dtype=torch.bool)
    found[0, :4, :2], found[1, 4:, 4:] = True, True
    assert torch.allclose(mask_iou(found, gt), torch.tensor([[0.5, 0.0], [0.0, 1.0]]), atol=1e-6)
    cropped = crop_mask(torch.ones(1, 8, 8), torch.tensor([[2.0, 1.0, 5.0, 3.0]]))
    assert cropped.sum() == 6 and cropped[0, 1:3, 2:5].all()
    proto = torch.zeros(1, 8, 8)
    proto[0, :4, :4] = 10.0  # one prototype: the top-left quarter
    masks = process_mask(proto, torch.tensor([[1.0], [1.0]]), torch.tensor([[0, 0, 32, 32], [0, 0, 8, 8.0]]), (32, 32))
    assert masks[0].sum() == 16 and masks[1].sum() == 4  # the second detection's box keeps 2 x 2 of it


def synthetic_masks(seed: int, images: int = 20, nc: int = 3, side: int = 64):
    """Ground-truth masks (random rectangles and discs) and noisy predictions of them (shifted, grown or shrunk,
    some of the wrong class) with false positives: per image (preds [k, 6], gts [m, 5], pred masks, gt masks)."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[:side, :side]

    def shape(cx, cy, r, disc):
        return ((xs - cx) ** 2 + (ys - cy) ** 2 < r * r) if disc else (abs(xs - cx) < r) & (abs(ys - cy) < r * 0.7)

    out = []
    for _ in range(images):
        m = int(rng.integers(1, 6))
        centres, radii, discs = rng.uniform(8, side - 8, (m, 2)), rng.uniform(4, 14, m), rng.random(m) < 0.5
        gt_masks = np.stack([shape(*c, r, d) for c, r, d in zip(centres, radii, discs, strict=True)])
        gt_cls = rng.integers(0, nc, m)
        moved = centres + rng.normal(0, 2.5, (m, 2))
        pred_masks = [shape(*c, r * rng.uniform(0.7, 1.3), d) for c, r, d in zip(moved, radii, discs, strict=True)]
        pred_cls = list(np.where(rng.random(m) < 0.85, gt_cls, rng.integers(0, nc, m)))
        for _ in range(int(rng.integers(0, 4))):  # false positives
            pred_masks.append(shape(*rng.uniform(8, side - 8, 2), rng.uniform(4, 12), rng.random() < 0.5))
            pred_cls.append(int(rng.integers(0, nc)))
        conf = rng.uniform(0.05, 1, len(pred_masks))
        preds = np.concatenate([np.zeros((len(conf), 4)), conf[:, None], np.array(pred_cls)[:, None]], 1)
        gts = np.concatenate([gt_cls[:, None], np.zeros((m, 4))], 1)
        out.append((preds, gts, np.stack(pred_masks), gt_masks))
    return out


@pytest.mark.parametrize("seed", [0, 1])
def test_mask_map_equals_pycocotools_segm(seed):
    """The mask mAP (`evaluate` with the masks' IoU, as validate computes it) against pycocotools' segm evaluation of
    the same masks as RLE."""
    from pycocotools import mask as rle

    data = synthetic_masks(seed)
    ious = [mask_iou(torch.from_numpy(p), torch.from_numpy(g)).numpy() for _, _, p, g in data]
    ours = evaluate([d[0] for d in data], [d[1] for d in data], ious)
    images, anns, dets = [], [], []
    for i, (preds, gts, pred_masks, gt_masks) in enumerate(data):
        images.append({"id": i, "width": 64, "height": 64})
        for c, m in zip(gts[:, 0], gt_masks, strict=True):
            code = rle.encode(np.asfortranarray(m.astype(np.uint8)))
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": int(c), "iscrowd": 0,
                         "segmentation": code, "area": float(m.sum()), "bbox": list(rle.toBbox(code))})  # fmt: skip
        for (*_, conf, c), m in zip(preds, pred_masks, strict=True):
            dets.append({"image_id": i, "category_id": int(c), "score": float(conf),
                         "segmentation": rle.encode(np.asfortranarray(m.astype(np.uint8)))})  # fmt: skip
    stats = coco_stats(images, anns, dets, "segm", 3)
    assert 0.1 < stats[1] < 0.99  # a non-trivial case
    assert abs(ours["map50"] - stats[1]) < 0.002 and abs(ours["map50_95"] - stats[0]) < 0.002


@pytest.fixture(scope="module")
def segmented(tmp_path_factory) -> dict:
    """yolov5n-seg overfit on 16 polygon images, validated on themselves (letterbox only, 160 px)."""
    import yaml

    from fastload.demo_data import DemoConfig, generate
    from fastload.pack import PackOptions, pack
    from yolo.train import TrainConfig, train

    tmp = tmp_path_factory.mktemp("segment")
    root = tmp / "data"
    generate(str(root), DemoConfig(images=16, seed=1, val_fraction=0.0, scale=0.25, polygons=True))
    spec = yaml.safe_load((root / "data.yaml").read_text())
    spec.update(path=str(root), val=spec["train"])
    (root / "same.yaml").write_text(yaml.safe_dump(spec))
    store = str(tmp / "sixteen.lmdb")
    pack(str(root / "same.yaml"), store, PackOptions())
    config = TrainConfig(data=store, model="n-seg", epochs=SEG_EPOCHS, imgsz=160, batch=4, workers=1,
                         optimizer="AdamW", hyp={"lr0": SEG_LR, "warmup_epochs": 0}, nominal_batch=4, augment=False,
                         val_interval=1000, project=str(tmp), name="seg", tensorboard=False)  # fmt: skip
    return train(config, progress=False) | {"store": store, "images": str(root / "images" / "train")}


SEG_EPOCHS, SEG_LR = 100, 0.002


def test_a_segmentation_run_learns_masks_and_val_measures_them(segmented, tmp_path):
    assert segmented["model"] == "n-seg"
    assert segmented["map50"] >= 0.8 and segmented["mask_map50"] >= 0.8
    with open(segmented["results"]) as f:
        header, *rows = f.read().splitlines()
    columns = header.split(",")
    assert {"seg_loss", "val_seg_loss", "mask_map50", "mask_map50_95"} <= set(columns) and len(rows) == SEG_EPOCHS
    seg = [float(r.split(",")[columns.index("seg_loss")]) for r in rows]
    assert seg[-1] < 0.5 * seg[0]
    got = cli("val", "--weights", segmented["weights"], "--json", "--batch", "8", "--project", str(tmp_path))
    assert abs(got["mask_map50"] - segmented["mask_map50"]) < 1e-6 and abs(got["map50"] - segmented["map50"]) < 1e-6


def test_detect_and_export_say_they_take_detection_models(segmented, tmp_path):
    for args in (["detect", "--weights", segmented["weights"], segmented["images"]],
                 ["export", "--weights", segmented["weights"], "-o", str(tmp_path / "m.onnx")]):  # fmt: skip
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 2 and "a segmentation model" in result.stderr, result.output
        assert "detection models only" in result.stderr


def test_a_segmentation_run_on_box_labels_says_its_masks_are_the_boxes_and_quad_is_refused(polygon_data, tmp_path):
    runner = CliRunner()
    common = ["train", "--data", polygon_data["boxes"], "--model", "yolov5n-seg", "--imgsz", "64", "--batch", "4",
              "--workers", "1", "--project", str(tmp_path)]  # fmt: skip
    result = runner.invoke(main, [*common, "--quad"])
    assert result.exit_code == 2 and "--quad" in result.stderr and not os.listdir(tmp_path)
    result = runner.invoke(main, [*common, "--epochs", "1", "--noplots", "--json"])
    assert result.exit_code == 0, result.output
    assert "box labels only: a segmentation model learns each box's rectangle as its mask" in result.stderr
    got = json.loads(result.stdout.strip().splitlines()[-1])
    assert got["model"] == "n-seg" and {"mask_map50", "mask_map50_95"} <= set(got)
