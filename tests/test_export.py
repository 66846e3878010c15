"""`fastload export`: the model that learned 16 demo images as ONNX, run by ONNX Runtime on a real letterboxed
image, gives the PyTorch model's output and detections; YOLOv5's metadata is there; mistakes are one-line errors."""

import os

import numpy as np
import onnxruntime
import pytest
import torch
from click.testing import CliRunner
from conftest import cli

from fastload.cli import main
from fastload.loader.files import find_images, scan_images
from fastload.loader.val_loader import ValLoader
from yolo.metrics import non_max_suppression
from yolo.weights import read_weights


def test_the_files_carry_yolov5s_interface(exported):
    fixed, dynamic = exported["fixed"], exported["dynamic"]
    assert fixed["imgsz"] == 160 and fixed["batch"] == 1 and fixed["output"] == [1, 3 * (400 + 100 + 25), 8]
    assert dynamic["batch"] == "dynamic" and dynamic["output"] == ["batch", "anchors", 8]
    assert fixed["checked"] and fixed["max_error"] < 1e-4 and dynamic["checked"] and dynamic["max_error"] < 1e-4
    assert sorted(os.listdir(exported["dir"])) == ["dynamic.onnx", "fixed.onnx"]  # nothing partial left behind
    session = onnxruntime.InferenceSession(fixed["path"], providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    assert meta["stride"] == "32" and eval(meta["names"]) == {0: "circle", 1: "rectangle", 2: "triangle"}
    (images,), (output,) = session.get_inputs(), session.get_outputs()
    assert (images.name, images.shape, output.name, output.shape) == (
        "images",
        [1, 3, 160, 160],
        "output0",
        [1, 1575, 8],
    )
    with pytest.raises(Exception, match="images"):  # a fixed file takes only its own shape
        session.run(None, {"images": np.zeros((1, 3, 128, 160), np.float32)})


def test_onnx_runtime_detects_what_pytorch_detects_on_real_images(overfit, exported):
    """A batch of 4 rect-letterboxed demo images (not square, not the export's batch): same output, same boxes."""
    model = read_weights(overfit["weights"]).model().fuse().eval()
    session = onnxruntime.InferenceSession(exported["dynamic"]["path"], providers=["CPUExecutionProvider"])
    files, _ = scan_images(find_images([overfit["images"]]))
    b = next(iter(ValLoader(files, 160, 4, pad=0.0, workers=1)))
    x = b.images.float() / 255
    assert x.shape[0] == 4 and x.shape[2] != x.shape[3]
    with torch.no_grad():
        want = model(x)[0]
    got = torch.from_numpy(session.run(None, {"images": x.numpy()})[0])
    assert torch.allclose(got, want, rtol=1e-4, atol=1e-3)
    boxes = 0
    for a, c in zip(non_max_suppression(got, 0.25, 0.45), non_max_suppression(want, 0.25, 0.45), strict=True):
        assert a.shape == c.shape and torch.allclose(a, c, rtol=1e-4, atol=1e-3)
        boxes += len(a)
    assert boxes >= 4


def test_torchscript_as_yolov5_writes_it_detects_what_pytorch_detects(overfit, tmp_path):
    """`--include torchscript`: a traced model with YOLOv5's config.txt (shape, stride, names as its
    DetectMultiBackend reads them) that gives the PyTorch model's output on a real letterboxed image."""
    import json

    got = cli("export", "--weights", overfit["weights"], "--include", "torchscript", "--batch-size", "2", "--json")
    path = os.path.splitext(overfit["weights"])[0] + ".torchscript"
    assert got["path"] == path and got["output"] == [2, 3 * (400 + 100 + 25), 8] and got["max_error"] < 1e-4
    extra = {"config.txt": ""}
    loaded = torch.jit.load(path, _extra_files=extra, map_location="cpu")
    int_keys = lambda d: {int(k) if k.isdigit() else k: v for k, v in d.items()}  # noqa: E731 (YOLOv5's reading)
    config = json.loads(extra["config.txt"], object_hook=int_keys)
    assert config == {"shape": [2, 3, 160, 160], "stride": 32, "names": {0: "circle", 1: "rectangle", 2: "triangle"}}
    files, _ = scan_images(find_images([overfit["images"]]))
    b = next(iter(ValLoader(files, 160, 2, rect=False, workers=1)))  # square: the traced shape
    x = b.images.float() / 255
    with torch.no_grad():
        want, mine = read_weights(overfit["weights"]).model().fuse().eval()(x)[0], loaded(x)
    assert torch.allclose(mine, want, rtol=1e-5, atol=1e-4)
    result = CliRunner().invoke(main, ["export", "--weights", overfit["weights"], "--include", "torchscript",
                                       "--dynamic"])  # fmt: skip
    assert result.exit_code == 2 and "--dynamic and --opset are ONNX's" in result.stderr.strip().splitlines()[-1]


def test_export_mistakes_are_one_line_errors(overfit, tmp_path):
    mistakes = {
        ("--weights", str(tmp_path / "none.pt")): "none.pt: no such checkpoint",
        (
            "--weights",
            overfit["weights"],
            "-o",
            str(tmp_path / "m.engine"),
        ): "m.engine: the file name must end in .onnx",
        ("--weights", overfit["weights"], "--opset", "9"): "Invalid value for '--opset'",
    }
    for args, message in mistakes.items():
        result = CliRunner().invoke(main, ["export", *args])
        lines = result.stderr.strip().splitlines()
        assert result.exit_code == 2 and message in lines[-1] and "Traceback" not in result.output, (args, lines)
    assert os.listdir(tmp_path) == []
