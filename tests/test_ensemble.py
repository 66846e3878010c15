"""YOLOv5's model ensembling (`--weights a.pt b.pt` in val and detect, a list in the Python detector): the models'
decoded predictions pooled for one NMS, with test-time augmentation per model; checkpoints that cannot join are
one-line errors."""

import os
import re

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import cli
from PIL import Image

from fastload.cli import main
from fastload.cli_inference import spread_weights
from fastload.errors import FastloadError
from yolo.ensemble import Ensemble, EnsembleWeights
from yolo.exported import read_model
from yolo.predictor import Detector
from yolo.study import SIZES
from yolo.tta import forward_augment
from yolo.yaml_model import build_model

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
YOLOV5N, YOLOV5N6, YOLOV5N_SEG = (os.path.join(DATA, f"yolov5{k}-3cls.pt") for k in ("n", "n6", "n-seg"))


def test_the_names_after_weights_that_are_model_files_become_more_weights():
    assert spread_weights(["a.jpg", "--weights", "a.pt", "b.PT", "c.onnx", "d.jpg", "--conf", "0.3", "e.pt"]) == [
        "a.jpg", "--weights", "a.pt", "--weights", "b.PT", "--weights", "c.onnx", "d.jpg", "--conf", "0.3", "e.pt",
    ]  # fmt: skip
    assert spread_weights(["--weights=a.pt", "b.torchscript"]) == ["--weights=a.pt", "--weights", "b.torchscript"]
    assert spread_weights(["--weights", "a.pt", "--", "b.pt"]) == ["--weights", "a.pt", "--", "b.pt"]
    assert spread_weights(["--source", "a.pt", "b.pt"]) == ["--source", "a.pt", "b.pt"]  # only after --weights


def test_an_ensemble_pools_its_models_predictions_and_their_augmented_passes(overfit):
    """A fastload checkpoint with YOLOv5's P5 and P6 checkpoints: the outputs of each, concatenated along the
    anchors (YOLOv5's NMS ensemble); inputs are multiples of the largest stride; TTA runs each model's passes."""
    paths = [overfit["weights"], YOLOV5N, YOLOV5N6]
    w = read_model(paths)
    assert isinstance(w, EnsembleWeights) and w.stride == 64 and w.names == ["circle", "rectangle", "triangle"]
    assert w.config["imgsz"] == 160  # the first model's run: its defaults
    ensemble = w.model().eval()
    alone = [read_model(p).model().eval() for p in paths]
    assert isinstance(ensemble, Ensemble) and ensemble.grid_size == 64
    x = torch.rand(2, 3, 128, 192)
    with torch.no_grad():
        pooled, raw = ensemble(x)
        each = [m(x)[0] for m in alone]
        assert raw is None and pooled.shape == (2, sum(y.shape[1] for y in each), 8)
        assert torch.equal(pooled, torch.cat(each, 1))
        augmented = [forward_augment(m, x) for m in alone]
        assert torch.equal(forward_augment(ensemble, x), torch.cat(augmented, 1))
    assert augmented[0].shape[1] != each[0].shape[1]  # the passes, not the plain output


def test_a_model_with_itself_validates_as_the_model_alone(overfit):
    """Every box twice: NMS keeps one of each pair, so the scores are the model's; the JSON lists the models."""
    alone = cli("val", "--weights", overfit["weights"], "--json")
    both = cli("val", "--weights", overfit["weights"], overfit["weights"], "--json")
    assert alone["map50"] > 0.6 and alone["models"] == [{"weights": overfit["weights"], "format": "fastload",
                                                         "epochs": alone["epochs"]}]  # fmt: skip
    for key in ("map50", "map50_95", "precision", "recall"):
        assert both[key] == pytest.approx(alone[key], abs=1e-9), key
    assert both["weights"] == [overfit["weights"]] * 2 and both["format"] == "ensemble" and len(both["models"]) == 2
    assert both["speed_ms"]["inference"] > 0 and both["imgsz"] == alone["imgsz"] == 160
    mixed = cli("val", "--weights", overfit["weights"], "--weights", YOLOV5N, "--augment", "--json")  # repeated too
    assert [m["format"] for m in mixed["models"]] == ["fastload", "yolov5"] and mixed["augment"]
    assert mixed["map50_95"] != alone["map50_95"]  # the untrained YOLOv5 model's boxes joined


def test_detect_takes_the_sources_around_the_weights(overfit, tmp_path):
    """`detect DIR --weights a.pt b.pt IMAGE`: two models, and both sources; a model with itself finds the boxes
    it finds alone."""
    images = sorted(os.listdir(overfit["images"]))
    one = os.path.join(overfit["images"], images[0])
    args = ["--imgsz", "160", "--nosave", "--save-txt", "--save-conf", "--json"]
    alone = cli("detect", overfit["images"], one, "--weights", overfit["weights"], "--project", str(tmp_path), *args)
    both = cli("detect", overfit["images"], "--weights", overfit["weights"], overfit["weights"], one,
               "--project", str(tmp_path), "--name", "both", *args)  # fmt: skip
    assert both["weights"] == [overfit["weights"]] * 2 and both["format"] == "ensemble"
    assert both["images"] == alone["images"] == len(images) + 1
    assert alone["detections"] > len(images)
    for name in images:
        label = os.path.splitext(name)[0] + ".txt"
        with open(os.path.join(alone["labels"], label)) as a, open(os.path.join(both["labels"], label)) as b:
            assert a.read() == b.read(), name


