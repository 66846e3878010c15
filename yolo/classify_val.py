"""Classification validation, as YOLOv5's classify/val.py: top-1 and top-5 accuracy (and per class with `verbose`),
the mean loss when a criterion is given, and the seconds per image of each stage."""

from __future__ import annotations

import time
from contextlib import nullcontext

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from fastload.loader.classify_loader import ClassifyLoader, normalize


def accuracy(logits: torch.Tensor, labels: torch.Tensor, k: int = 5) -> torch.Tensor:
    """N x 2 floats: whether each image's class is the top prediction, and whether it is among the top k."""
    top = logits.topk(min(k, logits.shape[1]), 1).indices
    hit = (top == labels[:, None]).float()
    return torch.stack((hit[:, 0], hit.max(1).values), 1)


@torch.no_grad()
def validate(
    model: nn.Module,
    loader: ClassifyLoader,
    criterion: nn.Module | None = None,
    names: list[str] | None = None,
    progress: bool = False,
    desc: str = "val",
) -> dict:
    """{top1, top5, loss, images, speed_ms (pre, inference, post per image)} of `model` (in eval mode) over the
    loader's pass; with `names` also `classes`: per class {images, top1, top5}."""
    training = model.training
    model.eval()
    p = next(model.parameters(), None)  # (an exported model has none: yolo.exported.Exported)
    device, dtype = (p.device, p.dtype) if p is not None else (model.device, torch.float32)
    cuda = device.type == "cuda"
    hits, labels, loss, seconds = [], [], torch.zeros((), device=device), np.zeros(3)
    autocast = torch.autocast("cuda") if cuda and dtype == torch.float32 else nullcontext()
    try:
        for b in tqdm(loader, desc, leave=False, disable=None if progress else True):
            t0 = time.perf_counter()
            x = normalize(b.images, dtype).contiguous(memory_format=torch.channels_last)
            t1 = time.perf_counter()
            with autocast:
                logits = model(x)
            cuda and torch.cuda.synchronize(device)
            t2 = time.perf_counter()
            hits.append(accuracy(logits.float(), b.labels))
            labels.append(b.labels)
            if criterion is not None:
                loss += criterion(logits.float(), b.labels) * len(b.labels)
            seconds += (t1 - t0, t2 - t1, time.perf_counter() - t2)
    finally:
        model.train(training)
    n = sum(len(h) for h in hits)
    hit = torch.cat(hits).cpu() if hits else torch.zeros((0, 2))
    top1, top5 = hit.mean(0).tolist() if n else [0.0, 0.0]
    result = {"top1": top1, "top5": top5, "loss": float(loss) / max(n, 1), "images": n,
              "speed_ms": [round(1000 * s / max(n, 1), 3) for s in seconds]}  # fmt: skip
    if names is not None:
        classes = torch.cat(labels).cpu() if labels else torch.zeros(0, dtype=torch.int64)
        result["classes"] = {}
        for c, name in enumerate(names):
            mine = hit[classes == c]
            if len(mine):
                result["classes"][name] = {"images": len(mine), "top1": float(mine[:, 0].mean()),
                                           "top5": float(mine[:, 1].mean())}  # fmt: skip
    return result


def class_table(result: dict) -> list[str]:
    """YOLOv5's verbose lines: each class's images and accuracies, all first."""
    lines = [f"{'Class':>24}{'Images':>12}{'top1_acc':>12}{'top5_acc':>12}",
             f"{'all':>24}{result['images']:>12}{result['top1']:>12.3g}{result['top5']:>12.3g}"]  # fmt: skip
    for name, c in result.get("classes", {}).items():
        lines.append(f"{name:>24}{c['images']:>12}{c['top1']:>12.3g}{c['top5']:>12.3g}")
    return lines


def run_classify_val(w, data: str, split: str, imgsz: int, batch: int, device: str, workers: int, half: bool,
                     verbose: bool, say) -> tuple[dict, list[str]]:  # fmt: skip
    """`fastload val` of a classifier's weights `w` (yolo.weights.Weights) on a classification store's `split`
    (YOLOv5's classify/val.py): its JSON result and the lines it prints."""
    from fastload.errors import FastloadError
    from fastload.pack.cache import STORES, ensure_store, run_source
    from fastload.store import open_store, read_meta
    from yolo.exported import inference_model
    from yolo.train import resolve_device

    if not (data or w.config.get("data")):
        raise FastloadError(f"{w.path if hasattr(w, 'path') else 'the checkpoint'}: names no dataset: give --data")
    source = data or run_source(w.config["data"], w.config.get("dataset", ""), say)
    path = ensure_store(source, STORES)[0]
    if split == "val" and "val" not in read_meta(path)[1]["splits"]:  # as its training did: on test (cifar10's)
        split = "test"
    store = open_store(path, split)
    if len(store.names) != len(w.names):
        raise FastloadError(f"{store.path}: {len(store.names)} classes, but the classifier has {len(w.names)}")
    dev = resolve_device(device)
    imgsz = classifier_side(w, imgsz, say)
    model = inference_model(w, dev).eval()  # a checkpoint's, fused; or an exported file's
    model = model.half() if half and dev.type == "cuda" and isinstance(model, nn.Module) else model
    loader = ClassifyLoader(store, imgsz, batch, augment=None, device=str(dev), workers=workers)
    result = validate(model, loader, nn.CrossEntropyLoss(), store.names, progress=True)
    result |= {"task": "classify", "data": store.path, "split": split, "imgsz": imgsz, "model": w.arch,
               "epochs": w.epochs, "device": str(dev)}  # fmt: skip
    lines = [f"top-1 {result['top1']:.3f}, top-5 {result['top5']:.3f}, loss {result['loss']:.3f} on "
             f"{result['images']} images of {store.path} ({split}, {imgsz} px); speed per image "
             f"{result['speed_ms'][0]:.1f} ms pre-process, {result['speed_ms'][1]:.1f} ms inference"]  # fmt: skip
    if verbose or len(store.names) < 50:
        lines += class_table(result)
    return result, lines


def classifier_side(w, imgsz: int, say) -> int:
    """A classifier's input side: a fixed-shape export's own; else `imgsz`, the checkpoint's size or YOLOv5's
    classify 224, rounded up to the stride."""
    from yolo.exported import input_side

    return input_side(w, imgsz or w.config.get("imgsz", 224), say)
