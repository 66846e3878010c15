"""`fastload detect --visualize`, as YOLOv5's feature_visualization: every layer's output of an image, numbered by
YOLOv5's layer index; the built-in models' Upsample and Concat layers (no modules of their own) equal those a
model yaml builds as modules."""

import json
import os

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import cli
from PIL import Image

from fastload.cli import main
from yolo.model import YOLOv5
from yolo.visualize import FeatureMaps
from yolo.weights import transfer
from yolo.yaml_model import YamlModel

HUB = json.load(open(os.path.join(os.path.dirname(__file__), "data", "yolov5-hub.json")))
N_KINDS = ["Conv", "Conv", "C3", "Conv", "C3", "Conv", "C3", "Conv", "C3", "SPPF", "Conv", "Upsample", "Concat", "C3",
           "Conv", "Upsample", "Concat", "C3", "Conv", "Concat", "C3", "Conv", "Concat", "C3"]  # fmt: skip


@pytest.mark.parametrize("size", ["n", "n6"])
def test_the_built_in_models_layers_are_the_yaml_models_layers(size):
    """The same weights in the built-in model and in YamlModel(yolov5n.yaml): the same layer numbers, kinds and
    outputs, Upsample and Concat included (derived for the built-in, modules of the yaml model)."""
    torch.manual_seed(0)
    built_in = YOLOv5(size, nc=3).eval()
    arch = {**HUB[f"yolov5{size}.yaml"]["yaml"], "depth_multiple": 0.33, "width_multiple": 0.25}
    from_yaml = YamlModel(arch, nc=3).eval()
    assert transfer(from_yaml, built_in.state_dict(), size) == (len(from_yaml.state_dict()),) * 2
    x = torch.rand(2, 3, 192, 128)  # multiples of 64 (the P6 stride)
    layers = []
    for model in (built_in, from_yaml):
        maps = FeatureMaps(model)
        with torch.no_grad():
            model(x)
            model(torch.zeros_like(x))  # a second pass is not kept
        layers.append([maps.of_image(j) for j in range(2)])
        maps.remove()
        model(x)  # the hooks are gone
        assert not maps.outputs or len(maps.outputs) == len(layers[-1][0]) - len(maps.upsampled)
    for ours, theirs in zip(*layers, strict=True):
        assert [(i, kind) for i, kind, _ in ours] == [(i, kind) for i, kind, _ in theirs]
        for (i, kind, a), (_, _, b) in zip(ours, theirs, strict=True):
            assert a.shape == b.shape and torch.allclose(a, b, atol=1e-5), (i, kind)
    kinds = [kind for _, kind, _ in layers[0][0]]
    assert len(kinds) == len(from_yaml.model) - 1  # every layer but Detect
    if size == "n":
        assert kinds == N_KINDS
    assert layers[0][0][0][2].shape == (16, 96, 64) and not torch.equal(layers[0][0][0][2], layers[0][1][0][2])


def test_detect_visualize_writes_each_layer_of_each_image_and_frame(overfit, exported, tmp_path):
    import av

    image = os.path.join(overfit["images"], sorted(os.listdir(overfit["images"]))[0])
    clip = tmp_path / "clip.mp4"  # 3 frames; --vid-stride 3 takes the third
    with av.open(str(clip), "w") as out, Image.open(image) as picture:
        stream = out.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = picture.width // 2 * 2, picture.height // 2 * 2, "yuv420p"
        frame = np.asarray(picture.convert("RGB"))[: stream.height, : stream.width]
        for _ in range(3):
            out.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")))
        out.mux(stream.encode())
    got = cli("detect", image, str(clip), "--weights", overfit["weights"], "--project", str(tmp_path), "--name", "v",
              "--visualize", "--vid-stride", "3", "--json")  # fmt: skip
    folder = tmp_path / "v" / os.path.splitext(os.path.basename(image))[0]
    assert got["visualized"] == 2 and got["images"] == 1 and got["frames"] == 1
    names = {f"stage{i}_{kind}_features" for i, kind in enumerate(N_KINDS)}
    for where in (folder, tmp_path / "v" / "clip_1"):  # an image's folder, a frame's (the frames taken, as labels)
        assert set(os.listdir(where)) == {f"{n}.{ext}" for n in names for ext in ("png", "npy")}
    with Image.open(image) as im:
        w, h = im.size
    first, last = np.load(folder / "stage0_Conv_features.npy"), np.load(folder / "stage23_C3_features.npy")
    side = 160 * max(w, h) // max(w, h)  # the letterbox: long side 160, the short one up to a multiple of 32
    assert first.dtype == np.float32 and first.shape[0] == 16 and max(first.shape[1:]) == side // 2
    assert last.shape[0] == 256 and max(last.shape[1:]) == side // 32 and np.isfinite(last).all()
    with Image.open(folder / "stage0_Conv_features.png") as png:
        assert png.format == "PNG" and min(png.size) > 300
    for args, message in {
        (image, "--weights", os.path.join(exported["dir"], "dynamic.onnx")): "--visualize draws each layer's output",
        ("rtsp://127.0.0.1:9/live", "--weights", overfit["weights"]): "--visualize writes a folder per frame",
    }.items():
        result = CliRunner().invoke(main, ["detect", *args, "--visualize", "--project", str(tmp_path)])
        line = result.stderr.strip().splitlines()[-1]
        assert result.exit_code == 2 and message in line and "Traceback" not in result.output, (args, line)