def test_the_python_detector_takes_a_list(overfit):
    picture = np.asarray(Image.open(os.path.join(overfit["images"], sorted(os.listdir(overfit["images"]))[0])))
    alone, both = Detector(overfit["weights"], device="cpu"), Detector([overfit["weights"]] * 2, device="cpu")
    found = alone(picture).xyxy[0]
    assert len(found) > 0 and torch.allclose(both(picture).xyxy[0], found)


def test_models_that_cannot_join_are_one_line_errors(overfit, tmp_path):
    checkpoint = torch.load(overfit["weights"], map_location="cpu", weights_only=False)
    two = tmp_path / "two.pt"
    torch.save(checkpoint | {"ema": build_model("n", nc=2).state_dict(), "names": ["a", "b"]}, two)
    renamed = tmp_path / "renamed.pt"
    torch.save(checkpoint | {"names": ["disc", "box", "wedge"]}, renamed)
    best = overfit["weights"]
    cases = [
        ([best, str(two)], f"{two}: 2 classes, but {best} has 3: an ensemble's models predict the same classes"),
        ([best, YOLOV5N_SEG], f"{YOLOV5N_SEG}: a segmentation model; an ensemble pools the boxes of detection"),
        ([best, "best.onnx"], "best.onnx: an exported model runs alone; an ensemble takes .pt checkpoints"),
    ]
    for paths, message in cases:
        with pytest.raises(FastloadError, match="^" + re.escape(message)):
            read_model(paths)
    said = []
    assert read_model([best, str(renamed)], said.append).names == ["circle", "rectangle", "triangle"]
    assert said == [f"note: {renamed} names its classes disc, box, wedge; the ensemble uses {best}'s: circle, "
                    "rectangle, triangle"]  # fmt: skip
    result = CliRunner().invoke(main, ["detect", overfit["images"], "--weights", best, best, "--visualize"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.stderr.strip().splitlines()[-1] == (
        f"Error: {best} + {best}: --visualize draws one model's layers: give one --weights"
    )
    result = CliRunner().invoke(main, ["val", "--weights", YOLOV5N, YOLOV5N6])
    assert result.exit_code == 2 and result.stderr.strip().splitlines()[-1] == (
        f"Error: {YOLOV5N} + {YOLOV5N6}: the ensemble's first model names no dataset: give --data"
    )


def test_speed_and_study_validate_each_model_alone(overfit):
    """YOLOv5's --task speed with several models times each alone; --task study validates each at the sizes given
    (YOLOv5's: 256 to 1536) into study_<data>_<weights>.txt (YOLOv5's 10 columns) and study.png. A model that names
    no dataset takes the first one's."""
    speed = cli("val", "--weights", overfit["weights"], YOLOV5N, "--task", "speed", "--json")
    assert speed["task"] == "speed" and [r["weights"] for r in speed["runs"]] == [overfit["weights"], YOLOV5N]
    assert all(r["conf"] == 0.25 and r["iou"] == 0.45 and r["format"] != "ensemble" for r in speed["runs"])
    assert speed["runs"][1]["data"] == speed["runs"][0]["data"]
    alone = cli("val", "--weights", overfit["weights"], "--task", "speed", "--json")
    assert speed["runs"][0]["map50_95"] == pytest.approx(alone["map50_95"], abs=1e-9)
    study = cli("val", "--weights", overfit["weights"], YOLOV5N, overfit["weights"], "--task", "study",
                "--study-sizes", "160,320,480", "--batch", "16", "--json")  # fmt: skip
    assert study["sizes"] == [160, 320, 480] and os.path.isfile(study["plot"])
    mine, theirs, again = study["runs"]
    assert [s["imgsz"] for s in mine["sizes"]] == study["sizes"] and theirs["weights"] == YOLOV5N
    assert [s["map50_95"] for s in again["sizes"]] == [s["map50_95"] for s in mine["sizes"]]  # the same model
    assert [os.path.basename(r["file"]) for r in study["runs"]] == [
        "study_sixteen_best.txt", "study_sixteen_yolov5n-3cls.txt", "study_sixteen_best_2.txt"]  # fmt: skip
    rows = np.loadtxt(mine["file"], ndmin=2)
    assert rows.shape == (3, 10) and (rows[:, 4:7] == 0).all()
    np.testing.assert_allclose(rows[:, 3], [s["map50_95"] for s in mine["sizes"]], rtol=1e-3)
    np.testing.assert_allclose(rows[:, 8], [s["speed_ms"]["inference"] for s in mine["sizes"]], rtol=1e-3)
    trained_size = cli("val", "--weights", overfit["weights"], "--json")["map50"]  # at 160
    assert rows[0, 2] == pytest.approx(trained_size, abs=1e-3) and rows[0, 2] > max(rows[1:, 2])  # scores best
    assert rows[-1, 8] > rows[0, 8]  # a 480-pixel input takes longer than a 160-pixel one
    for args, message in (
        (["--save-txt"], "--save-txt: for one validation; --task study validates each model at each size"),
        (["--study-sizes", "320,big"], "--study-sizes 320,big: image sizes, as 256,384,512"),
    ):  # fmt: skip
        result = CliRunner().invoke(main, ["val", "--weights", overfit["weights"], "--task", "study", *args])
        assert result.exit_code == 2 and result.stderr.strip().splitlines()[-1] == f"Error: {message}"
    assert SIZES == tuple(range(256, 1537, 128))  # YOLOv5's default
