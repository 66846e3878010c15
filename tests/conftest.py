"""Shared fixtures: a tiny generated demo dataset and its packed store, image makers, and a CLI runner."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys

import torch

if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:  # run as a shell's background job (`&`): the Ctrl-C tests'
    signal.signal(signal.SIGINT, signal.default_int_handler)  # processes would inherit the ignored SIGINT

if not torch.cuda.is_available():  # Triton kernels run in its interpreter; set before any kernel is defined
    os.environ.setdefault("TRITON_INTERPRET", "1")

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from fastload.cli import main
from fastload.demo_data import DemoConfig, generate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="session")
def demo_dataset(tmp_path_factory) -> str:
    """24 small demo images (~160x120), 19 train + 5 val, seed 0."""
    out = str(tmp_path_factory.mktemp("demo"))
    generate(out, DemoConfig(images=24, seed=0, scale=0.25))
    return out


@pytest.fixture(scope="session")
def demo_store(demo_dataset, tmp_path_factory) -> str:
    """The demo dataset packed into LMDB once (tests only read it)."""
    from fastload.pack import PackOptions, pack

    path = str(tmp_path_factory.mktemp("store") / "demo.lmdb")
    pack(demo_dataset, path, PackOptions())
    return path


@pytest.fixture(scope="session")
def polygon_data(tmp_path_factory) -> dict:
    """The same 16 demo images (~160x120) twice: labelled with polygons, and with boxes; both packed to LMDB
    (`polygons`, `boxes`; their folders `polygons_dir`, `boxes_dir`)."""
    from fastload.pack import PackOptions, pack

    root = tmp_path_factory.mktemp("polygons")
    out = {}
    for kind, polygons in (("polygons", True), ("boxes", False)):
        data = str(root / kind)
        generate(data, DemoConfig(images=16, seed=7, scale=0.25, val_fraction=0.25, polygons=polygons))
        out[kind] = str(root / f"{kind}.lmdb")
        pack(data, out[kind], PackOptions())
        out[kind + "_dir"] = data
    return out


@pytest.fixture(scope="session")
def overfit(tmp_path_factory) -> dict:
    """16 demo images (~160x120), trained on and validated on themselves (letterbox only, 160 px, 100 epochs):
    the train() result, with `images` (their folder) and `labels` (their YOLO label folder)."""
    import yaml

    from fastload.pack import PackOptions, pack
    from yolo.train import TrainConfig, train

    tmp = tmp_path_factory.mktemp("overfit")
    root = tmp / "data"
    generate(str(root), DemoConfig(images=16, seed=1, val_fraction=0.0, scale=0.25))
    spec = yaml.safe_load((root / "data.yaml").read_text())
    spec.update(path=str(root), val=spec["train"])
    (root / "same.yaml").write_text(yaml.safe_dump(spec))
    store = str(tmp / "sixteen.lmdb")
    pack(str(root / "same.yaml"), store, PackOptions())
    config = TrainConfig(data=store, model="n", epochs=100, imgsz=160, batch=4, workers=1, optimizer="AdamW",
                         hyp={"lr0": 0.002, "warmup_epochs": 0}, nominal_batch=4, augment=False, val_interval=1000,
                         project=str(tmp), name="overfit")  # fmt: skip
    result = train(config, progress=False)
    return result | {"images": str(root / "images" / "train"), "labels": str(root / "labels" / "train")}


SEG_EPOCHS, SEG_LR = 100, 0.002  # the segmentation run of `segmented`


@pytest.fixture(scope="session")
def segmented(tmp_path_factory) -> dict:
    """yolov5n-seg overfit on 16 polygon images, validated on themselves (letterbox only, 160 px)."""
    import yaml

    from fastload.pack import PackOptions, pack
    from yolo.train import TrainConfig, train

    tmp = tmp_path_factory.mktemp("segment")
    root = tmp / "data"
    generate(str(root), DemoConfig(images=16, seed=1, val_fraction=0.0, scale=0.25, polygons=True))
    spec = yaml.safe_load((root / "data.yaml").read_text())
    spec.update(path=str(root), val=spec["train"])
    (root / "same.yaml").write_text(yaml.safe_dump(spec))
    store = str(tmp / "sixteen.lmdb")
    pack(str(root / "same.yaml"), store, PackOptions())
    config = TrainConfig(data=store, model="n-seg", epochs=SEG_EPOCHS, imgsz=160, batch=4, workers=1,
                         optimizer="AdamW", hyp={"lr0": SEG_LR, "warmup_epochs": 0}, nominal_batch=4, augment=False,
                         val_interval=1000, project=str(tmp), name="seg", tensorboard=False)  # fmt: skip
    return train(config, progress=False) | {"store": store, "images": str(root / "images" / "train"),
                                            "labels": str(root / "labels" / "train")}  # fmt: skip


@pytest.fixture(scope="session")
def exported(overfit, tmp_path_factory) -> dict:
    """The overfit model exported to ONNX twice: for 1 x 3 x 160 x 160 (`fixed`) and `--dynamic`; each the export's
    --json object; `dir` holds the two files."""
    out = tmp_path_factory.mktemp("export")
    fixed = cli("export", "--weights", overfit["weights"], "-o", str(out / "fixed.onnx"), "--json")
    dynamic = cli("export", "--weights", overfit["weights"], "-o", str(out / "dynamic.onnx"), "--dynamic", "--json")
    return {"fixed": fixed, "dynamic": dynamic, "dir": str(out)}


def jpeg_bytes(w: int = 64, h: int = 48, colour=(200, 30, 30), mode: str = "RGB", **save) -> bytes:
    im = Image.new(mode, (w, h), colour if mode != "L" else colour[0])
    out = io.BytesIO()
    im.save(out, "JPEG", quality=90, **save)
    return out.getvalue()


def image_bytes(fmt: str, w: int = 64, h: int = 48, mode: str = "RGB") -> bytes:
    rng = np.random.default_rng(0)
    if mode in ("I;16", "I"):
        im = Image.fromarray((rng.random((h, w)) * 60000).astype(np.uint16))
    else:
        im = Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8), "RGB").convert(mode)
    out = io.BytesIO()
    im.save(out, fmt)
    return out.getvalue()


def write(path: str, data: bytes | str) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)
    return path


def children(pid: int | None = None) -> list[int]:
    """PIDs of the children of `pid` (this process by default), from /proc."""
    parent, out = pid or os.getpid(), []
    for child in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{child}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == parent:
            out.append(int(child))
    return out


def cli(*args: str, code: int = 0) -> dict | None:
    """Run `fastload ARGS` in-process; check the exit code; return the --json object if any, which must be all that
    went to stdout (the contract: human output goes to stderr)."""
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == code, f"exit {result.exit_code}: {result.output}{result.stderr}"
    lines = result.stdout.strip().splitlines()
    if "--json" not in args or not lines:
        return None
    assert len(lines) == 1, f"more than the JSON on stdout: {lines[:-1]}"
    return json.loads(lines[0])


def cli_process(*args: str, **kw) -> subprocess.CompletedProcess:
    """Run `python -m fastload ARGS` as a real process (exit codes, signals, stdout/stderr separation)."""
    kw.setdefault("cwd", ROOT)
    return subprocess.run([sys.executable, "-m", "fastload", *args], capture_output=True, text=True, **kw)


def coco_stats(images: list, annotations: list, detections: list, kind: str, categories: int) -> np.ndarray:
    """pycocotools' COCOeval (`kind` bbox or segm) of `detections` against `annotations`: its 12 stats (0: mAP@0.5:0.95,
    1: mAP@0.5), quietly."""
    import contextlib

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = {"images": images, "annotations": annotations,
                        "categories": [{"id": c} for c in range(categories)]}  # fmt: skip
        coco.createIndex()
        e = COCOeval(coco, coco.loadRes(detections), kind)
        e.evaluate()
        e.accumulate()
        e.summarize()
    return e.stats


def same_assignment(made: list[tuple], own: list[tuple]) -> bool:
    """Two target assignments (yolo.loss.assign_targets' result) hold the same grids and the same tensors."""
    return len(made) == len(own) and all(
        m[7] == o[7]
        and all(x.dtype == y.dtype and torch.equal(x, y) for x, y in zip(m[:7] + m[8:], o[:7] + o[8:], strict=True))
        for m, o in zip(made, own, strict=True)
    )
