"""`fastload val`'s per-class table and COCO output: predictions written as COCO results with the ids of a COCO
instances JSON (images by file name, categories by name), evaluated by pycocotools to fastload's mAP; mistakes in
that JSON are one-line errors."""

import json
import os
import shutil
import sys

import pytest
import torch
from click.testing import CliRunner

from fastload.cli import main
from fastload.store import open_store

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools"))
from yolo_to_coco import yolo_to_coco  # noqa: E402

CATEGORY_IDS = [3, 7, 11]  # not the class indices: the file's ids must be the ones written


@pytest.fixture(scope="module")
def coco(overfit, tmp_path_factory) -> str:
    """The overfit images' labels as a COCO instances JSON with image ids 100.. and category ids 3, 7, 11."""
    root = os.path.dirname(os.path.dirname(overfit["images"]))  # <data>/images/train
    names = torch.load(overfit["weights"], map_location="cpu", weights_only=False)["names"]
    path = tmp_path_factory.mktemp("coco") / "instances_train.json"
    path.write_text(json.dumps(yolo_to_coco(root, "train", names, CATEGORY_IDS)))
    return str(path)


def invoke(*args):
    result = CliRunner().invoke(main, ["val", *args, "--json"])
    return result, (json.loads(result.stdout.strip().splitlines()[-1]) if result.exit_code == 0 else None)


def test_coco_predictions_carry_the_files_ids_and_pycocotools_agrees(overfit, coco, tmp_path):
    preds = tmp_path / "out" / "predictions.json"
    # pycocotools keeps 100 detections an image: the same cap here, so both rank the same detections
    result, got = invoke("--weights", overfit["weights"], "--max-det", "100", "--save-json", str(preds),
                         "--coco-json", coco)  # fmt: skip
    assert result.exit_code == 0, result.output[-2000:]
    rows = json.loads(preds.read_text())
    annotations = json.loads(open(coco).read())
    assert len(rows) == got["detections"] > 0 and got["predictions_json"] == str(preds)
    assert {r["category_id"] for r in rows} <= set(CATEGORY_IDS) and len({r["category_id"] for r in rows}) == 3
    assert {r["image_id"] for r in rows} == {im["id"] for im in annotations["images"]}  # 100.., by file name
    assert all(len(r["bbox"]) == 4 and r["bbox"][2] >= 0 and 0 < r["score"] <= 1 for r in rows)
    assert got["map50"] > 0.8 and abs(got["pycocotools"]["map50"] - got["map50"]) < 0.002
    assert abs(got["pycocotools"]["map50_95"] - got["map50_95"]) < 0.002
    # the per-class table: all, then each class with labels
    classes = got["classes"]
    assert (
        classes[0]["name"] == "all"
        and classes[0]["images"] == 16
        and [c["name"] for c in classes[1:]] == [a["name"] for a in annotations["categories"]]
    )
    assert classes[0]["instances"] == sum(c["instances"] for c in classes[1:]) == len(annotations["annotations"])
    assert abs(sum(c["map50_95"] for c in classes[1:]) / 3 - got["map50_95"]) < 1e-9
    assert "Instances" in result.stderr and "mAP50-95" in result.stderr and "pycocotools: mAP@0.5" in result.stderr


def test_without_a_coco_json_ids_are_yolov5s(overfit, tmp_path):
    preds = tmp_path / "p.json"
    result, got = invoke("--weights", overfit["weights"], "--save-json", str(preds), "--conf", "0.25")
    assert result.exit_code == 0, result.output[-2000:]
    rows = json.loads(preds.read_text())
    store = open_store(torch.load(overfit["weights"], map_location="cpu", weights_only=False)["config"]["data"], "val")
    stems = {int(os.path.splitext(os.path.basename(store.path_of(i)))[0]) for i in range(len(store))}
    assert {r["image_id"] for r in rows} <= stems and {r["category_id"] for r in rows} == {0, 1, 2}
    assert min(r["score"] for r in rows) > 0.25 and "pycocotools" not in got


