"""Exported models in `fastload val` and `fastload detect`, as YOLOv5's DetectMultiBackend runs them: an ONNX file
(through ONNX Runtime) or a TorchScript file, fastload's exports or YOLOv5's own (`stride` and `names` from the
ONNX metadata or TorchScript's config.txt). A file exported for one input shape gets square batches of its side,
cut into its batch size (the last one padded); a dynamic ONNX file gets the validation loader's rectangles.

    w = read_model("best.onnx")             # an Exported, or the Weights of a .pt
    model = w.model().to("cuda")            # ONNX Runtime's CUDA provider where it has one
    predictions, _ = model(images)          # [B, anchors, 5 + nc], as YOLOv5's model in eval mode

A segmentation model's file (two outputs: predictions with 32 mask coefficients, and prototypes) gives
(predictions, None, prototypes), as the model's (decoded, maps, prototypes) without the maps.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import warnings
from collections.abc import Sequence

import numpy as np
import torch

from fastload.errors import FastloadError
from yolo.ensemble import EnsembleWeights, label, paths_of, read_ensemble
from yolo.model import fit_stride
from yolo.weights import EXPORTS, Weights, read_weights

SEGMENT_NM = 32  # a segmentation model's mask coefficients (YOLOv5's Segment); a TorchScript file does not say


def exported_format(path: str) -> str | None:
    """'onnx' or 'torchscript' for a file named as an export, else None."""
    return EXPORTS.get(os.path.splitext(path)[1].lower())


def read_model(path: str | Sequence[str], say=None) -> Weights | Exported | EnsembleWeights:
    """What val and detect run: an exported file (.onnx, .torchscript) or a checkpoint's weights (read_weights);
    several checkpoints: YOLOv5's ensemble (yolo.ensemble; `say` tells what it notes)."""
    paths = paths_of(path)
    if len(paths) > 1:
        return read_ensemble(paths, say)
    return Exported(paths[0]) if exported_format(paths[0]) else read_weights(paths[0])


def class_names(value) -> list[str]:
    """YOLOv5's names metadata ({0: 'person', ...}, its keys strings in JSON, or a list) as a list."""
    if isinstance(value, dict):
        value = {int(k): v for k, v in value.items()}
        return [str(value[i]) for i in range(len(value))]
    return [str(v) for v in value]


def input_side(w: Weights | Exported, imgsz: int, say) -> int:
    """The side to letterbox to: a fixed-shape file's own (`say` tells when `imgsz` asks for another), else `imgsz`
    (0: the checkpoint's or file's, else YOLOv5's 640) rounded up to the stride."""
    side = w.side if isinstance(w, Exported) else None
    if side is None:
        return fit_stride(imgsz or w.config.get("imgsz", 640), w.stride)
    if imgsz and fit_stride(imgsz, w.stride) != side:
        say(f"{w.path} takes {side}x{side} inputs: --imgsz {imgsz} is not used")
    return side


def inference_model(w: Weights | Exported, device: torch.device):
    """What detection runs: a checkpoint's model Conv-BN fused (channels-last on CUDA), or the export on `device`."""
    model = w.model().to(device)
    if isinstance(w, Exported):
        return model
    model = model.fuse() if hasattr(model, "fuse") else model  # (a torchvision classifier has no Conv-BN to fold)
    return model.to(memory_format=torch.channels_last) if device.type == "cuda" else model


def needs_checkpoint(w: Weights | Exported | EnsembleWeights, augment: bool, visualize: bool = False) -> None:
    """A one-line error when an exported file `w` is asked for what only a checkpoint's model can do: test-time
    augmentation (reruns the model at other scales) or --visualize (reads each layer's output; one model's)."""
    if isinstance(w, EnsembleWeights) and visualize:
        raise FastloadError(f"{label(w.paths)}: --visualize draws one model's layers: give one --weights")
    if isinstance(w, Exported) and (augment or visualize):
        why = "--augment runs the model at three scales" if augment else "--visualize draws each layer's output"
        raise FastloadError(f"{w.path}: {why}: it needs the .pt checkpoint")


def square_only(w: Weights | Exported) -> bool:
    """Whether the model takes only square inputs of one side (an export for a fixed shape)."""
    return isinstance(w, Exported) and w.side is not None


