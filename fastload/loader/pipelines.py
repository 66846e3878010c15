"""The DALI graphs. Each graph takes compressed bytes and per-sample geometry from a parallel external source
and does all pixel work in DALI: on the GPU ('mixed' decode) with a device, on the CPU with `device_id=None`.
"""

from __future__ import annotations

import os

import numpy as np
from nvidia.dali import backend, fn, pipeline_def, types

from fastload.errors import FastloadError
from fastload.interrupt import ctrl_c_held
from fastload.loader.augment import LAYERS
from fastload.loader.shm import check_shared_memory

FILL = 114  # YOLOv5's padding grey


def parse_device(device: str) -> int | None:
    """'cpu' -> None; 'cuda' / 'cuda:N' -> N, when this machine has GPU N (else a FastloadError)."""
    if device == "cpu":
        return None
    index = device[5:] if device.startswith("cuda:") else "0" if device == "cuda" else None
    if index is None or not index.isdigit():
        raise FastloadError(f"--device must be cpu, cuda or cuda:N, not {device!r}")
    count = backend.GetCUDADeviceCount()
    if int(index) >= count:
        found = f"{count} CUDA device{'s' * (count != 1)}" if count else "no CUDA device"
        raise FastloadError(f"--device {device}: this machine has {found} (use --device cpu)")
    return int(index)


def decode(jpegs, gpu: bool):
    if not gpu:
        return fn.decoders.image(jpegs, device="cpu", output_type=types.RGB)
    # share of the batch for the hardware JPEG engine (A100/H100); the rest is nvJPEG's hybrid CUDA decode
    load = float(os.environ.get("FASTLOAD_HW_DECODER_LOAD", "0.65"))
    return fn.decoders.image(jpegs, device="mixed", output_type=types.RGB, hw_decoder_load=load)


def cut(image, start, shape):
    """The (y, x) `start`, (h, w) `shape` window of an image, grey 114 where it leaves the image."""
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


def load(jpegs, resize_x, resize_y, gpu: bool, antialias: bool):
    """Decode and resize to (resize_y, resize_x), bilinear (YOLOv5: INTER_LINEAR to train, INTER_AREA to validate)."""
    image = decode(jpegs, gpu)
    return fn.resize(image, resize_x=resize_x, resize_y=resize_y, interp_type=types.INTERP_LINEAR, antialias=antialias)


@pipeline_def
def letterbox_graph(source, gpu: bool, ahead: int = 2, antialias: bool = True):
    """Validation: decode, resize to the placement, pad with 114 to the batch's (H, W), HWC -> CHW. Per image the
    source sends the JPEG and one row (resize_x, resize_y, window start y, x, window h, w). A shrink is smoothed
    (`antialias`) as YOLOv5's validation loader's INTER_AREA, or not, as its detect.py's INTER_LINEAR."""
    jpegs, params = fn.external_source(
        source=source, num_outputs=2, batch=True, parallel=True, batch_info=True, prefetch_queue_depth=ahead
    )
    images = cut(load(jpegs, params[0], params[1], gpu, antialias=antialias), params[2:4], params[4:6])
    return fn.transpose(images, perm=[2, 0, 1])


@pipeline_def
def decode_graph(source, gpu: bool, ahead: int = 2):
    """Whole pictures decoded, each at its own size (sliced inference cuts them into tiles on the device: one decode
    a picture, where decoding each tile's region costs most of a whole decode again: benchmarks/region_decode.py)."""
    jpegs = fn.external_source(source=source, batch=True, parallel=True, batch_info=True, prefetch_queue_depth=ahead)
    return decode(jpegs, gpu)


WINDOWS = 2 * LAYERS  # per canvas: the four cells, then the four sides of the grey ring
WARPS = {"resize": 4, "affine": 6, "perspective": 9}  # numbers per canvas that say how it becomes the output