def test_a_coco_json_that_does_not_fit_is_a_one_line_error(overfit, coco, tmp_path):
    data = json.loads(open(coco).read())
    renamed = tmp_path / "renamed.json"
    renamed.write_text(json.dumps({**data, "categories": [{"id": 1, "name": "blob"}]}))
    fewer = tmp_path / "fewer.json"
    fewer.write_text(json.dumps({**data, "images": data["images"][1:]}))
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    mistakes = {
        str(renamed): "renamed.json: no category named 'circle'",
        str(fewer): f"fewer.json: no image for images/train/{data['images'][0]['file_name']}",
        str(broken): "broken.json: not a COCO instances JSON (JSONDecodeError",
        str(tmp_path / "none.json"): "none.json: no such file",
    }
    for path, message in mistakes.items():
        result, _ = invoke("--weights", overfit["weights"], "--coco-json", path)
        lines = result.stderr.strip().splitlines()
        assert result.exit_code == 2 and message in lines[-1] and "Traceback" not in result.output, lines


def test_segmentation_flags_on_a_detection_model_say_they_change_nothing(overfit):
    result, got = invoke("--weights", overfit["weights"], "--mask-ratio", "2", "--no-overlap")
    assert result.exit_code == 0 and "mask_ratio" not in got and "mask_map50" not in got
    assert "best.pt is a detection model: --mask-ratio and --overlap/--no-overlap change nothing" in result.stderr
    result, _ = invoke("--weights", overfit["weights"])
    assert "change nothing" not in result.stderr


def test_a_split_the_store_lacks_is_a_one_line_error_naming_task(overfit):
    result, _ = invoke("--weights", overfit["weights"], "--task", "test")
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    line = result.stderr.strip().splitlines()[-1]
    assert line.endswith(": no split 'test' (has train, val): --task names the split to validate"), line


def test_test_time_augmentation_validates_the_pooled_passes(overfit, tmp_path):
    """`--augment`: YOLOv5's three passes (tests/test_weights.py pins them to YOLOv5's output) pooled for NMS; the
    learned objects are still found, from other predictions than the plain pass's."""
    result, plain = invoke("--weights", overfit["weights"], "--plot", str(tmp_path / "v"))
    assert result.exit_code == 0, result.output[-2000:]
    # YOLOv5's speed line: per image, the wait for the loader, the model, NMS (the loader's start apart)
    assert set(plain["speed_ms"]) == {"preprocess", "inference", "nms"} and plain["loader_startup_s"] > 0
    assert plain["speed_ms"]["inference"] > 0 and plain["speed_ms"]["nms"] > 0
    assert "Speed: " in result.stderr and "ms inference" in result.stderr
    names = ["labels.jpg", "pred.jpg", "confusion_matrix.png", "PR_curve.png", "F1_curve.png", "P_curve.png",
             "R_curve.png"]  # fmt: skip
    assert sorted(os.listdir(tmp_path)) == sorted(f"v_{n}" for n in names)
    assert plain["plots"] == [str(tmp_path / f"v_{n}") for n in names[2:]]
    result, tta = invoke("--weights", overfit["weights"], "--augment")
    assert result.exit_code == 0, result.output[-2000:]
    assert tta["augment"] and not plain["augment"] and tta["images"] == plain["images"] == 16
    assert tta["map50"] > 0.6 and tta["map50_95"] != plain["map50_95"]


