"""Starting weights: real ultralytics/yolov5 checkpoints (tests/data, written by tools/make_yolov5_fixture.py with
YOLOv5's own code, pickled under its release weights' module names: a YOLOv5n and a P6 YOLOv5n6) are read without
YOLOv5's code, and fastload's model with their tensors gives YOLOv5's output; tensors transfer by name and shape to
a new class count; `fastload val` and `fastload train --weights` take them, a P6 model at its stride of 64; what is
not a checkpoint is a one-line error."""

import json
import os
import shutil
import sys

import pytest
import torch
from click.testing import CliRunner
from conftest import cli

from fastload.cli import main
from fastload.errors import FastloadError, JobFailed
from yolo.model import YOLOv5
from yolo.train import TrainConfig, train
from yolo.tta import forward_augment
from yolo.weights import read_weights, transfer

DATA = os.path.join(os.path.dirname(__file__), "data")
YOLOV5N = os.path.join(DATA, "yolov5n-3cls.pt")
YOLOV5N6 = os.path.join(DATA, "yolov5n6-3cls.pt")
# fixture: (size, its output's rows for the fixed input, with test-time augmentation)
FIXTURES = {YOLOV5N: ("n", 756, 1611), YOLOV5N6: ("n6", 1530, 3420)}


@pytest.mark.parametrize("path", FIXTURES, ids=os.path.basename)
def test_a_yolov5_checkpoint_gives_yolov5s_own_output(path):
    w = read_weights(path)
    assert not any(m == "models" or m.startswith("models.") for m in sys.modules)  # YOLOv5's code was not needed
    size, rows, _ = FIXTURES[path]
    assert (w.arch, w.names, w.source) == (size, ["circle", "rectangle", "triangle"], "yolov5")
    model = YOLOv5(w.arch, nc=len(w.names))
    model.load_state_dict(w.state)  # strict: every tensor has its place
    expected = torch.load(path.replace(".pt", "-output.pt"))
    with torch.no_grad():
        got = model.eval()(expected["input"])[0]
    assert got.shape == expected["output"].shape == (1, rows, 8)
    assert torch.allclose(got, expected["output"], rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("path", FIXTURES, ids=os.path.basename)
def test_test_time_augmentation_gives_yolov5s_augmented_output(path):
    """`--augment` (val, detect): YOLOv5's three passes (1, mirrored 0.83, 0.67) pooled as its _forward_augment."""
    w = read_weights(path)
    model = YOLOv5(w.arch, nc=len(w.names)).eval()
    model.load_state_dict(w.state)
    expected = torch.load(path.replace(".pt", "-output.pt"))
    with torch.no_grad():
        got = forward_augment(model, expected["input"])
    assert got.shape == expected["augment"].shape == (1, FIXTURES[path][2], 8)
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
        "linear.pt": "linear.pt: not a YOLOv5 n..x6 model, and it carries no model yaml to build it from",
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
    """A missing yolov5{n,s,m,l,x}.pt (or a P6 one, yolov5s6.pt, or a segmentation one, yolov5n-seg.pt) comes from
    YOLOv5's release (here a mirror:
    FASTLOAD_WEIGHTS_URL), a URL to
    its file name here; only what reads as weights is kept, and a failed fetch is one line that leaves nothing."""
    mirror, work = tmp_path / "mirror", tmp_path / "work"
    os.makedirs(mirror), os.makedirs(work)
    shutil.copy(YOLOV5N, mirror / "yolov5n.pt")
    shutil.copy(YOLOV5N, mirror / "custom.pt")
    shutil.copy(YOLOV5N6, mirror / "yolov5n6.pt")
    shutil.copy(os.path.join(os.path.dirname(YOLOV5N), "yolov5n-seg-3cls.pt"), mirror / "yolov5n-seg.pt")
    (mirror / "yolov5s.pt").write_text("<html>rate limited</html>")  # what a proxy may serve in its place
    monkeypatch.setenv("FASTLOAD_WEIGHTS_URL", f"file://{mirror}")
    monkeypatch.chdir(work)
    assert read_weights("weights/yolov5n.pt").arch == "n"
    os.remove(mirror / "yolov5n.pt")  # the copy fetched is read from now on
    assert read_weights("weights/yolov5n.pt").arch == "n" and os.listdir(work / "weights") == ["yolov5n.pt"]
    assert read_weights(f"file://{mirror}/custom.pt").names == ["circle", "rectangle", "triangle"]
    assert read_weights("yolov5n6.pt").arch == "n6" and os.path.isfile(work / "yolov5n6.pt")
    assert read_weights("yolov5n-seg.pt").arch == "n-seg"  # a segmentation model's release weights too
    assert os.path.isfile(work / "custom.pt")
    with pytest.raises(FastloadError, match=f"^file://{mirror}/yolov5s.pt: not a fastload or YOLOv5 checkpoint"):
        read_weights("yolov5s.pt")
    result = CliRunner().invoke(main, ["val", "--weights", "yolov5m.pt", "--data", "x"])
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 1 and lines[-1].startswith("Error: yolov5m.pt: no such checkpoint; cannot fetch file")
    with pytest.raises(FastloadError, match="^yolov8n.pt: no such checkpoint$"):  # not one of YOLOv5's
        read_weights("yolov8n.pt")
    with pytest.raises(JobFailed, match="^yolov5s-cls.pt: no such checkpoint; cannot fetch file"):  # its classifiers'
        read_weights("yolov5s-cls.pt")
    assert sorted(os.listdir(work)) == ["custom.pt", "weights", "yolov5n-seg.pt", "yolov5n6.pt"]


def test_a_p6_model_trains_validates_and_detects_at_its_stride_of_64(demo_store, demo_dataset, tmp_path):
    """yolov5n6 weights make a P6 run: sizes are multiples of 64 (--imgsz rounded up to 128; multi-scale batches and
    the validation's rectangles too, which a stride of 32 would break: the levels would not line up), YOLOv5's
    objectness balance for four levels, `--freeze 12` its backbone; then `val` and `detect` take the checkpoint."""
    from yolo.loss import ComputeLoss

    assert ComputeLoss(YOLOv5("n6", nc=3).detect).balance == (4.0, 1.0, 0.25, 0.06)
    args = ["--data", demo_store, "--weights", YOLOV5N6, "--epochs", "2", "--imgsz", "96", "--batch", "4", "--workers",
            "1", "--multi-scale", "--freeze", "12", "--project", str(tmp_path), "--device", "cpu"]  # fmt: skip
    result = CliRunner().invoke(main, ["train", *args, "--json"])
    assert result.exit_code == 0, result.output
    assert "--imgsz 96: training needs a multiple of the stride 64, at least 128: using 128" in result.stderr
    run = json.loads(result.stdout.strip().splitlines()[-1])
    assert run["pretrained"]["transferred"] == run["pretrained"]["total"] == 460
    ckpt = torch.load(run["last"], map_location="cpu", weights_only=False)
    assert ckpt["config"]["model"] == "n6" and ckpt["config"]["imgsz"] == 128
    start = read_weights(YOLOV5N6).state
    backbone = [k for k in ckpt["model"] if k.startswith(("b0.", "b5.")) and k.endswith(".weight")]
    assert backbone and all(torch.equal(ckpt["model"][k], start[k]) for k in backbone)  # frozen: 0-11
    assert not torch.equal(ckpt["model"]["h_out6.cv3.0.weight"], start["h_out6.cv3.0.weight"])  # trained
    # one image per batch: each its own rectangle (at 256 px a 4:3 one's short side is 224 with a stride of 32)
    got = cli("val", "--weights", run["last"], "--imgsz", "200", "--batch", "1", "--device", "cpu", "--json")
    assert got["images"] == 5 and 0 <= got["map50"] <= 1
    out = tmp_path / "detect"
    found = cli(
        "detect",
        os.path.join(demo_dataset, "images", "val"),
        "--weights",
        run["last"],
        "--imgsz",
        "160",
        "--batch",
        "1",
        "--device",
        "cpu",
        "--project",
        str(tmp_path),
        "--name",
        "detect",
        "--json",
    )
    assert found["imgsz"] == 192 and found["images"] == 5 and len(os.listdir(out)) >= 5
    traced = cli("export", "--weights", run["last"], "--include", "torchscript", "--json")  # at its 128 px
    extra = {"config.txt": ""}
    torch.jit.load(traced["path"], _extra_files=extra, map_location="cpu")
    assert json.loads(extra["config.txt"])["stride"] == 64 and traced["output"] == [1, 3 * (256 + 64 + 16 + 4), 8]
