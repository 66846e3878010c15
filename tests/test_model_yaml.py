"""Models from YOLOv5 model yamls: every yaml YOLOv5 ships builds with YOLOv5's parameter count and strides
(tests/data/yolov5-hub.json, written by YOLOv5's own DetectionModel); a real YOLOv5 checkpoint of another
architecture (tests/data/yolov5-blocks.yaml: Focus, BottleneckCSP, ghost, transformer, cross-conv and SPP blocks,
LeakyReLU) is read without YOLOv5's code and gives YOLOv5's output; `fastload train --cfg my.yaml` trains, resumes,
validates, exports and fine-tunes from a built-in model's weights; a yaml's mistakes are one line naming the file."""

import json
import os

import pytest
import torch
import yaml
from click.testing import CliRunner
from conftest import cli

from fastload.cli import main
from fastload.errors import FastloadError
from yolo import blocks, weights
from yolo.model import YOLOv5, model_summary
from yolo.tta import forward_augment
from yolo.weights import freeze, read_weights, transfer
from yolo.yaml_model import YamlModel, layer_table, read_model_yaml

DATA = os.path.join(os.path.dirname(__file__), "data")
BLOCKS_YAML = os.path.join(DATA, "yolov5-blocks.yaml")
BLOCKS = os.path.join(DATA, "yolov5-blocks-3cls.pt")
HUB = json.load(open(os.path.join(DATA, "yolov5-hub.json")))


def test_every_model_yaml_yolov5_ships_builds_as_yolov5_builds_it():
    assert len(HUB) == 28 and {
        "yolov5-p2.yaml",
        "segment/yolov5s-seg.yaml",
        "yolov5-p7.yaml",
        "yolov3-tiny.yaml",
        "yolov5s-ghost.yaml",
    } <= set(HUB)
    for name, made in HUB.items():
        model = YamlModel(made["yaml"], nc=80)
        params = sum(p.numel() for p in model.parameters())
        assert (params, model.detect.stride.int().tolist()) == (made["params"], made["strides"]), name


def test_a_yolov5_checkpoint_of_another_architecture_gives_yolov5s_output():
    w = read_weights(BLOCKS)
    assert w.source == "yolov5" and w.names == ["circle", "rectangle", "triangle"]
    assert isinstance(w.arch, dict) and w.arch["yaml_file"] == "yolov5-blocks.yaml" and w.stride == 32
    model = w.model().eval()
    assert isinstance(model.model[0], torch.nn.Module) and type(model.model[8]).__name__ == "C3TR"
    assert isinstance(model.model[1][2], torch.nn.LeakyReLU)  # the yaml's activation, in each default Conv
    expected = torch.load(BLOCKS.replace(".pt", "-output.pt"))
    with torch.no_grad():
        got, augmented = model(expected["input"])[0], forward_augment(model, expected["input"])
    assert torch.allclose(got, expected["output"], rtol=1e-5, atol=1e-4)
    assert torch.allclose(augmented, expected["augment"], rtol=1e-5, atol=1e-4)
    with torch.no_grad():  # and with its BatchNorms folded, as val and export run it
        assert torch.allclose(model.fuse()(expected["input"])[0], expected["output"], rtol=1e-4, atol=1e-3)


def test_a_built_in_models_weights_go_into_its_yaml_by_yolov5s_layer_numbers():
    """yolov5n.pt (named by fastload's stages) into a model built from yolov5n.yaml (named model.0 .. model.24):
    every tensor finds its place, and the output is YOLOv5's."""
    w = read_weights(os.path.join(DATA, "yolov5n-3cls.pt"))
    model = YamlModel(HUB["yolov5n.yaml"]["yaml"], nc=3)
    assert transfer(model, w.state, w.arch) == (len(model.state_dict()),) * 2
    expected = torch.load(os.path.join(DATA, "yolov5n-3cls-output.pt"))
    with torch.no_grad():
        assert torch.allclose(model.eval()(expected["input"])[0], expected["output"], rtol=1e-5, atol=1e-4)
    back = YOLOv5("n", nc=3)  # and the other way
    assert transfer(back, model.state_dict(), model.arch) == (len(back.state_dict()),) * 2
    p2 = YamlModel({**HUB["yolov5-p2.yaml"]["yaml"], "depth_multiple": 0.33, "width_multiple": 0.25}, nc=3)
    backbone = [k for k in p2.state_dict() if int(k.split(".")[1]) < 10]  # layers 0-9 are yolov5n's; the head not
    done, total = transfer(p2, w.state, w.arch)
    assert len(backbone) <= done < total and torch.equal(p2.model[9].cv2[0].weight, w.state["b4.2.cv2.0.weight"])


