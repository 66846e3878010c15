"""Sliced inference's decode: each tile of a large JPEG decoded as a region of interest (DALI's
`decoders.image_slice`) against the whole picture decoded for each tile and cropped, and against the whole picture
decoded once (what `detect --tile` and `val --tile` do: fastload.loader.pictures, the tiles then cut from it on the
device). Each output resized to the model's side, as the loader does. Prints JSON.

    python benchmarks/region_decode.py --pictures 6 --size 4000x3000 --tile 640 --repeats 3 [--device cuda]

The pictures are generated (a smooth colour field with texture and noise, JPEG quality 90); one batch is one
picture's tiles (or, for `whole`, the pictures themselves). Medians over `--repeats` passes, after one warm-up.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import sys
import time

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from nvidia.dali import fn, pipeline_def, types  # noqa: E402

from fastload.loader.pipelines import decode, parse_device  # noqa: E402
from fastload.pack.tiles import Tiling  # noqa: E402


def picture(w: int, h: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    field = Image.fromarray(rng.integers(0, 256, (12, 16, 3), np.uint8)).resize((w, h), Image.Resampling.BICUBIC)
    noisy = np.asarray(field, np.int16) + rng.integers(-12, 13, (h, w, 1), np.int16)
    out = io.BytesIO()
    Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).save(out, "JPEG", quality=90)
    return out.getvalue()


@pipeline_def
def graph(source, mode: str, side: int, gpu: bool):
    jpegs, regions = fn.external_source(source=source, num_outputs=2, batch=True)
    if mode == "region":  # what the sliced loaders ran before they decoded each picture once (2026-12-07)
        args = {"device": "mixed", "hw_decoder_load": 0.65} if gpu else {"device": "cpu"}
        image = fn.decoders.image_slice(jpegs, regions[0:2], regions[2:4], axis_names="WH", normalized_anchor=False,
                                        normalized_shape=False, output_type=types.RGB, **args)  # fmt: skip
    elif mode == "whole_then_crop":
        image = fn.slice(decode(jpegs, gpu), regions[0:2], regions[2:4], axis_names="WH", normalized_anchor=False,
                         normalized_shape=False)  # fmt: skip
    else:
        image = decode(jpegs, gpu)
    return fn.resize(image, resize_longer=side, interp_type=types.INTERP_LINEAR, antialias=False)


class Cycle:
    """The external source: the batches in turn, round and round."""

    def __init__(self, plan: list) -> None:
        self.plan, self.k = plan, 0

    def __call__(self):
        self.k += 1
        return self.plan[(self.k - 1) % len(self.plan)]


def batches(jpegs: list[bytes], tiling: Tiling, size: tuple[int, int], mode: str) -> list[tuple[list, np.ndarray]]:
    w, h = size
    if mode == "whole":
        return [
            ([np.frombuffer(j, np.uint8) for j in jpegs], np.tile([0, 0, w, h], (len(jpegs), 1)).astype(np.float32))
        ]
    windows = np.array([(x0, y0, x1 - x0, y1 - y0) for x0, y0, x1, y1 in tiling.windows(h, w)], np.float32)
    return [([np.frombuffer(j, np.uint8)] * len(windows), windows) for j in jpegs]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pictures", type=int, default=6)
    ap.add_argument("--size", default="4000x3000")
    ap.add_argument("--tile", type=int, default=640)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    w, h = (int(v) for v in args.size.split("x"))
    jpegs = [picture(w, h, k) for k in range(args.pictures)]
    tiling = Tiling(args.tile)
    device_id = parse_device(args.device)
    tiles = len(tiling.windows(h, w))
    result = {}
    for mode in ("region", "whole_then_crop", "whole"):
        plan = batches(jpegs, tiling, (w, h), mode)
        size = len(plan[0][0])
        pipe = graph(source=Cycle(plan), mode=mode, side=args.tile, gpu=device_id is not None, batch_size=size,
                     num_threads=max(1, min(4, os.cpu_count() or 1)), device_id=device_id,
                     prefetch_queue_depth=1)  # fmt: skip
        pipe.build()
        pipe.run()  # warm-up: the decoder's buffers
        seconds = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            for _ in plan:
                pipe.run()
            seconds.append(time.perf_counter() - t0)
        del pipe
        per_picture = statistics.median(seconds) / args.pictures
        result[mode] = {"pictures_per_sec": round(1 / per_picture, 2), "ms_per_picture": round(1000 * per_picture, 1)}
        if mode != "whole":
            result[mode]["tiles_per_sec"] = round(tiles / per_picture, 1)
    result["region_vs_whole_then_crop"] = round(
        result["whole_then_crop"]["ms_per_picture"] / result["region"]["ms_per_picture"], 2)  # fmt: skip
    print(json.dumps({
        "benchmark": "region_decode",
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}",
        "device": args.device,
        "picture": [w, h],
        "tile": args.tile,
        "tiles_per_picture": tiles,
        "pictures": args.pictures,
        "repeats": args.repeats,
        "modes": result,
    }, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
