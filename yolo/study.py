"""YOLOv5's `val.py --task study`: each model validated alone at image sizes 256 to 1536 (step 128), its rows
written to study_<data>_<weights>.txt as YOLOv5 writes them (P, R, mAP@0.5, mAP@0.5:0.95, the three val losses
(0: none computed), then the milliseconds per image for pre-processing, inference and NMS), and study.png: each
model's mAP@0.5:0.95 against its inference time per image, a point per size."""

from __future__ import annotations

import os

from fastload.loader.draw import save_image
from fastload.store.tempfiles import write_atomic

SIZES = tuple(range(256, 1536 + 128, 128))  # YOLOv5's
DPI = 300  # YOLOv5's


def study_row(result: dict) -> list[float]:
    """One size's row of a study file: YOLOv5's 10 columns from a val result."""
    ms = result["speed_ms"]
    return [result["precision"], result["recall"], result["map50"], result["map50_95"], 0.0, 0.0, 0.0,
            ms["preprocess"], ms["inference"], ms["nms"]]  # fmt: skip


def study_path(folder: str, data: str, weights: str) -> str:
    """study_<data>_<weights>.txt in `folder` (YOLOv5's name: the dataset's and the weights' file stems)."""
    stem = os.path.splitext(os.path.basename(os.path.normpath(data)))[0]
    return os.path.join(folder, f"study_{stem}_{os.path.splitext(os.path.basename(weights))[0]}.txt")


def write_study(path: str, rows: list[list[float]]) -> None:
    """The rows as numpy's savetxt writes them with YOLOv5's format ('%10.4g'), atomically."""
    write_atomic(path, "".join(" ".join(f"{v:10.4g}" for v in row) + "\n" for row in rows).encode())


def plot_study(runs: list[dict], path: str) -> None:
    """study.png: per model (`runs`: {"weights", "sizes": [{"imgsz", "map50_95", "speed_ms"}, ...]}) its
    mAP@0.5:0.95 against the inference milliseconds per image, each point labelled with its size."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 4), tight_layout=True)
    ax = fig.subplots()
    for run in runs:
        ms = [s["speed_ms"]["inference"] for s in run["sizes"]]
        ap = [100 * s["map50_95"] for s in run["sizes"]]
        ax.plot(ms, ap, ".-", linewidth=2, markersize=8, label=os.path.splitext(os.path.basename(run["weights"]))[0])
        for x, y, s in zip(ms, ap, run["sizes"], strict=True):
            ax.annotate(str(s["imgsz"]), (x, y), textcoords="offset points", xytext=(3, 3), fontsize=7)
    ax.grid(alpha=0.2)
    ax.set(xlabel="Speed (ms/img, inference)", ylabel="mAP@0.5:0.95 (%)")
    ax.legend(loc="lower right")
    save_image(fig, path, dpi=DPI)