def test_the_summary_counts_as_yolov5_does():
    """Layers, parameters and GFLOPs at 640 as YOLOv5's README states them for yolov5n, yolov5s and yolov5s6."""
    for arch, params, gflops in (("n", 1_872_157, 4.5), ("s", 7_235_389, 16.5), ("s6", 12_626_620, 16.8)):
        about = model_summary(YOLOv5(arch))
        assert about["layers"] == (34 if arch == "s6" else 25) and about["parameters"] == params
        assert abs(about["gflops"] - gflops) < 0.1, (arch, about)
    model = YamlModel(HUB["yolov5-p2.yaml"]["yaml"], nc=80)
    assert model_summary(model)["parameters"] == HUB["yolov5-p2.yaml"]["params"]
    rows = layer_table(model).splitlines()
    assert len(rows) == 1 + len(model.model) and rows[-1].split()[:2] == [str(len(model.model) - 1), "[21,"]


def test_contract_and_expand_undo_each_other():
    x = torch.rand(2, 8, 6, 4)
    small = blocks.Contract(2)(x)
    assert small.shape == (2, 32, 3, 2) and torch.equal(blocks.Expand(2)(small), x)
    assert torch.equal(small[:, 8:16], x[:, :, ::2, 1::2])  # YOLOv5's order: (row phase, column phase, channel)


def test_freeze_counts_a_yaml_models_layers():
    model = YamlModel(read_model_yaml(BLOCKS_YAML))
    frozen = freeze(model, 10)  # the backbone
    assert frozen == sum(p.numel() for k, p in model.named_parameters() if int(k.split(".")[1]) < 10)
    assert not model.model[9].cv1[0].weight.requires_grad and model.model[10][0].weight.requires_grad


def test_train_resume_val_and_export_a_yaml_model(demo_store, tmp_path):
    project = str(tmp_path / "runs")
    args = ["--data", demo_store, "--cfg", BLOCKS_YAML, "--imgsz", "64", "--batch", "8", "--epochs", "1"]
    result = CliRunner().invoke(main, ["train", *args, "--workers", "1", "--project", project, "--json"])
    assert result.exit_code == 0, result.stderr
    got = json.loads(result.stdout)
    assert "yolov5-blocks.yaml: 26 layers, 408,548 parameters, 0.9 GFLOPs at 640" in result.stderr  # YOLOv5's count
    assert " 8                -1  1     74,560  C3TR                [128, 128, 1]" in result.stderr  # the layer table
    assert got["model"] == "yolov5-blocks.yaml" and got["epochs"] == 1
    opt = yaml.safe_load(open(os.path.join(project, "exp", "opt.yaml")))
    assert opt["model"]["activation"] == "nn.LeakyReLU(0.1)"  # the run keeps its architecture, not a path to it
    resumed = cli("train", "--resume", got["last"], "--epochs", "2", "--json")
    assert resumed["epochs"] == 2 and resumed["model"] == "yolov5-blocks.yaml"
    w = read_weights(resumed["weights"])
    assert w.arch == opt["model"] and len(w.names) == 3
    val = cli("val", "--weights", resumed["weights"], "--data", demo_store, "--imgsz", "64", "--json")
    assert val["images"] == 5 and 0 <= val["map50"] <= 1
    exported = cli("export", "--weights", resumed["weights"], "--include", "torchscript", "--imgsz", "64", "--json")
    assert exported["checked"] and exported["output"] == [1, 3 * (64 + 16 + 4), 8]  # 3 anchors on 8x8, 4x4, 2x2


def test_a_yaml_with_anchors_3_gets_them_from_the_data(demo_store, tmp_path):
    """YOLOv5's `anchors: 3` (yolov5-p2.yaml, p7): placeholders that autoanchor replaces from the boxes; fine-tuned
    from yolov5n's weights, whose backbone fits."""
    arch = {**HUB["yolov5-p34.yaml"]["yaml"], "depth_multiple": 0.33, "width_multiple": 0.25, "anchors": 3}
    path = tmp_path / "p34-auto.yaml"
    path.write_text(yaml.safe_dump(arch))
    got = cli("train", "--data", demo_store, "--cfg", str(path), "--weights", os.path.join(DATA, "yolov5n-3cls.pt"),
              "--imgsz", "64", "--batch", "8", "--epochs", "1", "--workers", "1", "--project", str(tmp_path / "runs"),
              "--json")  # fmt: skip
    assert got["autoanchor"]["changed"] and len(got["autoanchor"]["anchors"]) == 6  # 3 per level, P3 and P4
    assert 0 < got["pretrained"]["transferred"] < got["pretrained"]["total"]
    result = CliRunner().invoke(main, ["train", "--data", demo_store, "--cfg", str(path), "--noautoanchor"])
    assert result.exit_code == 2 and "drop --noautoanchor" in result.stderr