def warp_kind(degrees: float, shear: float, perspective: float, gpu: bool = False) -> str:
    """'resize' when the random affine is only a zoom and a shift (YOLOv5's default hyp) on the CPU: a resize of
    the region the warp reads samples the same points and costs a fraction of a general warp there. The GPU
    warps: its resize with a region of interest beyond the input crashed on the H100 (CUDA illegal address, in a
    graph that also had the GPU multi_paste, the proven culprit; not isolated further), and the warp is cheap there."""
    if perspective > 0:
        return "perspective"
    return "affine" if degrees > 0 or shear > 0 or gpu else "resize"


PASTE = 2 + 2 + LAYERS * 7 + 2  # copy_paste per canvas: the mask's place, the blend's shape, the mirror's cells


class Row:
    """Columns of the float32 row the training source sends per sample (one [B, width] array per batch: a few
    large messages from the workers instead of dozens of small arrays per sample):
    resize_x, resize_y | per canvas: per window (slot, start y, start x, h, w), per window its place (y, x), the
    assembly's (h, w), then the warp: 'resize' the roi (y0, x0, y1, x1), 'affine' a 2x3 matrix, 'perspective' a
    3x3 one, then with `paste` (copy_paste) the mask's place (y, x) in the assembly, the blend's (h, w) (the
    assembly's, or 1 x 1: nothing pasted), per mirror cell (slot, start y, x, h, w), their places, the mirror's
    (h, w) | output w, h, hue, saturation, value, flip_lr, flip_ud, mixup ratio."""

    def __init__(self, warp: str, mixup: bool, paste: bool = False) -> None:
        self.warp, self.paste = warp, paste
        self.canvas = WINDOWS * 7 + 2 + WARPS[warp] + PASTE * paste
        self.canvases = 2 if mixup else 1
        self.sample = 2 + self.canvases * self.canvas
        self.width = self.sample + 8


def assemble(windows, places, extent, how: str):
    """The assembly from its windows (2 x 2 cells, in a ring or not): one multi_paste at `places` ('paste', the
    CPU's: 1.19x three concatenations there), or concatenations ('concat', the GPU's: DALI 2.4's GPU multi_paste
    of these windows corrupted memory on the H100, CUDA illegal address a few batches later). The same pixels
    either way (tested on the CPU)."""
    if how == "paste":
        return fn.multi_paste(*windows, out_anchors=places, output_size=extent)
    tl, tr, bl, br = windows[:LAYERS]  # cells split at the centre; the ring around them
    cells = fn.cat(fn.cat(tl, tr, axis=1), fn.cat(bl, br, axis=1), axis=0)
    if len(windows) == LAYERS:
        return cells
    top, bottom, left, right = windows[LAYERS:]
    return fn.cat(top, fn.cat(left, cells, right, axis=1), bottom, axis=0)


def windows_at(loaded, params, o: int, count: int, ring: bool = False):
    """`count` windows, per window (slot, start y, start x, h, w) from params[o]; the ring's (`ring`: those past
    the cells) miss every image, so any slot serves and the batch is not permuted for them."""
    windows = []
    for k in range(count):
        p = o + 5 * k
        image = loaded
        if not ring or k < LAYERS:
            image = fn.permute_batch(loaded, indices=fn.cast(params[p], dtype=types.INT32))
        windows.append(cut(image, params[p + 1 : p + 3], params[p + 3 : p + 5]))
    return windows


def int_pairs(params, o: int, count: int):
    return fn.reshape(fn.cast(params[o : o + 2 * count], dtype=types.INT32), shape=[count, 2])


BITS = np.array([128, 64, 32, 16, 8, 4, 2, 1], np.uint8).reshape(1, 1, 8)  # np.packbits' order


def unpacked(packed):
    """A mask sent as np.packbits(mask, axis=1) [h, ceil(w / 8), 1] (an eighth of the bytes through shared memory)
    as [h, 8 ceil(w / 8), 1] of 0 and 1 (packbits' zero padding on the right)."""
    bits = fn.cast((packed & types.Constant(BITS)) > 0, dtype=types.UINT8)  # [h, w / 8, 8]
    return fn.reshape(bits, rel_shape=[1, 8, 0.125], layout="HWC")


