"""Starting weights: a real ultralytics/yolov5 checkpoint (tests/data, written by tools/make_yolov5_fixture.py with
YOLOv5's own code, pickled under its release weights' module names) is read without YOLOv5's code, and fastload's
model with its tensors gives YOLOv5's output; tensors transfer by name and shape to a new class count; `fastload
val` and `fastload train --weights` take it; what is not a checkpoint is a one-line error."""

import os
import shutil
import sys

import pytest
import torch
from click.testing import CliRunner
from conftest import cli

from fastload.cli import main
from fastload.errors import FastloadError
from yolo.model import YOLOv5
from yolo.train import TrainConfig, train
from yolo.tta import forward_augment
from yolo.weights import read_weights, transfer

DATA = os.path.join(os.path.dirname(__file__), "data")
YOLOV5N = os.path.join(DATA, "yolov5n-3cls.pt")


def test_a_yolov5_checkpoint_gives_yolov5s_own_output():
    w = read_weights(YOLOV5N)
    assert not any(m == "models" or m.startswith("models.") for m in sys.modules)  # YOLOv5's code was not needed
    assert (w.size, w.names, w.source) == ("n", ["circle", "rectangle", "triangle"], "yolov5")
    model = YOLOv5(w.size, nc=len(w.names))
    model.load_state_dict(w.state)  # strict: every tensor has its place
    expected = torch.load(os.path.join(DATA, "yolov5n-3cls-output.pt"))
    with torch.no_grad():
        got = model.eval()(expected["input"])[0]
    assert got.shape == expected["output"].shape == (1, 756, 8)
    assert torch.allclose(got, expected["output"], rtol=1e-5, atol=1e-4)


def test_test_time_augmentation_gives_yolov5s_augmented_output():
    """`--augment` (val, detect): YOLOv5's three passes (1, mirrored 0.83, 0.67) pooled as its _forward_augment."""
    w = read_weights(YOLOV5N)
    model = YOLOv5(w.size, nc=len(w.names)).eval()
    model.load_state_dict(w.state)
    expected = torch.load(os.path.join(DATA, "yolov5n-3cls-output.pt"))
    with torch.no_grad():
        got = forward_augment(model, expected["input"])
    assert got.shape == expected["augment"].shape == (1, 1611, 8)
    assert torch.allclose(got, expected["augment"], rtol=1e-5, atol=1e-4)


def test_tensors_transfer_by_name_and_shape_to_another_class_count():
    w = read_weights(YOLOV5N)
    model = YOLOv5("n", nc=5)
    head = model.detect.m[0].weight.clone()
    assert transfer(model, w.state) == (344, 350)  # all but the three detection convs' weights and biases
    assert torch.equal(model.b0[0].weight, w.state["b0.0.weight"])
    assert torch.equal(model.detect.anchors, w.state["detect.anchors"])
    assert torch.equal(model.detect.m[0].weight, head)  # 8 outputs per anchor there, 10 here: left as initialised
    with pytest.raises(RuntimeError, match="size mismatch for detect.m.0.weight"):
        model.load_state_dict(w.state)  # so a strict load would have failed


def test_what_is_not_a_checkpoint_is_named(tmp_path):
    (tmp_path / "garbage.pt").write_text("not a checkpoint")
    torch.save({"model": torch.nn.Linear(2, 2)}, tmp_path / "linear.pt")
    torch.save({"state_dict": {}}, tmp_path / "dict.pt")
    cases = {
        "garbage.pt": "garbage.pt: not a fastload or YOLOv5 checkpoint (",
        "linear.pt": "linear.pt: not a YOLOv5 v6+ n/s/m/l/x model (layers differ)",
        "dict.pt": "dict.pt: not a fastload or YOLOv5 checkpoint (no model)",
        "none.pt": "none.pt: no such checkpoint",
    }
    for name, message in cases.items():
        result = CliRunner().invoke(main, ["val", "--weights", str(tmp_path / name), "--data", "x"])
        lines = result.stderr.strip().splitlines()
        assert result.exit_code == 2 and len(lines) == 1 and message in lines[0], (name, lines)


