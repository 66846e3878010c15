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


def window(jpegs, resize_x, resize_y, start, shape, gpu: bool, antialias: bool):
    """Decode, resize to (resize_y, resize_x), and cut the (y, x) `start`, (h, w) `shape` window, grey 114 where
    the window leaves the image: a letterboxed image, or one quadrant of a mosaic canvas."""
    image = decode(jpegs, gpu)
    image = fn.resize(image, resize_x=resize_x, resize_y=resize_y, interp_type=types.INTERP_LINEAR, antialias=antialias)
    return fn.slice(
        image,
        start,
        shape,
        axis_names="HW",
        out_of_bounds_policy="pad",
        fill_values=FILL,
        normalized_anchor=False,
        normalized_shape=False,
    )


@pipeline_def
def letterbox_graph(source, gpu: bool):
    """Validation: decode, resize to the placement, pad with 114 to the batch's (H, W), HWC -> CHW."""
    jpegs, resize_x, resize_y, start, shape = fn.external_source(
        source=source, num_outputs=5, batch=True, parallel=True, batch_info=True
    )
    images = window(jpegs, resize_x, resize_y, start, shape, gpu, antialias=True)  # YOLOv5 val: INTER_AREA
    return fn.transpose(images, perm=[2, 0, 1])


LAYERS = 4  # the canvas quadrants: top-left, top-right, bottom-left, bottom-right
LAYER_INPUTS = 5  # jpeg, resize_x, resize_y, window start, window shape
CANVAS_INPUTS = LAYERS * LAYER_INPUTS + 1  # ... and the canvas -> output matrix
SAMPLE_INPUTS = 6  # output size, hue, saturation, value, flip_lr, flip_ud (+ mixup ratio)


def canvas_graph(inputs, size, gpu: bool, perspective: bool):
    """Per quadrant decode, resize to YOLOv5's load size, cut the quadrant's window (grey 114 where the image
    does not reach, as YOLOv5's canvas); concatenate the quadrants into the canvas (the 2s mosaic, or the
    letterboxed image); warp it once to the output (random affine or perspective and multi-scale in one
    matrix, border 114 as cv2.warpAffine's borderValue)."""
    quadrants = []
    for k in range(LAYERS):
        # YOLOv5 resizes training images with cv2.INTER_LINEAR: bilinear, no antialiasing
        quadrants.append(window(*inputs[k * LAYER_INPUTS : (k + 1) * LAYER_INPUTS], gpu, antialias=False))
    canvas = fn.cat(fn.cat(quadrants[0], quadrants[1], axis=1), fn.cat(quadrants[2], quadrants[3], axis=1), axis=0)
    matrix = inputs[LAYERS * LAYER_INPUTS]
    if perspective:
        return fn.experimental.warp_perspective(canvas, matrix=matrix, size=size, fill_value=FILL, inverse_map=False)
    return fn.warp_affine(
        canvas, matrix=matrix, size=size, fill_value=FILL, inverse_map=False, interp_type=types.INTERP_LINEAR
    )


@pipeline_def
def augment_graph(source, gpu: bool, perspective: bool = False, mixup: bool = False):
    """Training: one canvas per sample (two with mixup, blended), then HSV, flips, HWC -> CHW."""
    canvases = 2 if mixup else 1
    inputs = fn.external_source(
        source=source,
        num_outputs=canvases * CANVAS_INPUTS + SAMPLE_INPUTS + mixup,
        batch=True,
        parallel=True,
        batch_info=True,
    )
    size, hue, saturation, value, flip_lr, flip_ud = inputs[canvases * CANVAS_INPUTS :][:SAMPLE_INPUTS]
    images = canvas_graph(inputs[:CANVAS_INPUTS], size, gpu, perspective)
    if mixup:  # YOLOv5's mixup: im * r + im2 * (1 - r)
        second = canvas_graph(inputs[CANVAS_INPUTS : 2 * CANVAS_INPUTS], size, gpu, perspective)
        ratio = inputs[-1]
        blend = fn.cast(images, dtype=types.FLOAT) * ratio + fn.cast(second, dtype=types.FLOAT) * (1.0 - ratio)
        images = fn.cast(blend, dtype=types.UINT8)
    images = fn.hsv(images, hue=hue, saturation=saturation, value=value)
    images = fn.flip(images, horizontal=flip_lr, vertical=flip_ud)
    return fn.transpose(images, perm=[2, 0, 1])


def build(graph, source, device: str, batch: int, workers: int, start_method: str | None = None, **options):
    """Instantiate and build a graph for `device` with `workers` source processes."""
    device_id = parse_device(device)
    pipe = graph(
        source=source,
        **options,
        gpu=device_id is not None,
        device_id=device_id,
        batch_size=batch,
        num_threads=max(1, min(4, os.cpu_count() or 1)),
        py_num_workers=max(1, workers),
        py_start_method=start_method or ("fork" if device_id is None else "spawn"),  # no fork once CUDA is up
        prefetch_queue_depth=2,
    )
    pipe.build()
    return pipe