def pasted(canvas, extent, loaded, mask, params, o: int, how: str):
    """YOLOv5's copy_paste on an assembly of (h, w) `extent`: the canvas's mirror image (its mirrored part
    assembled from 2 x 2 cells, flipped left-right) where the mask is 1 (`mask`: packed bits, `unpacked`). Both
    cover the pasted objects' window at the mask's place. The CPU blends that window and pastes it over the
    assembly (multi_paste: the later paste wins): at copy_paste 0.1 the CPU loader runs at 0.95x its speed
    without, where a blend of the whole assembly made it 0.72-0.77x; the GPU (whose multi_paste corrupted memory,
    `assemble`) pads both with 0 to the blend's shape and blends it all (1 x 1 when nothing was pasted: then they
    broadcast)."""
    mirror_cells = windows_at(loaded, params, o + 4, LAYERS)
    q = o + 4 + 5 * LAYERS
    size = params[q + 2 * LAYERS : q + 2 * LAYERS + 2]  # the window's (h, w)
    mirror = assemble(mirror_cells, int_pairs(params, q, LAYERS), fn.cast(size, dtype=types.INT32), how)
    mirror = fn.flip(mirror, horizontal=1)
    one = types.Constant(1, dtype=types.UINT8)  # uint8 throughout: no wider copies, no cast
    at = dict(normalized_anchor=False, normalized_shape=False, axis_names="HW")
    place, mask = params[o : o + 2], unpacked(mask)
    if how == "paste":
        mask = fn.slice(mask, place * 0, size, **at)  # packbits' padding off
        blended = fn.slice(canvas, place, size, **at) * (one - mask) + mirror * mask
        anchors = fn.reshape(fn.cast(fn.cat(place * 0, place), dtype=types.INT32), shape=[2, 2])
        return fn.multi_paste(canvas, blended, out_anchors=anchors, output_size=extent)
    pad = dict(out_of_bounds_policy="pad", fill_values=0, **at)
    mask = fn.slice(mask, -place, params[o + 2 : o + 4], **pad)
    mirror = fn.slice(mirror, -place, params[o + 2 : o + 4], **pad)
    return canvas * (one - mask) + mirror * mask


def canvas_graph(loaded, params, base: int, row: Row, size, how: str, mask=None):
    """Per cell take the batch's image in that cell's slot (`loaded`: decoded and resized to YOLOv5's load size)
    and cut the cell's window (grey 114 where the image does not reach, as YOLOv5's canvas); paste the cells and
    the grey ring around them into the part of the canvas (the 2s mosaic, or the letterboxed image) that the warp
    reads; take it to the output in one step: the random affine or perspective and multi-scale in one matrix,
    border 114 as cv2.warpAffine's, or, for a zoom and shift, a resize of the region of interest. With `row.paste`,
    YOLOv5's copy_paste on the assembly before the warp (`pasted`, the canvas's `mask`)."""
    windows = windows_at(loaded, params, base, WINDOWS, ring=True)
    p = base + 5 * WINDOWS
    extent = fn.cast(params[p + 2 * WINDOWS : p + 2 * WINDOWS + 2], dtype=types.INT32)
    canvas = assemble(windows, int_pairs(params, p, WINDOWS), extent, how)
    w = p + 2 * WINDOWS + 2
    if row.paste:
        canvas = pasted(canvas, extent, loaded, mask, params, w + WARPS[row.warp], how)
    if row.warp == "resize":
        return fn.resize(
            canvas,
            resize_x=size[0],
            resize_y=size[1],
            roi_start=params[w : w + 2],
            roi_end=params[w + 2 : w + 4],
            roi_relative=False,
            antialias=False,  # as cv2.warpAffine: bilinear sampling, no smoothing when shrinking
            interp_type=types.INTERP_LINEAR,
        )
    hw = fn.cat(size[1:2], size[0:1])  # the warps take (h, w); `size` is (w, h)
    if row.warp == "perspective":
        matrix = fn.reshape(params[w : w + 9], shape=[3, 3])
        return fn.experimental.warp_perspective(canvas, matrix=matrix, size=hw, fill_value=FILL, inverse_map=False)
    matrix = fn.reshape(params[w : w + 6], shape=[2, 3])
    return fn.warp_affine(
        canvas, matrix=matrix, size=hw, fill_value=FILL, inverse_map=False, interp_type=types.INTERP_LINEAR
    )


