"""YOLOv5's hyperparameter files: read into the optimiser's, the loss's and the augmentation's settings (keys left out
keep hyp.scratch-low's), written back as a run's hyp.yaml; mistakes are one-line errors naming the file; `anchors: 3`
fits the anchors to the data; YOLOv5's `--freeze N` layer numbering; early stopping as YOLOv5's EarlyStopping."""

import pytest
import yaml
from click.testing import CliRunner

from fastload.cli import main
from fastload.cli_model import OPTIMIZERS
from fastload.errors import FastloadError
from fastload.store import open_store
from yolo.autoanchor import check_anchors
from yolo.hyp import SCRATCH_LOW, fits_anchors, hyp_yaml, read_hyp, split_hyp
from yolo.model import YOLOv5
from yolo.optim import OPTIMIZERS as OPTIMIZER_NAMES
from yolo.stopping import EarlyStop
from yolo.train import TrainConfig, saved_config
from yolo.weights import freeze

# YOLOv5's data/hyps/hyp.scratch-high.yaml (v7.0), comments and all
SCRATCH_HIGH = """\
# YOLOv5 🚀 by Ultralytics, GPL-3.0 license
# Hyperparameters for high-augmentation COCO training from scratch
lr0: 0.01  # initial learning rate (SGD=1E-2, Adam=1E-3)
lrf: 0.1  # final OneCycleLR learning rate (lr0 * lrf)
momentum: 0.937  # SGD momentum/Adam beta1
weight_decay: 0.0005  # optimizer weight decay 5e-4
warmup_epochs: 3.0  # warmup epochs (fractions ok)
warmup_momentum: 0.8  # warmup initial momentum
warmup_bias_lr: 0.1  # warmup initial bias lr
box: 0.05  # box loss gain
cls: 0.3  # cls loss gain
cls_pw: 1.0  # cls BCELoss positive_weight
obj: 0.7  # obj loss gain (scale with pixels)
obj_pw: 1.0  # obj BCELoss positive_weight
iou_t: 0.20  # IoU training threshold
anchor_t: 4.0  # anchor-multiple threshold
# anchors: 3  # anchors per output layer (0 to ignore)
fl_gamma: 0.0  # focal loss gamma (efficientDet default gamma=1.5)
hsv_h: 0.015  # image HSV-Hue augmentation (fraction)
hsv_s: 0.7  # image HSV-Saturation augmentation (fraction)
hsv_v: 0.4  # image HSV-Value augmentation (fraction)
degrees: 0.0  # image rotation (+/- deg)
translate: 0.1  # image translation (+/- fraction)
scale: 0.9  # image scale (+/- gain)
shear: 0.0  # image shear (+/- deg)
perspective: 0.0  # image perspective (+/- fraction), range 0-0.001
flipud: 0.0  # image flip up-down (probability)
fliplr: 0.5  # image flip left-right (probability)
mosaic: 1.0  # image mosaic (probability)
mixup: 0.1  # image mixup (probability)
copy_paste: 0.1  # segment copy-paste (probability)
"""


def test_a_yolov5_hyp_file_sets_the_optimiser_the_loss_and_the_augmentation(tmp_path):
    path = tmp_path / "hyp.scratch-high.yaml"
    path.write_text(SCRATCH_HIGH)
    values = read_hyp(str(path))
    assert list(values) == list(SCRATCH_LOW)  # every YOLOv5 key, in its files' order
    optim, loss, augment = split_hyp(values, nominal_batch=32, label_smoothing=0.1)
    assert (optim.lr0, optim.lrf, optim.warmup_bias_lr, optim.nominal_batch) == (0.01, 0.1, 0.1, 32)
    assert (loss.cls, loss.obj, loss.anchor_t, loss.label_smoothing) == (0.3, 0.7, 4.0, 0.1)
    assert (augment.scale, augment.mixup, augment.mosaic) == (0.9, 0.1, 1.0)
    assert not fits_anchors(values)
    partial = tmp_path / "partial.yaml"
    partial.write_text("lr0: 0.001\nmosaic: 0.5\nanchors: 3.412\n")  # hyp.VOC.yaml's evolved anchors round to 3
    values = read_hyp(str(partial))
    assert values == {**SCRATCH_LOW, "lr0": 0.001, "mosaic": 0.5, "anchors": 3.412} and fits_anchors(values)
    again = tmp_path / "again.yaml"  # a run's hyp.yaml reads back to the same values
    again.write_bytes(hyp_yaml(values))
    assert read_hyp(str(again)) == values


