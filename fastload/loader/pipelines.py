"""The DALI graphs. Each graph takes compressed bytes and per-sample geometry from a parallel external source
and does all pixel work in DALI: on the GPU ('mixed' decode) with a device, on the CPU with `device_id=None`.
"""

from __future__ import annotations

import os

from nvidia.dali import fn, pipeline_def, types

FILL = 114  # YOLOv5's padding grey


def parse_device(device: str) -> int | None:
    """'cpu' -> None; 'cuda' / 'cuda:N' -> N."""
    if device == "cpu":
        return None
    if device == "cuda" or device.startswith("cuda:"):
        return int(device.split(":", 1)[1]) if ":" in device else 0
    raise ValueError(f"device must be cpu, cuda or cuda:N, not {device!r}")


def decode(jpegs, gpu: bool):
    return fn.decoders.image(jpegs, device="mixed" if gpu else "cpu", output_type=types.RGB)


@pipeline_def
def letterbox_graph(source, gpu: bool):
    """Validation: decode, resize to the placement, pad with 114 to the batch's (H, W), HWC -> CHW."""
    jpegs, resize_x, resize_y, start, shape = fn.external_source(
        source=source, num_outputs=5, batch=True, parallel=True, batch_info=True
    )
    images = decode(jpegs, gpu)
    images = fn.resize(images, resize_x=resize_x, resize_y=resize_y, interp_type=types.INTERP_LINEAR, antialias=True)
    images = fn.slice(
        images,
        start,
        shape,
        axis_names="HW",
        out_of_bounds_policy="pad",
        fill_values=FILL,
        normalized_anchor=False,
        normalized_shape=False,
    )
    return fn.transpose(images, perm=[2, 0, 1])


LAYERS = 4  # a mosaic sample is 4 decoded images; a letterboxed one uses 1 and parks 3 off the canvas
LAYER_INPUTS = 6  # jpeg, resize_x, resize_y, crop start, crop shape, matrix


@pipeline_def
def augment_graph(source, gpu: bool):
    """Training: per layer decode, resize to YOLOv5's load size, crop the tile, add an alpha channel and warp
    straight to the output (mosaic placement, random affine and multi-scale in one matrix); sum the layers,
    fill what no layer covers with 114, then HSV, flips, HWC -> CHW."""
    inputs = fn.external_source(
        source=source, num_outputs=LAYERS * LAYER_INPUTS + 6, batch=True, parallel=True, batch_info=True
    )
    size, hue, saturation, value, flip_lr, flip_ud = inputs[LAYERS * LAYER_INPUTS :]
    total = None
    for k in range(LAYERS):
        jpegs, resize_x, resize_y, start, shape, matrix = inputs[k * LAYER_INPUTS : (k + 1) * LAYER_INPUTS]
        layer = decode(jpegs, gpu)
        layer = fn.resize(layer, resize_x=resize_x, resize_y=resize_y, interp_type=types.INTERP_LINEAR)
        layer = fn.slice(layer, start, shape, axis_names="HW", normalized_anchor=False, normalized_shape=False)
        layer = fn.pad(layer, axes=[2], shape=[4], fill_value=255)  # alpha: where this layer has pixels
        layer = fn.warp_affine(
            layer, matrix=matrix, size=size, fill_value=0, inverse_map=False, interp_type=types.INTERP_LINEAR
        )
        layer = fn.cast(layer, dtype=types.FLOAT)
        total = layer if total is None else total + layer
    # layers are premultiplied by their alpha (zero outside), so uncovered pixels blend into YOLOv5's grey
    rgb = total[:, :, 0:3] + (255.0 - total[:, :, 3:4]) * (FILL / 255.0)
    images = fn.cast(rgb, dtype=types.UINT8)
    images = fn.hsv(images, hue=hue, saturation=saturation, value=value)
    images = fn.flip(images, horizontal=flip_lr, vertical=flip_ud)
    return fn.transpose(images, perm=[2, 0, 1])


def build(graph, source, device: str, batch: int, workers: int):
    """Instantiate and build a graph for `device` with `workers` source processes."""
    device_id = parse_device(device)
    pipe = graph(
        source=source,
        gpu=device_id is not None,
        device_id=device_id,
        batch_size=batch,
        num_threads=max(1, min(4, os.cpu_count() or 1)),
        py_num_workers=max(1, workers),
        py_start_method="fork" if device_id is None else "spawn",  # no fork after CUDA is initialised
        prefetch_queue_depth=2,
    )
    pipe.build()
    return pipe