def test_saved_labels_hybrid_labels_and_the_run_folder(overfit, tmp_path):
    """YOLOv5 val.py's outputs in PROJECT/NAME (exp, exp2, ...): labels/<image>.txt (--save-txt, --save-conf),
    <weights>_predictions.json (bare --save-json), the plots under YOLOv5's names (bare --plot); --save-hybrid
    writes each image's own labels among the predictions; nothing to save makes no folder."""
    project = tmp_path / "runs"
    common = ("--weights", overfit["weights"], "--project", str(project), "--conf", "0.25")
    result, got = invoke(*common, "--save-txt", "--save-conf", "--save-json", "--plot")
    assert result.exit_code == 0, result.output[-2000:]
    out = project / "exp"
    assert got["save_dir"] == str(out) and got["labels"] == str(out / "labels") and not got["hybrid"]
    stem = os.path.splitext(os.path.basename(overfit["weights"]))[0]
    assert got["predictions_json"] == str(out / f"{stem}_predictions.json")
    plots = ["confusion_matrix.png", "PR_curve.png", "F1_curve.png", "P_curve.png", "R_curve.png"]
    assert got["plots"] == [str(out / p) for p in plots]
    assert {*plots, "val_batch0_labels.jpg", "val_batch0_pred.jpg", "labels"} <= set(os.listdir(out))
    store = open_store(torch.load(overfit["weights"], map_location="cpu", weights_only=False)["config"]["data"], "val")
    stems = sorted(os.path.splitext(os.path.basename(store.path_of(i)))[0] + ".txt" for i in range(len(store)))
    assert sorted(os.listdir(out / "labels")) == stems
    rows = [line.split() for f in stems for line in (out / "labels" / f).read_text().splitlines()]
    assert len(rows) == got["detections"] > 16 and all(len(r) == 6 and 0.25 < float(r[5]) <= 1 for r in rows)
    assert all(0 <= float(v) <= 1 for r in rows for v in r[1:5]) and {r[0] for r in rows} == {"0", "1", "2"}

    result, hybrid = invoke(*common, "--save-hybrid")
    assert result.exit_code == 0, result.output[-2000:]
    out = project / "exp2"
    assert hybrid["save_dir"] == str(out) and hybrid["hybrid"] and "--save-hybrid: " in result.stderr
    assert hybrid["map50"] == hybrid["map50_95"] == 1.0  # the labels themselves, at confidence 1, are ranked first
    for i in range(len(store)):
        name = os.path.splitext(os.path.basename(store.path_of(i)))[0] + ".txt"
        lines = (out / "labels" / name).read_text().splitlines()
        saved = torch.tensor([[float(v) for v in line.split()] for line in lines])
        for label in torch.tensor(store.labels(i), dtype=torch.float32):
            assert (saved - label).abs().max(1).values.min() < 1e-5, (name, label)  # each label is a saved row

    result, plain = invoke("--weights", overfit["weights"], "--project", str(project))
    assert result.exit_code == 0 and plain["save_dir"] is None and plain["labels"] is None
    assert sorted(os.listdir(project)) == ["exp", "exp2"]


def test_coco_yaml_is_scored_by_pycocotools_as_yolov5_does(overfit, coco, tmp_path, monkeypatch):
    """`--data .../coco.yaml` (YOLOv5's name for COCO) turns --save-json on and scores the predictions with the
    annotations/instances_val2017.json beside the data, as YOLOv5's val.py; without that file, it says so."""
    import yaml

    root = os.path.dirname(os.path.dirname(overfit["images"]))  # the overfit data: val is its train split
    spec = yaml.safe_load(open(os.path.join(root, "same.yaml")).read())
    data = tmp_path / "data"
    data.mkdir()
    for sub in ("images", "labels"):
        os.symlink(os.path.join(root, sub), data / sub)
    (data / "coco.yaml").write_text(yaml.safe_dump({**spec, "path": str(data)}))
    monkeypatch.chdir(tmp_path)  # the dataset is packed into runs/stores here
    result, got = invoke("--weights", overfit["weights"], "--data", str(data / "coco.yaml"), "--max-det", "100")
    assert result.exit_code == 0, result.output[-2000:]
    assert "instances_val2017.json: not there, so no pycocotools mAP" in result.stderr and "pycocotools" not in got
    stem = os.path.splitext(os.path.basename(overfit["weights"]))[0]
    assert got["predictions_json"] == os.path.join("runs", "val", "exp", f"{stem}_predictions.json")
    (data / "annotations").mkdir()
    shutil.copy(coco, data / "annotations" / "instances_val2017.json")
    result, got = invoke("--weights", overfit["weights"], "--data", str(data / "coco.yaml"), "--max-det", "100")
    assert result.exit_code == 0, result.output[-2000:]
    assert abs(got["pycocotools"]["map50_95"] - got["map50_95"]) < 0.002 and got["map50"] > 0.8
    assert os.path.isfile(got["predictions_json"]) and got["save_dir"] == os.path.join("runs", "val", "exp2")
