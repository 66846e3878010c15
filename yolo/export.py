"""ONNX and TorchScript export, as YOLOv5's export.py: the Conv-BN-fused model with its Detect decoding, input `images`
[batch, 3, H, W] float in [0, 1], output `output0` [batch, anchors, 5 + nc] (cx, cy, w, h in input pixels,
objectness, class scores; a segmentation model's also its 32 mask coefficients, and a second output `output1` [batch,
32, H/4, W/4]: its mask prototypes, as YOLOv5's), and YOLOv5's metadata (ONNX: `stride`, `names` properties, and
fastload's `imgsz`; TorchScript: its `config.txt` extra file with shape, stride and names), so what reads YOLOv5's
files (its detect.py, ONNX Runtime, TensorRT parsers, torch.jit.load, fastload's val and detect) reads these. Each
file is run against the PyTorch model before it is kept (ONNX: when ONNX Runtime is installed).

    result = export_onnx("runs/train/exp/weights/best.pt", imgsz=640)   # -> best.onnx beside it
    result = export_torchscript("runs/train/exp/weights/best.pt")     # -> best.torchscript
"""

from __future__ import annotations

import importlib.util
import json
import os
import time
import warnings

import numpy as np
import torch
from torch import nn

from fastload.errors import FastloadError
from yolo.classify import classify_arch
from yolo.exported import inference_model
from yolo.model import fit_stride, is_segment
from yolo.weights import read_weights

NEEDS = ("onnx", "onnxscript")  # torch's exporter (torch.export based); onnxruntime checks the result


class Predictions(nn.Module):
    """The model with only its decoded predictions as output (what YOLOv5 exports); a segmentation model's:
    (predictions, prototypes); a classifier's: its logits, N x classes (as YOLOv5 exports its -cls models)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model, self.segment, self.classify = model, is_segment(model), not hasattr(model, "detect")

    def forward(self, images: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        out = self.model(images)
        return out if self.classify else (out[0], out[2]) if self.segment else out[0]


def outputs(model: Predictions, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The exported model's outputs as a tuple: (predictions,) or (predictions, prototypes)."""
    out = model(images)
    return out if isinstance(out, tuple) else (out,)


def exported_weights(weights: str, imgsz: int):
    """The weights to export and the input side: the checkpoint's size, else YOLOv5's 640 (a classifier's 224),
    rounded up to the stride."""
    w = read_weights(weights)
    return w, fit_stride(imgsz or w.config.get("imgsz", 224 if classify_arch(w.arch) else 640), w.stride)


