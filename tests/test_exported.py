"""Exported models in `fastload val` and `fastload detect` (YOLOv5's DetectMultiBackend): the overfit model as a
dynamic ONNX file scores and detects as its checkpoint does; files exported for one shape (ONNX for batch 1,
TorchScript for batch 2, 160 px) get square batches of their side, cut to their batch, and score as the checkpoint
does on square batches; mistakes are one-line errors."""

import os

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import cli
from test_detect import found, read_labels

from fastload.cli import main
from fastload.loader.val_loader import ValLoader
from fastload.store import open_store
from yolo.exported import Exported, read_model
from yolo.val import validate
from yolo.weights import read_weights


@pytest.fixture(scope="module")
def torchscript(overfit, tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("ts") / "best.torchscript")
    cli("export", "--weights", overfit["weights"], "--include", "torchscript", "--batch", "2", "-o", path)
    return path


def run_val(*args: str) -> dict:
    return cli("val", *args, "--batch", "5", "--device", "cpu", "--json")


def test_val_scores_an_export_as_its_checkpoint_on_the_same_batches(overfit, exported, torchscript):
    store = read_weights(overfit["weights"]).config["data"]
    checkpoint = run_val("--weights", overfit["weights"])
    dynamic = run_val("--weights", exported["dynamic"]["path"], "--data", store)
    assert (dynamic["format"], dynamic["imgsz"], dynamic["images"]) == ("onnx", 160, 16)  # imgsz: the file's
    for key in ("map50", "map50_95", "precision", "recall"):  # the same rectangles: the same predictions
        assert abs(dynamic[key] - checkpoint[key]) < 1e-3, key
    assert checkpoint["map50"] > 0.8 and checkpoint["format"] == "fastload"
    # square batches of 160, as the export takes, through the checkpoint's own model
    images = open_store(store, "val")
    model = read_weights(overfit["weights"]).model().fuse()
    square = validate(model, ValLoader(images, 160, 5, rect=False, workers=1), images)
    for path, fmt in ((exported["fixed"]["path"], "onnx"), (torchscript, "torchscript")):
        got = run_val("--weights", path, "--data", store)  # batches of 5, cut to the file's 1 or 2
        assert (got["format"], got["imgsz"], got["images"]) == (fmt, 160, 16)
        for key in ("map50", "map50_95", "precision", "recall"):
            assert abs(got[key] - square[key]) < 1e-3, (path, key)
    result = CliRunner().invoke(main, ["val", "--weights", torchscript, "--data", store, "--imgsz", "320", "--json"])
    assert result.exit_code == 0 and "takes 160x160 inputs: --imgsz 320 is not used" in result.stderr


def test_detect_finds_with_an_export_what_the_checkpoint_finds(overfit, exported, torchscript, tmp_path):
    def labels(weights: str, name: str) -> dict[str, np.ndarray]:
        got = cli("detect", overfit["images"], "--weights", weights, "--project", str(tmp_path), "--name", name,
                  "--nosave", "--save-txt", "--save-conf", "--batch", "5", "--json")  # fmt: skip
        assert got["images"] == 16 and got["format"] == read_model(weights).source
        folder = tmp_path / name / "labels"
        return {n: read_labels(folder / n) for n in sorted(os.listdir(folder))}

    checkpoint = labels(overfit["weights"], "pt")
    dynamic = labels(exported["dynamic"]["path"], "onnx")
    assert dynamic.keys() == checkpoint.keys() and sum(len(v) for v in checkpoint.values()) >= 16
    for n, rows in checkpoint.items():
        assert rows.shape == dynamic[n].shape and np.allclose(rows, dynamic[n], atol=2e-3), n
    truth = {n: np.loadtxt(os.path.join(overfit["labels"], n), ndmin=2).reshape(-1, 5) for n in checkpoint}
    for weights, name in ((exported["fixed"]["path"], "fixed"), (torchscript, "ts")):
        square = labels(weights, name)  # square batches: boxes near the checkpoint's, on the labelled objects
        assert square.keys() == checkpoint.keys()
        hits = np.concatenate([found(truth[n], square[n], 0.5) for n in truth])
        assert hits.mean() >= 0.9, (weights, hits.mean())


def test_an_export_for_one_shape_cuts_and_pads_batches_to_its_own(overfit, exported, torchscript):
    """Batches of 5 through files for batches of 1 and 2: the predictions of each image as alone."""
    import torch

    x = torch.rand(5, 3, 160, 160)
    model = read_weights(overfit["weights"]).model().fuse().eval()
    with torch.no_grad():
        want = model(x)[0]
    for path, batch in ((exported["fixed"]["path"], 1), (torchscript, 2), (exported["dynamic"]["path"], None)):
        m = read_model(path)
        assert isinstance(m, Exported) and m.batch == batch and m.stride == 32
        assert m.names == ["circle", "rectangle", "triangle"]
        got, raw = m(x)
        assert raw is None and got.shape == want.shape and torch.allclose(got, want, rtol=1e-4, atol=1e-3), path
    with pytest.raises(Exception, match="takes 160x160 inputs, not 128x160"):
        read_model(torchscript)(torch.rand(2, 3, 128, 160))


def test_export_mistakes_in_val_detect_and_train_are_one_line_errors(overfit, exported, tmp_path):
    store = read_weights(overfit["weights"]).config["data"]
    (tmp_path / "fake.onnx").write_text("not a model")
    (tmp_path / "fake.torchscript").write_bytes(b"PK not a zip")
    dynamic = exported["dynamic"]["path"]
    mistakes = {
        ("val", "--weights", dynamic): "dynamic.onnx: an ONNX file names no dataset: give --data",
        ("val", "--weights", dynamic, "--data", store, "--augment"): "--augment runs the model at three scales",
        ("detect", overfit["images"], "--weights", dynamic, "--augment"): "it needs the .pt checkpoint",
        ("val", "--weights", str(tmp_path / "fake.onnx"), "--data", store): "fake.onnx: not a readable onnx model",
        ("detect", overfit["images"], "--weights", str(tmp_path / "fake.torchscript")): (
            "fake.torchscript: not a readable torchscript model"
        ),
        ("val", "--weights", str(tmp_path / "none.onnx"), "--data", store): "none.onnx: no such file",
        ("train", "--weights", dynamic, "--data", store, "--epochs", "1"): (
            "dynamic.onnx: an exported model runs in val and detect; this needs a .pt checkpoint"
        ),
        ("export", "--weights", dynamic): "this needs a .pt checkpoint",
    }
    for args, message in mistakes.items():
        result = CliRunner().invoke(main, list(args))
        lines = result.stderr.strip().splitlines()
        assert result.exit_code == 2 and message in lines[-1] and "Traceback" not in result.output, (args, lines)
