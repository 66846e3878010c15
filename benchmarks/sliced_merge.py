"""Sliced inference's merge (yolo.sliced.nmm_groups: SAHI's greedy non-maximum merging) against the plain loop it
replaced (reference_nmm_groups: each kept box against every later one), on one large picture's detections from
all its tiles. Prints JSON.

    python benchmarks/sliced_merge.py --boxes 1000 5000 14400 --repeats 5

Three kinds of detections, all in a 4000 x 3000 picture: `spread` (boxes of 4-64 px anywhere: a validation's
faint boxes at confidence 0.001), `crowds` (60 crowds of 50 nested boxes), and `val` (what `val --tile` merges: 48
tiles' 300 boxes each, a fifth of them around 150 objects, each seen by up to 4 overlapping tiles, the rest faint
boxes anywhere). Medians of `--repeats` runs, after one; both give the same groups (checked here and in
tests/test_detect_tiles.py).
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

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from yolo.sliced import nmm_groups, reference_nmm_groups  # noqa: E402

W, H = 4000, 3000


def rows(xy: np.ndarray, wh: np.ndarray, conf: np.ndarray, cls: np.ndarray) -> np.ndarray:
    return np.c_[xy, xy + wh, conf, cls].astype(np.float64)


def detections(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    if kind == "spread":
        return rows(
            rng.random((n, 2)) * (W, H), rng.random((n, 2)) * 60 + 4, rng.random(n) * 0.05, rng.integers(0, 10, n)
        )
    if kind == "crowds":
        k = max(1, n // 50)
        centre = np.repeat(rng.random((k, 2)) * (W, H), 50, axis=0)[:n] + rng.normal(0, 4, (n, 2))
        side = np.repeat(rng.random((k, 2)) * 60 + 10, 50, axis=0)[:n] + rng.normal(0, 3, (n, 2))
        return rows(centre, np.abs(side), rng.random(n), np.repeat(rng.integers(0, 3, k), 50)[:n])
    objects = n // 5  # val: a fifth around objects, each seen by 1-4 tiles with a box or two each
    place = rng.random((150, 2)) * (W, H)
    side = rng.random((150, 2)) * 40 + 8
    which = rng.integers(0, 150, objects)
    seen = rows(place[which] + rng.normal(0, 2, (objects, 2)), side[which] * rng.uniform(0.5, 1.1, (objects, 2)),
                rng.uniform(0.3, 0.95, objects), which % 5)  # fmt: skip
    return np.concatenate([seen, detections("spread", n - objects, rng)])


def timed(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--boxes", type=int, nargs="+", default=[1000, 5000, 14400])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    results = []
    for kind in ("spread", "crowds", "val"):
        for n in args.boxes:
            det = detections(kind, n, rng)
            new, old = nmm_groups(det), reference_nmm_groups(det)
            assert len(new) == len(old) and all(np.array_equal(a, b) for a, b in zip(new, old, strict=True))
            fast = timed(lambda det=det: nmm_groups(det), args.repeats)
            loop = timed(lambda det=det: reference_nmm_groups(det), args.repeats)
            results.append({"kind": kind, "boxes": n, "kept": len(new), "reference_ms": round(loop * 1000, 2),
                            "nmm_groups_ms": round(fast * 1000, 2), "speedup": round(loop / fast, 1)})  # fmt: skip
    print(json.dumps({"benchmark": "sliced_merge", "machine": f"{platform.machine()}, {os.cpu_count()} cores",
                      "repeats": args.repeats, "results": results}, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