def export_onnx(
    weights: str, out: str = "", imgsz: int = 0, batch: int = 1, dynamic: bool = False, opset: int | None = None
) -> dict:
    """Write `weights` (a fastload or YOLOv5 checkpoint) as ONNX to `out` (default: beside it, `.onnx`) for
    `batch` x 3 x imgsz x imgsz inputs (with `dynamic`: any batch, height and width, multiples of the stride: 32,
    or 64 for a P6 model)."""
    missing = [m for m in NEEDS if importlib.util.find_spec(m) is None]
    if missing:
        raise FastloadError(f"export needs {' and '.join(missing)}: pip install 'fastload[export]'")
    t0 = time.perf_counter()
    w, imgsz = exported_weights(weights, imgsz)
    out = out or os.path.splitext(weights)[0] + ".onnx"
    if not out.endswith(".onnx"):
        raise FastloadError(f"{out}: the file name must end in .onnx")
    model = Predictions(inference_model(w, torch.device("cpu")).eval())
    x = torch.rand(batch, 3, imgsz, imgsz)
    names = ["output0", "output1"] if model.segment else ["output0"]
    shapes = None
    if dynamic:
        side = {"min": 1, "max": 16384 // w.stride}  # x the stride in pixels
        h, ws = torch.export.Dim(f"h{w.stride}", **side), torch.export.Dim(f"w{w.stride}", **side)
        shapes = ({0: torch.export.Dim("batch", min=1, max=1024), 2: w.stride * h, 3: w.stride * ws},)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    tmp = f"{out}.partial-{os.getpid()}.onnx"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporter's notes on tracing and opsets
            program = torch.onnx.export(
                model,
                (x,),
                input_names=["images"],
                output_names=names,
                dynamic_shapes=shapes,
                opset_version=opset,
                dynamo=True,
                verbose=False,
            )
        names = dict(enumerate(w.names))  # as YOLOv5 writes it: str() of {0: name, ...}
        meta = {"stride": str(w.stride), "names": str(names), "imgsz": str(imgsz)}  # imgsz: fastload's, for val
        meta |= {"task": "classify"} if model.classify else {}
        program.model.metadata_props.update(meta)
        program.save(tmp)
        checked = check(tmp, model, x, dynamic, w.stride)
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    output = output_shapes(model, x, dynamic)
    result = report(out, weights, "onnx", imgsz, "dynamic" if dynamic else batch, w.names, output, t0)
    return result | {"opset": program.model.opset_imports[""], **checked}


def report(out: str, weights: str, fmt: str, imgsz: int, batch, names: list[str], output: list, t0: float) -> dict:
    """What an export returns (and `fastload export --json` prints): `output` the predictions' shape (a classifier's:
    its logits'), and a segmentation model's `proto` the prototypes'."""
    return {"path": out, "weights": weights, "format": fmt, "imgsz": imgsz, "batch": batch,
            "bytes": os.path.getsize(out), "names": list(names), "output": output[0],
            "proto": output[1] if len(output) > 1 else None, "seconds": time.perf_counter() - t0}  # fmt: skip


def output_shapes(model: Predictions, x: torch.Tensor, dynamic: bool = False) -> list[list]:
    """The shapes of the exported outputs for input `x` (dynamic: batch, anchors, height and width by name)."""
    if model.classify:
        return [["batch" if dynamic else x.shape[0], model.model.nc]]
    detect = model.model.detect
    no = detect.no
    rows = [x.shape[0], anchors(x.shape[2], x.shape[3], detect), no]
    shapes = [["batch", "anchors", no] if dynamic else rows]
    if model.segment:
        shapes.append(["batch", detect.nm, "height/4", "width/4"] if dynamic else
                      [x.shape[0], detect.nm, x.shape[2] // 4, x.shape[3] // 4])  # fmt: skip
    return shapes


def anchors(h: int, w: int, detect) -> int:
    """Rows of the output for an H x W input: its anchors (3) per cell of each of the Detect's levels."""
    return sum(detect.na * (h // s) * (w // s) for s in detect.stride.int().tolist())


def check(path: str, model: nn.Module, x: torch.Tensor, dynamic: bool, stride: int = 32) -> dict:
    """Run the file in ONNX Runtime on `x` (and, when dynamic, on another batch and shape) against the PyTorch
    model: the largest difference, boxes as a fraction of the image side, scores as they are; None when ONNX
    Runtime is not installed."""
    if importlib.util.find_spec("onnxruntime") is None:
        return {"checked": False, "max_error": None}
    import onnxruntime

    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    other = (x.shape[0] + 1, 3, max(stride, x.shape[2] // (2 * stride) * stride), x.shape[3] + stride)  # half as high
    inputs = [x] + ([torch.rand(other)] if dynamic else [])
    error = 0.0
    with torch.no_grad():
        for images in inputs:
            for k, (got, want) in enumerate(zip(session.run(None, {"images": images.numpy()}),
                                                outputs(model, images), strict=True)):  # fmt: skip
                want = want.numpy()
                if got.shape != want.shape:
                    raise RuntimeError(f"{path}: ONNX Runtime gives {got.shape}, PyTorch {want.shape}")
                diff = np.abs(got - want)
                box = k == 0 and got.ndim == 3  # predictions' boxes; prototypes and a classifier's logits: as they are
                boxes = float(diff[..., :4].max() / max(images.shape[2:])) if box else 0.0
                error = max(error, boxes, float(diff[..., 4 if box else 0 :].max()))
    if error > 1e-4:
        raise RuntimeError(f"{path}: ONNX Runtime's output differs from PyTorch's by {error:.2g}")
    return {"checked": True, "max_error": error}


def export_torchscript(weights: str, out: str = "", imgsz: int = 0, batch: int = 1) -> dict:
    """Write `weights` as TorchScript (traced for `batch` x 3 x imgsz x imgsz inputs, as YOLOv5's) to `out`
    (default: beside it, `.torchscript`), with YOLOv5's `config.txt` extra file; the loaded file must give the
    PyTorch model's output."""
    t0 = time.perf_counter()
    w, imgsz = exported_weights(weights, imgsz)
    out = out or os.path.splitext(weights)[0] + ".torchscript"
    model = Predictions(inference_model(w, torch.device("cpu")).eval())
    x = torch.rand(batch, 3, imgsz, imgsz)
    config = {"shape": list(x.shape), "stride": w.stride, "names": dict(enumerate(w.names))}
    config |= {"task": "classify"} if model.classify else {}
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    tmp = f"{out}.partial-{os.getpid()}"
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the tracer's notes on Python values it takes as constants
            traced = torch.jit.trace(model, x, strict=False)
            traced.save(tmp, _extra_files={"config.txt": json.dumps(config)})
            loaded = torch.jit.load(tmp, map_location="cpu")
            got = loaded(x)
            got = got if isinstance(got, tuple) else (got,)
            error = max(float((a - b).abs().max()) for a, b in zip(got, outputs(model, x), strict=True))
        if error > 1e-4:
            raise RuntimeError(f"{out}: the TorchScript model's output differs from PyTorch's by {error:.2g}")
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    result = report(out, weights, "torchscript", imgsz, batch, w.names, output_shapes(model, x), t0)
    return result | {"checked": True, "max_error": error}
