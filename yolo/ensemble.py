"""YOLOv5's model ensembling (`val.py --weights a.pt b.pt`, `detect.py` the same): several checkpoints run on each
batch and their predictions pooled for one NMS (YOLOv5's NMS ensemble: its Ensemble concatenates the models'
outputs). The models predict the same classes (the first's names are used); the input side is a multiple of the
largest stride among them (a P6 model with P5 ones: 64); test-time augmentation runs each model's three passes.

    w = read_ensemble(["a.pt", "yolov5s.pt"])   # EnsembleWeights: what read_model returns for several files
    model = w.model()                           # Ensemble: model(x) -> (predictions of both, None)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from fastload.errors import FastloadError
from yolo.weights import EXPORTS, Weights, read_weights


def paths_of(weights: str | Sequence[str]) -> list[str]:
    """--weights as a list of paths: one, or an ensemble's."""
    return [weights] if isinstance(weights, str) else list(weights)


def as_given(weights: str | Sequence[str]) -> str | list[str]:
    """--weights as given: one path, or an ensemble's list of them (what the JSON's `weights` holds)."""
    paths = paths_of(weights)
    return paths[0] if len(paths) == 1 else paths


def label(weights: str | Sequence[str]) -> str:
    """--weights as messages name it: `best.pt`, or `a.pt + b.pt` for an ensemble."""
    return " + ".join(paths_of(weights))


def models(w, weights: str | Sequence[str]) -> list[dict]:
    """The models run, as the JSON's `models` lists them: each one's path, source (fastload, yolov5, onnx,
    torchscript) and epochs trained (0: not known)."""
    paths = paths_of(weights)
    members = w.members if isinstance(w, EnsembleWeights) else [w]
    return [{"weights": p, "format": m.source, "epochs": m.epochs} for p, m in zip(paths, members, strict=True)]


class Ensemble(nn.ModuleList):
    """Models run one after the other on the same input, in eval mode: (their decoded predictions concatenated
    along the anchors, None), as YOLOv5's Ensemble (the NMS ensemble)."""

    @property
    def grid_size(self) -> int:
        return max(m.grid_size for m in self)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        return torch.cat([m(x)[0] for m in self], 1), None

    def fuse(self) -> Ensemble:
        for m in self:
            m.fuse()
        return self


@dataclass
class EnsembleWeights:
    """Several checkpoints' weights, read as one model: val and detect take it where they take a Weights."""

    members: list[Weights]
    paths: list[str]
    source = "ensemble"  # val's and detect's JSON `format`
    epochs = 0  # not one number: `models` says each one's

    @property
    def names(self) -> list[str]:
        return self.members[0].names

    @property
    def config(self) -> dict:
        """The first model's run: its image size, dataset and tiles are the defaults, as one model's are."""
        return self.members[0].config

    @property
    def stride(self) -> int:
        return max(w.stride for w in self.members)

    def model(self) -> Ensemble:
        return Ensemble([w.model() for w in self.members])


def read_ensemble(paths: Sequence[str], say=None) -> EnsembleWeights:
    """The checkpoints in `paths` as one ensemble, or a one-line FastloadError naming the file that cannot join:
    an exported model (it runs alone), a segmentation model (each one's masks come from its own prototypes), a
    model of another class count. Names that differ at the same count are used as the first's (`say` tells)."""
    for path in paths:
        if path.lower().endswith(tuple(EXPORTS)):
            raise FastloadError(f"{path}: an exported model runs alone; an ensemble takes .pt checkpoints")
    members = [read_weights(p) for p in paths]
    first = members[0]
    for path, w in zip(paths, members, strict=True):
        if w.segments:
            raise FastloadError(f"{path}: a segmentation model; an ensemble pools the boxes of detection models "
                                "(each model's masks come from its own prototypes)")  # fmt: skip
        if len(w.names) != len(first.names):
            raise FastloadError(f"{path}: {len(w.names)} classes, but {paths[0]} has {len(first.names)}: an "
                                "ensemble's models predict the same classes")  # fmt: skip
        if w.names != first.names and say is not None:
            say(f"note: {path} names its classes {', '.join(w.names)}; the ensemble uses {paths[0]}'s: "
                f"{', '.join(first.names)}")  # fmt: skip
    return EnsembleWeights(members, list(paths))
