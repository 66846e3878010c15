"""YOLOv5's hyperparameter evolution (`train.py --evolve`): each generation trains with the hyperparameters of one of
the best earlier generations (drawn by fitness), mutated; evolve.csv keeps every generation's results and
hyperparameters, hyp_evolve.yaml the best ones (`fastload train --hyp` reads it). Seeded: the same run mutates the
same way.

    fastload train --data coco128.lmdb --epochs 10 --evolve 300      # -> runs/evolve/exp/
"""

from __future__ import annotations

import csv
import os
import sys
from dataclasses import replace

import numpy as np
from tqdm import tqdm

from fastload.errors import FastloadError
from fastload.store.tempfiles import write_atomic
from yolo.hyp import ORDER, check_hyp, hyp_yaml
from yolo.metrics import fitness
from yolo.rundir import new_run_dir
from yolo.train import train

# YOLOv5's mutation gain (0: kept as given) and limits per key. `anchors` is left out: the model has 3 a level.
META = {"lr0": (1, 1e-5, 1e-1), "lrf": (1, 0.01, 1.0), "momentum": (0.3, 0.6, 0.98), "weight_decay": (1, 0.0, 0.001),
        "warmup_epochs": (1, 0.0, 5.0), "warmup_momentum": (1, 0.0, 0.95), "warmup_bias_lr": (1, 0.0, 0.2),
        "box": (1, 0.02, 0.2), "cls": (1, 0.2, 4.0), "cls_pw": (1, 0.5, 2.0), "obj": (1, 0.2, 4.0),
        "obj_pw": (1, 0.5, 2.0), "iou_t": (0, 0.1, 0.7), "anchor_t": (1, 2.0, 8.0), "fl_gamma": (0, 0.0, 2.0),
        "hsv_h": (1, 0.0, 0.1), "hsv_s": (1, 0.0, 0.9), "hsv_v": (1, 0.0, 0.9), "degrees": (1, 0.0, 45.0),
        "translate": (1, 0.0, 0.9), "scale": (1, 0.0, 0.9), "shear": (1, 0.0, 10.0), "perspective": (0, 0.0, 0.001),
        "flipud": (1, 0.0, 1.0), "fliplr": (0, 0.0, 1.0), "mosaic": (1, 0.0, 1.0), "mixup": (1, 0.0, 1.0),
        "copy_paste": (1, 0.0, 1.0)}  # fmt: skip
RESULTS = ("precision", "recall", "map50", "map50_95", "fitness")
PARENTS = 5  # the best generations a parent is drawn from


def mutate(rows: list[dict], rng: np.random.Generator) -> dict[str, float]:
    """A parent drawn from the best generations (weighted by fitness above the worst of them), each key multiplied
    by a factor in [0.3, 3] (changed with probability 0.8, sigma 0.2 x gain), clipped to its limits."""
    best = sorted(rows, key=lambda r: -r["fitness"])[:PARENTS]
    weights = np.array([r["fitness"] for r in best]) - min(r["fitness"] for r in best) + 1e-6
    parent = best[rng.choice(len(best), p=weights / weights.sum())]
    gains = np.array([META[k][0] for k in ORDER])
    factors = np.ones(len(ORDER))
    while (factors == 1).all():  # at least one key changes
        changed = rng.random(len(ORDER)) < 0.8
        factors = (gains * changed * rng.standard_normal(len(ORDER)) * rng.random() * 0.2 + 1).clip(0.3, 3.0)
    return limit({k: parent[k] * f for k, f in zip(ORDER, factors, strict=True)})


def limit(hyp: dict[str, float]) -> dict[str, float]:
    return {k: round(min(max(v, META[k][1]), META[k][2]), 5) for k, v in hyp.items()}


def read_generations(path: str) -> list[dict]:
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def evolve(cfg, generations: int, progress: bool = True) -> dict:
    """`generations` trainings of `cfg` (a TrainConfig; its hyp is generation 0's, and the parent of the rest), each
    validated after its last epoch only and saving its weights only then, into PROJECT/NAME (runs/evolve/exp,
    exp2, ...; with `exist_ok` a folder's evolve.csv goes on from its generations, as YOLOv5's --resume does)."""
    if int(os.environ.get("WORLD_SIZE", 1)) > 1:
        raise FastloadError("--evolve runs one process: start it without torchrun")
    base = limit({k: v for k, v in check_hyp(cfg.hyp).items() if k in META})
    root = new_run_dir(cfg.project, cfg.name, cfg.exist_ok)
    table = os.path.join(root, "evolve.csv")
    rows = read_generations(table)
    rng = np.random.default_rng([cfg.seed, len(rows)])
    for g in tqdm(range(len(rows), len(rows) + generations), desc="evolve", unit="gen", disable=not progress or None):
        hyp = mutate(rows, rng) if rows else base
        run = replace(cfg, hyp=hyp, project=root, name="generation", exist_ok=True, noval=True, nosave=True,
                      noplots=True, patience=0, resume="")  # fmt: skip
        result = train(run, progress=False)
        if result.get("task") == "classify":
            raise FastloadError("--evolve evolves YOLOv5's detection hyperparameters; a classifier takes --lr0, "
                                "--decay and --label-smoothing")  # fmt: skip
        row = {k: result[k] for k in RESULTS[:-1]}
        row |= {"fitness": fitness(row), **hyp}
        rows.append(row)
        new = not os.path.exists(table)
        with open(table, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=[*RESULTS, *ORDER])
            if new:
                writer.writeheader()
            writer.writerow(row)
        best = max(range(len(rows)), key=lambda i: rows[i]["fitness"])
        header = f"# fastload hyperparameter evolution: best generation {best} of {len(rows)} (fitness "
        header += f"{rows[best]['fitness']:.5g}, mAP@0.5 {rows[best]['map50']:.5g})\n"
        best_hyp = hyp_yaml({k: rows[best][k] for k in ORDER})
        write_atomic(os.path.join(root, "hyp_evolve.yaml"), header.encode() + best_hyp)
        if progress:
            tqdm.write(f"generation {g}: fitness {row['fitness']:.4f} (best {rows[best]['fitness']:.4f})", sys.stderr)
    best = max(rows, key=lambda r: r["fitness"])
    return {
        "generations": len(rows),
        "best_generation": rows.index(best),
        "best": {k: best[k] for k in RESULTS},
        "hyp": os.path.join(root, "hyp_evolve.yaml"),
        "csv": table,
        "out": root,
    }