def test_fastload_val_takes_yolov5_weights(demo_store):
    got = cli("val", "--weights", YOLOV5N, "--data", demo_store, "--imgsz", "64", "--device", "cpu", "--json")
    assert got["images"] == 5 and 0 <= got["map50"] <= 1 and got["epochs"] == 0
    result = CliRunner().invoke(main, ["val", "--weights", YOLOV5N])
    assert (
        result.exit_code == 2 and "yolov5n-3cls.pt: a YOLOv5 checkpoint names no dataset: give --data" in result.stderr
    )


def test_train_starts_from_yolov5_weights_and_then_from_its_own(demo_store, tmp_path):
    args = dict(data=demo_store, epochs=1, imgsz=64, batch=8, workers=1, project=str(tmp_path), val_fraction=0.2)
    first = train(TrainConfig(weights=YOLOV5N, name="a", **args), progress=False)
    assert first["pretrained"] == {"weights": YOLOV5N, "source": "yolov5", "transferred": 350, "total": 350}
    ckpt = torch.load(first["last"], map_location="cpu", weights_only=False)
    assert ckpt["config"]["model"] == "n"  # the size of the weights, as none was asked for
    again = read_weights(first["last"])  # a fastload checkpoint: its EMA
    assert again.source == "fastload" and again.epochs == 1 and again.names == ["circle", "rectangle", "triangle"]
    assert all(torch.equal(again.state[k], v.float()) for k, v in ckpt["ema"].items())
    second = train(TrainConfig(weights=first["last"], name="b", **args), progress=False)
    assert second["pretrained"]["source"] == "fastload" and second["pretrained"]["transferred"] == 350


def test_release_names_and_urls_are_fetched_as_yolov5s_attempt_download(tmp_path, monkeypatch):
    """A missing yolov5{n,s,m,l,x}.pt comes from YOLOv5's release (here a mirror: FASTLOAD_WEIGHTS_URL), a URL to
    its file name here; only what reads as weights is kept, and a failed fetch is one line that leaves nothing."""
    mirror, work = tmp_path / "mirror", tmp_path / "work"
    os.makedirs(mirror), os.makedirs(work)
    shutil.copy(YOLOV5N, mirror / "yolov5n.pt")
    shutil.copy(YOLOV5N, mirror / "custom.pt")
    (mirror / "yolov5s.pt").write_text("<html>rate limited</html>")  # what a proxy may serve in its place
    monkeypatch.setenv("FASTLOAD_WEIGHTS_URL", f"file://{mirror}")
    monkeypatch.chdir(work)
    assert read_weights("weights/yolov5n.pt").size == "n"
    os.remove(mirror / "yolov5n.pt")  # the copy fetched is read from now on
    assert read_weights("weights/yolov5n.pt").size == "n" and os.listdir(work / "weights") == ["yolov5n.pt"]
    assert read_weights(f"file://{mirror}/custom.pt").names == ["circle", "rectangle", "triangle"]
    assert os.path.isfile(work / "custom.pt")
    with pytest.raises(FastloadError, match=f"^file://{mirror}/yolov5s.pt: not a fastload or YOLOv5 checkpoint"):
        read_weights("yolov5s.pt")
    result = CliRunner().invoke(main, ["val", "--weights", "yolov5m.pt", "--data", "x"])
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 1 and lines[-1].startswith("Error: yolov5m.pt: no such checkpoint; cannot fetch file")
    with pytest.raises(FastloadError, match="^yolov5s6.pt: no such checkpoint$"):  # not one fastload reads: not fetched
        read_weights("yolov5s6.pt")
    assert sorted(os.listdir(work)) == ["custom.pt", "weights"]
