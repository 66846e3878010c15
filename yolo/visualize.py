"""YOLOv5's `detect.py --visualize`: each layer's output for an image, as its feature_visualization draws it:
`<name>/stage<i>_<Module>_features.png` (the first 32 channels, 8 to a row) and `.npy` (every channel, float32),
numbered by YOLOv5's layer index, the Detect layer and 1-pixel maps left out.

    maps = FeatureMaps(model)           # forward hooks on the layers; maps.remove() takes them off
    model(x)                            # the first call after maps.clear() is kept (TTA's first pass: the plain one)
    for i, kind, x in maps.of_image(0):  # the layers' outputs for image 0 of the batch, on the CPU
        save_features(x, kind, i, "runs/detect/exp/bus")
"""

from __future__ import annotations

import io
import math
import os

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from torch import nn

from fastload.loader.draw import save_image
from fastload.store.tempfiles import write_atomic
from yolo.model import Detect

CHANNELS = 32  # drawn per layer, as YOLOv5 (the .npy keeps them all)


class FeatureMaps:
    """Keeps the output of every layer but Detect from the model's first forward pass after `clear()`. The built-in
    models have no module for YOLOv5's Upsample and Concat layers: a Concat is the input of the layer after it,
    an Upsample the nearest 2x of the layer before it, as YOLOv5 computes them."""

    def __init__(self, model: nn.Module) -> None:
        modules, names = dict(model.named_modules()), model.layer_names()
        self.kinds: dict[int, str] = {}
        self.outputs: dict[int, torch.Tensor] = {}
        self.handles = []
        for i, name in sorted(names.items()):
            module = modules[name]
            if isinstance(module, Detect):
                continue
            self.kinds[i] = type(module).__name__
            self.handles.append(module.register_forward_hook(self._keeper(i)))
        self.upsampled = []
        for i in range(max(names)):
            if i in names:
                continue
            if i + 1 in names:  # a Concat: what the next layer takes
                self.kinds[i] = "Concat"
                self.handles.append(modules[names[i + 1]].register_forward_pre_hook(self._keeper(i, of_input=True)))
            else:
                self.kinds[i] = "Upsample"
                self.upsampled.append(i)

    def _keeper(self, i: int, of_input: bool = False):
        def keep(module, args, output=None):
            if i not in self.outputs:  # the first pass only
                self.outputs[i] = (args[0] if of_input else output).detach()

        return keep

    def clear(self) -> None:
        self.outputs.clear()

    def of_image(self, j: int) -> list[tuple[int, str, torch.Tensor]]:
        """(layer, module name, output [C, H, W] on the CPU) of image `j` of the last batch, in layer order."""
        out = {i: x[j].float().cpu() for i, x in self.outputs.items()}
        for i in self.upsampled:
            if i - 1 in out:
                out[i] = F.interpolate(out[i - 1][None], scale_factor=2.0, mode="nearest")[0]
        return [(i, self.kinds[i], out[i]) for i in sorted(out)]

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles.clear()


def save_features(x: torch.Tensor, kind: str, stage: int, folder: str, n: int = CHANNELS) -> str | None:
    """YOLOv5's feature_visualization of one layer's output `x` [C, H, W]: up to `n` channels in rows of 8 (PNG,
    300 dpi) and every channel as .npy, both written atomically; None for a map of one pixel a side."""
    channels, height, width = x.shape
    if height <= 1 or width <= 1:
        return None
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"stage{stage}_{kind}_features.png")
    n = min(n, channels)
    fig = Figure()
    axes = fig.subplots(math.ceil(n / 8), 8, squeeze=False, gridspec_kw={"wspace": 0.05, "hspace": 0.05}).ravel()
    for k, ax in enumerate(axes):
        if k < n:
            ax.imshow(x[k].numpy())
        ax.axis("off")
    save_image(fig, path, dpi=300, tight=True)
    buffer = io.BytesIO()
    np.save(buffer, x.numpy())
    write_atomic(os.path.splitext(path)[0] + ".npy", buffer.getvalue())
    return path