@pytest.mark.parametrize(
    "text, message",
    [
        ("lr0: 0.01\nlr_0: 0.02\n", "unknown hyperparameter 'lr_0'"),
        ("mosaic: yes\n", "mosaic must be a number, not True"),
        ("mixup: high\n", "mixup must be a number, not 'high'"),
        ("mosaic: 1.5\n", "hyp mosaic is a probability, not 1.5"),
        ("scale: 1.0\n", "hyp scale must be < 1"),
        ("momentum: 1.0\n", "hyp momentum must be in [0, 1), not 1"),
        ("lr0: -0.01\n", "hyp lr0 must be >= 0, not -0.01"),
        ("anchor_t: 0\n", "hyp anchor_t must be > 0, not 0"),
        ("anchors: 4\n", "anchors 4 asks for 4 anchors per level; fastload's YOLOv5 has 3"),
        ("- lr0\n- 0.01\n", "not a mapping of YOLOv5 hyperparameters"),
        ("lr0: [0.01\n", "not a YAML file ("),
    ],
)
def test_a_mistake_in_a_hyp_file_is_a_one_line_error_naming_the_file(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(FastloadError) as error:
        read_hyp(str(path))
    assert str(error.value).startswith(f"{path}: ") and message in str(error.value)
    result = CliRunner().invoke(main, ["train", "--hyp", str(path), "--data", str(tmp_path / "none")])
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2 and "bad.yaml: " in lines[-1] and message in lines[-1], lines  # before any packing
    assert not (tmp_path / "runs").exists()


def test_yolov5s_hyp_files_are_known_by_name(tmp_path, monkeypatch):
    """`--hyp hyp.scratch-high.yaml` (or data/hyps/...) outside YOLOv5's folder: its values, as the file holds them;
    a file of that name that exists wins."""
    (tmp_path / "high.yaml").write_text(SCRATCH_HIGH)
    high = read_hyp(str(tmp_path / "high.yaml"))
    monkeypatch.chdir(tmp_path)
    assert read_hyp("hyp.scratch-high.yaml") == read_hyp("data/hyps/hyp.scratch-high.yaml") == high
    assert read_hyp("hyp.scratch-med.yaml") == {**high, "copy_paste": 0.0}
    assert read_hyp("hyp.scratch-low.yaml") == SCRATCH_LOW
    _, _, augment = split_hyp(read_hyp("hyp.no-augmentation.yaml"))
    assert (augment.mosaic, augment.mixup, augment.scale, augment.translate, augment.fliplr, augment.hsv_v) == (0,) * 6
    (tmp_path / "hyp.scratch-low.yaml").write_text("lr0: 0.02\n")
    assert read_hyp("hyp.scratch-low.yaml")["lr0"] == 0.02


def test_a_missing_hyp_file_is_named():
    with pytest.raises(FastloadError, match="nowhere.yaml: no such hyperparameter file"):
        read_hyp("nowhere.yaml")


def test_anchors_3_fits_new_anchors_even_when_the_default_ones_would_do(demo_store):
    store = open_store(demo_store, "train")
    kept = YOLOv5("n", nc=3).detect
    report = check_anchors(kept, store.sizes, store.labels, 256)
    assert report["bpr"] >= 0.98 and not report["changed"]  # YOLOv5's COCO anchors cover the demo's boxes
    refitted = YOLOv5("n", nc=3).detect
    report = check_anchors(refitted, store.sizes, store.labels, 256, refit=True)
    assert report["changed"] and not refitted.anchors.equal(kept.anchors)
    assert check_anchors(YOLOv5("n", nc=3).detect, store.sizes, store.labels, 256, thr=1.05)["changed"]  # anchor_t


def test_freeze_follows_yolov5s_layer_numbers():
    def trainable(n):
        model = YOLOv5("n", nc=3)
        frozen = freeze(model, n)
        tops = {name.split(".")[0] for name, p in model.named_parameters() if p.requires_grad}
        assert frozen == sum(p.numel() for p in model.parameters() if not p.requires_grad)
        return tops

    head = {"h_lat5", "h_c3_4", "h_lat4", "h_out3", "h_down3", "h_out4", "h_down4", "h_out5", "detect"}
    assert trainable(0) == {"b0", "b1", "b2", "b3", "b4"} | head
    assert trainable(10) == head  # YOLOv5's layers 0-9: the backbone, SPPF included
    assert trainable(13) == head - {"h_lat5"}  # layers 10-12 (11, 12: upsample and concat, no parameters)
    assert trainable(14) == head - {"h_lat5", "h_c3_4"}
    assert trainable(24) == {"detect"}
    partly = YOLOv5("n", nc=3)
    freeze(partly, 2)  # layer 1 is the first conv of b1, layer 2 its C3
    assert all(not p.requires_grad for p in partly.b1[0].parameters())
    assert all(p.requires_grad for p in partly.b1[1].parameters())


def test_early_stop_is_yolov5s():
    stop = EarlyStop(patience=2)
    assert stop.update(0, 0.0) and not stop.due(0)
    assert stop.update(1, 0.0)  # equal counts as better: a run still at 0 goes on
    assert stop.update(2, 0.3) and not stop.update(3, 0.2) and not stop.due(3)
    assert not stop.update(4, 0.29) and stop.due(4) and stop.best_epoch == 2 and stop.best == 0.3
    never = EarlyStop(patience=0)
    never.update(0, 0.5)
    assert not any(never.due(epoch) for epoch in range(1000))


def test_older_checkpoints_configs_still_resume():
    old = {"data": "x.lmdb", "model": "n", "epochs": 3, "lr0": 0.002, "warmup_epochs": 0.0, "optimizer": "AdamW"}
    config = TrainConfig(**saved_config(old))
    assert config.hyp == {"lr0": 0.002, "warmup_epochs": 0.0} and config.optimizer == "AdamW"


def test_the_cli_offers_yolov5s_optimizers():
    assert OPTIMIZERS == list(OPTIMIZER_NAMES)
    assert yaml.safe_load(hyp_yaml(SCRATCH_LOW)) == SCRATCH_LOW
