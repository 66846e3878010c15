"""A run's folder, named as YOLOv5 names them: runs/train/exp, then exp2, exp3, ... so that a new run never writes
over an earlier one's weights and results (or reuse the name with `exist_ok`, YOLOv5's --exist-ok)."""

from __future__ import annotations

import os


def new_run_dir(project: str, name: str, exist_ok: bool = False) -> str:
    """`project/name`, or the first free `project/name{2,3,...}`, created here (mkdir is atomic: two runs starting
    together get two folders)."""
    os.makedirs(project, exist_ok=True)
    path = os.path.join(project, name)
    if exist_ok:
        os.makedirs(path, exist_ok=True)
        return path
    for n in range(1, 10_000):
        candidate = path if n == 1 else f"{path}{n}"
        try:
            os.mkdir(candidate)
            return candidate
        except FileExistsError:
            continue
    raise FileExistsError(f"{path}: 10,000 runs of this name already; choose another --name")
