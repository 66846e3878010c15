"""The YOLOv5 model: parameter counts of n/s/m/l/x and of the P6 models n6..x6 equal YOLOv5's, shapes, fused ==
unfused, Detect decoding."""

import math

import pytest
import torch

from yolo.model import YOLOv5, fit_stride, max_stride

# (unfused, fused) parameter counts of ultralytics/yolov5 v6+ at nc=80 (its DetectionModel built from
# yolov5{n,...,x}.yaml and models/hub/yolov5{n,...,x}6.yaml); the fused ones are its published 1.87M / 7.23M /
# 21.17M / 46.53M / 86.71M, and 3.2M / 12.6M / 35.7M / 76.8M / 140.7M for the P6 models
COUNTS = {
    "n": (1_872_157, 1_867_405),
    "s": (7_235_389, 7_225_885),
    "m": (21_190_557, 21_172_173),
    "l": (46_563_709, 46_533_693),
    "x": (86_749_405, 86_705_005),
    "n6": (3_246_940, 3_239_884),
    "s6": (12_626_620, 12_612_508),
    "m6": (35_731_932, 35_704_908),
    "l6": (76_770_172, 76_726_332),
    "x6": (140_794_780, 140_730_220),
}


def params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("size", list(COUNTS))
def test_parameter_counts_match_yolov5(size):
    model = YOLOv5(size, nc=80)
    assert params(model) == COUNTS[size][0]
    assert params(model.fuse()) == COUNTS[size][1]


def test_output_shapes_and_fused_model_computes_the_same():
    torch.manual_seed(0)
    model = YOLOv5("n", nc=3)
    model.train()
    x = torch.rand(2, 3, 128, 96)
    maps = model(x)
    assert [tuple(m.shape) for m in maps] == [(2, 3, 16, 12, 8), (2, 3, 8, 6, 8), (2, 3, 4, 3, 8)]
    for _ in range(3):  # give BatchNorm non-trivial running statistics
        model(torch.rand(2, 3, 128, 96))
    model.eval()
    with torch.no_grad():
        decoded, _ = model(x)
        fused, _ = model.fuse()(x)
    assert decoded.shape == (2, 3 * (16 * 12 + 8 * 6 + 4 * 3), 8)
    assert torch.allclose(decoded, fused, rtol=1e-4, atol=1e-3)


def test_a_p6_model_detects_on_four_levels_down_to_stride_64():
    model = YOLOv5("n6", nc=3).eval()
    assert model.detect.stride.tolist() == [8, 16, 32, 64] and max_stride("n6") == 64 and max_stride("n") == 32
    assert model.detect.anchors[3, 2].tolist() == [925 / 64, 792 / 64]  # yolov5n6.yaml's largest, in P6 cells
    with torch.no_grad():
        decoded, maps = model(torch.rand(1, 3, 128, 192))
    assert [tuple(m.shape[2:4]) for m in maps] == [(16, 24), (8, 12), (4, 6), (2, 3)]
    assert decoded.shape == (1, 3 * (16 * 24 + 8 * 12 + 4 * 6 + 2 * 3), 8)
    with pytest.raises(RuntimeError):  # 96 is no multiple of 64: its levels do not line up
        model(torch.rand(1, 3, 96, 128))


def test_detect_biases_start_from_yolov5_priors():
    model = YOLOv5("n", nc=3)
    for conv, stride in zip(model.detect.m, (8, 16, 32), strict=True):
        b = conv.bias.view(3, -1)
        assert abs(b[:, 4].mean().item() - math.log(8 / (640 / stride) ** 2)) < 0.1  # objectness prior
        assert abs(b[:, 5:].mean().item() - math.log(0.6 / (3 - 0.99999))) < 0.1  # class prior


def test_unknown_size_is_a_clear_error():
    with pytest.raises(ValueError, match="model size"):
        YOLOv5("q")


def test_image_sizes_round_up_to_the_stride_as_yolov5_checks_them():
    assert [fit_stride(s) for s in (1, 32, 33, 640, 641)] == [32, 32, 64, 640, 672]
    assert [fit_stride(s, floor=64) for s in (16, 40, 64, 65)] == [64, 64, 64, 96]  # train.py's floor: 2 strides
