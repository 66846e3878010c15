"""A segmentation model's masks at the original's resolution (yolo.segment.native_masks: every box's pixels sampled
together by gathers over the flattened masks) against sampling them box by box with torch's grid_sample
(reference_native_masks, the first version), for one image's detections. Prints JSON.

    python benchmarks/native_masks.py --detections 30 300 --repeats 5 [--device cuda]

A 640 x 640 input (a tile, or a letterboxed image) and its 160 x 160 prototypes; boxes of 8-100 pixels (`small`,
what sliced inference's tiles hold) or 40-400 (`large`). 300 detections is validation's max_det (confidence 0.001,
every one's mask scored); 30 is a detect.py image. Medians of `--repeats` runs after one; both give the same masks
(tests/test_segment.py).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from yolo.segment import native_masks, reference_native_masks  # noqa: E402


def timed(fn, repeats: int, device: str) -> float:
    fn()
    times = []
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()  # (each ends with its masks on the host)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def run(detections: list[int], repeats: int = 5, device: str = "cpu") -> dict:
    g = torch.Generator().manual_seed(0)
    proto = torch.nn.functional.interpolate(torch.randn(1, 32, 20, 20, generator=g), (160, 160), mode="bilinear")[0]
    proto = proto.to(device)
    rng = np.random.default_rng(0)
    shape, orig, ratio, pad = (640, 640), (640, 640), (1.0, 1.0), (0, 0)
    results = []
    for kind, (lo, hi) in (("small", (8, 100)), ("large", (40, 400))):
        for n in detections:
            xy = rng.uniform(0, 600, (n, 2))
            boxes = np.c_[xy, np.minimum(xy + rng.uniform(lo, hi, (n, 2)), 640)]
            coefficients = torch.randn(n, 32, generator=g).to(device)
            args = (proto, coefficients, boxes, shape, orig, ratio, pad)
            fast = timed(lambda args=args: native_masks(*args), repeats, device)
            loop = timed(lambda args=args: reference_native_masks(*args), repeats, device)
            pixels = int(sum(m.pixels.size for m in native_masks(*args)))
            results.append({"boxes": kind, "detections": n, "pixels": pixels, "grid_sample_ms": round(loop * 1000, 2),
                            "native_masks_ms": round(fast * 1000, 2), "speedup": round(loop / fast, 1)})  # fmt: skip
    machine = torch.cuda.get_device_name() if device == "cuda" else f"{platform.machine()}, {os.cpu_count()} cores"
    return {"benchmark": "native_masks", "device": device, "machine": machine, "repeats": repeats, "results": results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--detections", type=int, nargs="+", default=[30, 300])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    print(json.dumps(run(args.detections, args.repeats, args.device), indent=1))


if __name__ == "__main__":
    main()