class Exported:
    """One exported model, callable as a YOLOv5 model in eval mode: decoded predictions, and no raw outputs; a
    classifier's (its one output N x classes): its logits, and `arch` says so (yolo.classify.classify_arch)."""

    config: dict  # {"imgsz": its side} where the file says it
    epochs = 0  # not known
    training = False

    def __init__(self, path: str) -> None:
        self.path, self.source = path, exported_format(path)
        if not os.path.isfile(path):
            raise FastloadError(f"{path}: no such file")
        self.device = torch.device("cpu")
        self._open()
        if not self.names:
            raise FastloadError(f"{path}: no class names (neither YOLOv5's nor fastload's export)")
        if self.classify:
            self.arch = "exported-cls"  # (val and detect take a classifier's way)
        elif self.no is not None and self.no != 5 + len(self.names) + self.nm:
            extra = f" + {self.nm} mask coefficients" if self.nm else ""
            raise FastloadError(f"{path}: {self.no} output columns, not 5 + {len(self.names)} classes{extra} "
                                "(not a YOLOv5 detection or segmentation model)")  # fmt: skip
        if self.side is not None:
            self.config = {"imgsz": self.side}

    def _open(self) -> None:
        """Read the file on the CPU: names, stride, the fixed batch and side (None: any), the input type."""
        try:
            if self.source == "onnx":
                self._open_onnx()
            else:
                self._open_torchscript()
        except FastloadError:
            raise
        except Exception as e:  # what the runtimes raise on a file that is not theirs
            first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
            raise FastloadError(f"{self.path}: not a readable {self.source} model ({first})") from None
        if self.shape is not None and self.shape[0] != self.shape[1]:
            raise FastloadError(f"{self.path}: exported for {self.shape[0]}x{self.shape[1]} inputs; only square "
                                "fixed shapes are run (export it --dynamic)")  # fmt: skip
        self.side = self.shape[0] if self.shape is not None else None

    def _open_onnx(self) -> None:
        if importlib.util.find_spec("onnxruntime") is None:
            raise FastloadError(f"{self.path}: ONNX models need ONNX Runtime: pip install 'fastload[export]'")
        import onnxruntime

        self.session = onnxruntime.InferenceSession(self.path, providers=["CPUExecutionProvider"])
        (inp,), out = self.session.get_inputs(), self.session.get_outputs()
        meta = self.session.get_modelmeta().custom_metadata_map
        fixed = [d if isinstance(d, int) else None for d in inp.shape]
        self.input, self.batch, self.dtype = inp.name, fixed[0], np.float16 if "float16" in inp.type else np.float32
        self.shape = tuple(fixed[2:]) if None not in fixed[2:] else None
        self.classify = len(out[0].shape) == 2  # a classifier's logits (YOLOv5's -cls exports too)
        self.no = out[0].shape[-1] if isinstance(out[0].shape[-1], int) and not self.classify else None
        self.nm = out[1].shape[1] if len(out) > 1 and len(out[1].shape) == 4 else 0  # a segmentation model's
        if not isinstance(self.nm, int):
            raise FastloadError(f"{self.path}: its prototypes' channels are not fixed")
        self.stride = int(meta.get("stride", 32))
        names = ast.literal_eval(meta["names"]) if "names" in meta else range(self.no - 5 - self.nm) if self.no else (
            range(out[0].shape[1]) if self.classify and isinstance(out[0].shape[1], int) else ())  # fmt: skip
        self.names = class_names(names)
        self.config = {"imgsz": int(meta["imgsz"])} if "imgsz" in meta else {}  # fastload's dynamic exports say

    def _open_torchscript(self) -> None:
        extra = {"config.txt": ""}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's note that TorchScript is deprecated: YOLOv5 still writes it
            self.module = torch.jit.load(self.path, _extra_files=extra, map_location="cpu").eval()
        if not extra["config.txt"]:
            raise FastloadError(f"{self.path}: no config.txt (not exported by YOLOv5 or fastload)")
        config = json.loads(extra["config.txt"])
        batch, _, h, w = config["shape"]
        self.batch, self.shape, self.stride = int(batch), (int(h), int(w)), int(config.get("stride", 32))
        self.names, self.no, self.config = class_names(config["names"]), None, {}
        self.dtype = next(self.module.parameters()).dtype
        kind = next(self.module.graph.outputs()).type()  # YOLOv5's: (predictions,); a segmentation model's: 2
        self.classify = config.get("task") == "classify" or (isinstance(kind, torch._C.TensorType) and kind.dim() == 2)
        self.nm = SEGMENT_NM if isinstance(kind, torch._C.TupleType) and len(kind.elements()) > 1 else 0

    def model(self) -> Exported:
        """As Weights.model(): the thing to run."""
        return self

    def to(self, device) -> Exported:
        """Run on `device`: TorchScript moves there; ONNX Runtime takes its CUDA provider where it has one (else the
        inputs go to the host and back)."""
        self.device = torch.device(device)
        if self.source == "torchscript":
            self.module.to(self.device)
        elif self.device.type == "cuda":
            import onnxruntime

            if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
                index = self.device.index or 0
                self.session.set_providers(["CUDAExecutionProvider", "CPUExecutionProvider"],
                                           [{"device_id": index}, {}])  # fmt: skip
        return self

    def parameters(self):
        """None to train: what yolo.val.predict checks before it asks for `device`."""
        return iter(())

    def eval(self) -> Exported:
        return self

    def train(self, mode: bool = True) -> Exported:
        return self

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> tuple:
        """Decoded predictions [B, anchors, 5 + nc] in x's pixels for images x [B, 3, H, W] in [0, 1], and None
        (no raw outputs); a segmentation model's: (predictions [B, anchors, 5 + nc + nm], None, prototypes)."""
        if self.shape is not None and tuple(x.shape[2:]) != self.shape:
            raise FastloadError(f"{self.path} takes {self.shape[0]}x{self.shape[1]} inputs, not "
                                f"{x.shape[2]}x{x.shape[3]}")  # fmt: skip
        step, outs = self.batch or len(x), []
        for k in range(0, len(x), step):
            part, n = x[k : k + step], min(step, len(x) - k)
            if n < step:  # the file's batch: the last one padded with blank images
                part = torch.cat([part, part.new_zeros((step - n, *part.shape[1:]))])
            outs.append([y[:n] for y in self._run(part)])
        predictions = torch.cat([o[0] for o in outs])
        if self.classify:
            return predictions  # logits
        return (predictions, None, torch.cat([o[1] for o in outs])) if self.nm else (predictions, None)

    def _run(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The file's outputs used: [predictions] or, for a segmentation model, [predictions, prototypes]."""
        if self.source == "torchscript":
            y = self.module(x.to(self.device, self.dtype))
            y = list(y) if isinstance(y, list | tuple) else [y]  # YOLOv5's returns (predictions,)
        else:
            y = self.session.run(None, {self.input: x.detach().cpu().numpy().astype(self.dtype)})
            y = [torch.from_numpy(v).to(x.device) for v in y]
        y = [v.float() for v in y[: 2 if self.nm else 1]]
        if self.nm and y[1].shape[1] != self.nm:
            raise FastloadError(f"{self.path}: {y[1].shape[1]} prototypes, not {self.nm}")
        return y