@pytest.mark.parametrize(
    "text, reason",
    [
        ("nc: [", "not YAML"),
        ("nc: 3\n", "needs backbone and head lists"),
        ("{backbone: [[-1, 1, Conv, [16, 3, 2]]], head: [[-1, 1, Detect, [nc, anchors]]]}", "needs nc, depth_multiple"),
        (
            "{nc: 3, depth_multiple: 1, width_multiple: 1, anchors: 3, backbone: [[-1, 1, Conv, [16, 3, 2]]],"
            " head: [[-1, 1, Flux, [8]]]}",
            "layer 1 [-1, 1, 'Flux', [8]]: unknown module 'Flux'",
        ),
        (
            "{nc: 3, depth_multiple: 1, width_multiple: 1, anchors: 3, backbone: [[-1, 1, Conv, [16, 3, 2]]],"
            " head: [[-1, 1, Conv, [8]]]}",
            "the last layer must be Detect",
        ),
        (
            "{nc: 3, depth_multiple: 1, width_multiple: 1, anchors: 3, backbone: [[-1, 1, Conv, [16, 3, 2]]],"
            " head: [[[-1, 4], 1, Concat, [1]], [-1, 1, Detect, [nc, anchors]]]}",
            "layer 1 [[-1, 4], 1, 'Concat', [1]]",
        ),
        (
            "{nc: 3, depth_multiple: 1, width_multiple: 1, anchors: 3, activation: os.system('x'), backbone: [[-1, 1,"
            " Conv, [16, 3, 2]]], head: [[-1, 1, Detect, [nc, anchors]]]}",
            "is not an nn module call",
        ),
        (
            "{nc: 3, depth_multiple: 1, width_multiple: 1, anchors: 3, backbone: [[-1, 1, Conv, [16, 3, 2]]],"
            " head: [[-1, 1, Classify, [nc]]]}",
            "Classify: classification models are not built here",
        ),
        (
            "{nc: 3, depth_multiple: 1, width_multiple: 1, anchors: 3, backbone: [[-1, 1, Conv, [16, 3, 2]],"
            " [-1, 1, Conv, [16, 3, 2]]], head: [[[-1, 0], 1, Concat, [1]], [[2], 1, Detect, [nc, anchors]]]}",
            "a 256x256 image does not pass through its layers (Sizes of tensors must match",
        ),
    ],
    ids=["yaml", "lists", "keys", "module", "detect", "index", "activation", "classify", "shapes"],
)
def test_a_yamls_mistake_is_one_line_naming_it(tmp_path, text, reason):
    path = tmp_path / "mine.yaml"
    path.write_text(text)
    with pytest.raises(FastloadError, match="mine.yaml: ") as error:
        read_model_yaml(str(path))
    assert reason in str(error.value) and "\n" not in str(error.value)
    result = CliRunner().invoke(main, ["train", "--cfg", str(path)])
    assert result.exit_code == 2 and reason in result.stderr


def test_a_checkpoint_whose_tensors_do_not_fit_its_yaml_is_named():
    model = torch.load(BLOCKS, weights_only=False, pickle_module=weights._PICKLE)["model"]  # YOLOv5's, unpickled
    model.yaml["width_multiple"] = 0.25  # as if someone edited the yaml the checkpoint carries
    with pytest.raises(FastloadError, match=r"odd.pt: its tensors do not fit the model its yaml builds \(at model\.0"):
        weights._read_yaml_model(model, model.state_dict(), [], "odd.pt")
    model.yaml["backbone"][0][2] = "Flux"
    with pytest.raises(FastloadError, match="odd.pt: its model yaml does not build here .*unknown module 'Flux'"):
        weights._read_yaml_model(model, model.state_dict(), [], "odd.pt")


def test_fastload_model_describes_a_name_a_yaml_and_a_checkpoint():
    got = cli("model", "s", "--json")
    assert (got["model"], got["layers"], got["parameters"], got["nc"], got["strides"]) == ("s", 25, 7235389, 80,
                                                                                          [8, 16, 32])  # fmt: skip
    assert got["anchors"][2][2] == [373, 326] and got["yaml"] is None  # COCO's anchors in pixels
    got = cli("model", BLOCKS_YAML, "--nc", "3", "--imgsz", "320", "--json")
    assert got["model"] == "yolov5-blocks.yaml" and got["parameters"] == 408548 and got["yaml"]["nc"] == 3
    assert abs(got["gflops"] - cli("model", BLOCKS_YAML, "--nc", "3", "--json")["gflops"] / 4) < 1e-6  # by area
    got = cli("model", BLOCKS, "--json")  # YOLOv5's checkpoint: its own classes
    assert got["names"] == ["circle", "rectangle", "triangle"] and got["parameters"] == 408548
    result = CliRunner().invoke(main, ["model", BLOCKS_YAML])
    assert result.exit_code == 0 and "C3TR" in result.stderr and "408,548 parameters" in result.stderr
    for arch, message in (("q", "'q' is not one of n, s"), ("none.yaml", "none.yaml: no such model yaml"),
                          ("none.pt", "none.pt: no such checkpoint")):  # fmt: skip
        result = CliRunner().invoke(main, ["model", arch])
        assert result.exit_code == 2 and message in result.stderr, result.stderr