@pipeline_def
def augment_graph(
    source,
    gpu: bool,
    ahead: int = 2,
    warp: str = "resize",
    mixup: bool = False,
    how: str | None = None,
    paste: bool = False,
    instances: bool = False,
):
    """Training: decode and resize each image of the batch once, one canvas per sample from those (two with
    mixup, blended), then HSV, flips, HWC -> CHW. The boxes the source planned pass through beside the pixels.
    With `paste` (YOLOv5's copy_paste) the source sends a mask per canvas too; with `instances` (segmentation)
    each sample's masks (an overlap mask, or whole masks as bit planes), which pass through beside the boxes."""
    row, how = Row(warp, mixup, paste), how or ("concat" if gpu else "paste")
    jpegs, params, boxes, *masks = fn.external_source(
        source=source,
        num_outputs=3 + paste * row.canvases + instances,
        batch=True,
        parallel=True,
        batch_info=True,
        prefetch_queue_depth=ahead,
    )
    found = masks.pop() if instances else None
    masks = [m.gpu() if gpu else m for m in masks]
    loaded = load(jpegs, params[0], params[1], gpu, antialias=False)
    s = row.sample
    size = params[s : s + 2]
    images = canvas_graph(loaded, params, 2, row, size, how, *masks[:1])
    if mixup:  # YOLOv5's mixup: im * r + im2 * (1 - r)
        second = canvas_graph(loaded, params, 2 + row.canvas, row, size, how, *masks[1:])
        ratio = params[s + 7]
        blend = fn.cast(images, dtype=types.FLOAT) * ratio + fn.cast(second, dtype=types.FLOAT) * (1.0 - ratio)
        images = fn.cast(blend, dtype=types.UINT8)
    images = fn.hsv(images, hue=params[s + 2], saturation=params[s + 3], value=params[s + 4])
    flip_lr, flip_ud = fn.cast(params[s + 5], dtype=types.INT32), fn.cast(params[s + 6], dtype=types.INT32)
    images = fn.flip(images, horizontal=flip_lr, vertical=flip_ud)
    images = fn.transpose(images, perm=[2, 0, 1])
    return (images, boxes, found) if instances else (images, boxes)


def build(
    graph,
    source,
    device: str,
    batch: int,
    workers: int,
    start_method: str | None = None,
    per_batch: float = 0.0,
    **options,
):
    """Instantiate and build a graph for `device` with `workers` source processes, each with a batch to work on
    (DALI's parallel source computes only one batch ahead unless told otherwise). The workers are forked for a CPU
    graph while no CUDA context exists in this process, else spawned (DALI refuses to fork once CUDA is up).
    `per_batch`: a batch's encoded bytes, checked against the shared memory the workers hand batches over in."""
    device_id = parse_device(device)
    fork = device_id is None and not backend.IsDriverInitialized()
    ahead, queue = max(2, workers), 2
    check_shared_memory(per_batch, ahead + queue)
    method = start_method or ("fork" if fork else "spawn")
    pipe = graph(
        source=source,
        ahead=ahead,
        **options,
        gpu=device_id is not None,
        device_id=device_id,
        batch_size=batch,
        num_threads=int(os.environ.get("FASTLOAD_DALI_THREADS", 0)) or max(1, min(4, os.cpu_count() or 1)),
        py_num_workers=max(1, workers),
        py_start_method=method,
        prefetch_queue_depth=queue,
    )
    with ctrl_c_held(spawn=method != "fork"):  # the workers inherit SIGINT blocked
        pipe.build()  # starts the source workers
    return pipe
