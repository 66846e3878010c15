"""The YOLOv5 classification trainer (its classify/train.py) on fastload's classification loader: Adam at lr0 0.001
with weight decay 5e-5, a linear decay to lr0 x 0.01 stepped per epoch, cross-entropy with label smoothing 0.1,
gradients clipped to norm 10, AMP on CUDA, EMA, top-1/top-5 validation of the EMA after every epoch, and
`runs/train-cls/<name>/` with results.csv, opt.yaml, weights/last.pt and best.pt (by top-1) written atomically. One
process, or one per GPU under torchrun (rank 0 validates and writes). `fastload train` comes here for a
classification store (class folders) or an n-cls .. x-cls model.

    fastload train --data datasets/imagenette160 --model s-cls --epochs 10 --imgsz 224
"""

from __future__ import annotations

import csv
import os
import random
import time
from dataclasses import asdict, dataclass, fields

import numpy as np
import torch
import yaml
from tqdm import tqdm

from fastload.errors import FastloadError
from fastload.loader.classify import ClassifyAugment
from fastload.loader.classify_loader import ClassifyLoader, normalize, record_classes
from fastload.store.tempfiles import write_atomic
from yolo.checkpoint import load_checkpoint, noting_kept_checkpoint, rng_state, save_atomic, set_rng_state, weights_only
from yolo.classify import classifier, classify_arch
from yolo.classify_val import class_table, validate
from yolo.ema import ModelEMA
from yolo.model import fit_stride
from yolo.optim import OptimHyp, build_optimizer, lr_factor
from yolo.run_data import say
from yolo.rundir import new_run_dir
from yolo.stepclock import StepClock
from yolo.weights import read_weights, transfer

TASK = "classify"
COLUMNS = ["epoch", "train_loss", "val_loss", "top1", "top5", "lr0", "images_per_sec", "data_wait_s", "compute_s",
           "val_s", "checkpoint_s"]  # fmt: skip


@dataclass
class ClassifyConfig:
    data: str = ""  # a classification store (its train and val splits), or the class folders packed into it
    dataset: str = ""  # the class folders `data` was packed from
    model: str = ""  # n-cls .. x-cls ("" = `weights`' model, else n-cls)
    weights: str = ""  # start from a classification checkpoint, or a detection one's backbone (YOLOv5's way)
    epochs: int = 10  # YOLOv5's classify default
    imgsz: int = 224  # training and validation size (a multiple of 32)
    batch: int = 64  # training batch; validation takes twice as many
    device: str = ""  # cpu, cuda, cuda:N ("" = cuda if there is one)
    workers: int = 2  # DALI source processes per loader
    seed: int = 0
    optimizer: str = "Adam"  # SGD, Adam, AdamW or RMSProp
    lr0: float = 0.001
    decay: float = 5e-5  # weight decay of the weights (not the biases nor the norms' weights)
    label_smoothing: float = 0.1
    dropout: float = 0.0  # before Classify's linear layer
    cosine: bool = False  # cosine instead of linear lr decay
    augment: bool = True  # RandomResizedCrop, flips, colour jitter (False: training sees the centre crops too)
    nosave: bool = False  # last.pt only after the last epoch (best.pt when it improves)
    noval: bool = False  # validate only after the last epoch
    project: str = "runs/train-cls"
    name: str = "exp"
    exist_ok: bool = False
    resume: str = ""  # a last.pt to continue from (its config wins, apart from epochs)
    task: str = TASK


def classify_config(options: dict, given: set[str] | None = None) -> ClassifyConfig:
    """A ClassifyConfig of a detection run's values (TrainConfig's, with lr0 and decay): its store and those `given`
    on the command line (default: those that differ from TrainConfig's defaults), YOLOv5's classify defaults for the
    rest; a `--hyp` file gives lr0 and decay."""
    from yolo.train import TrainConfig

    names = {f.name for f in fields(ClassifyConfig)} - {"task"}
    if given is None:
        defaults = asdict(TrainConfig())
        given = {k for k, v in options.items() if k not in defaults or v != defaults[k]} - {"lr0", "decay"}
    given = set(given) | {"data", "dataset"} | ({"lr0", "decay"} if "hyp" in given else set())
    return ClassifyConfig(**{k: v for k, v in options.items() if k in names and k in given and v is not None})


def resume_classifier(path: str, epochs: int, progress: bool = True) -> dict:
    """Continue the classification run whose last.pt is `path` (to `epochs` when more than its own)."""
    from fastload.store import open_store

    saved = load_checkpoint(path)["config"]
    try:
        stores = open_store(saved["data"], "train"), open_store(saved["data"], "val")
    except FastloadError as e:
        raise FastloadError(f"{path}: its store is gone ({e.message})") from None
    return train_classifier(ClassifyConfig(**{**saved, "epochs": epochs, "resume": path}), *stores, progress)


def resolve_model(cfg: ClassifyConfig, nc: int) -> tuple[torch.nn.Module, dict | None]:
    """The model to train (n-cls .. x-cls, or a torchvision model by name), and what `cfg.weights` gave it: a
    classification checkpoint's tensors (a new class count leaves the last layer new), or a detection checkpoint's
    backbone (YOLOv5's ClassificationModel(model=...))."""
    if not cfg.weights:
        cfg.model = cfg.model or "n-cls"
        return classifier(cfg.model, nc, cfg.dropout), None
    pretrained = read_weights(cfg.weights)
    arch = pretrained.arch
    if not classify_arch(arch):  # a detector: its size's classifier, its backbone's tensors
        if not isinstance(arch, str) or arch[:1] not in "nsmlx" or arch[1:] not in ("", "-seg"):
            raise FastloadError(f"{cfg.weights}: a {arch if isinstance(arch, str) else 'yaml'} model; a classifier "
                                "takes the backbone of YOLOv5 n .. x (or -seg)")  # fmt: skip
        arch = f"{arch[0]}-cls"
    cfg.model = cfg.model or arch
    model = classifier(cfg.model, nc, cfg.dropout)
    by_index = pretrained.arch if cfg.model.endswith("-cls") else None  # YOLOv5's layer index; torchvision: names
    done, total = transfer(model, pretrained.state, by_index)
    return model, {"weights": cfg.weights, "source": pretrained.source, "transferred": done, "total": total}


def train_classifier(cfg: ClassifyConfig, train_store, val_store, progress: bool = True) -> dict:
    checkpoint = None
    if cfg.resume:
        checkpoint = load_checkpoint(cfg.resume)
        saved, done = checkpoint["config"], checkpoint["epoch"] + 1
        epochs = cfg.epochs or saved["epochs"]  # (resume_classifier: 0 when not given)
        if epochs <= done:
            raise FastloadError(f"{cfg.resume}: already trained {done} of {epochs} epochs; ask for more with --epochs")
        cfg = ClassifyConfig(**{**saved, "epochs": epochs, "resume": cfg.resume})
    record_classes(train_store), record_classes(val_store)  # a detection store: one line, before a run folder
    for store in (train_store, val_store):
        if not len(store):
            raise FastloadError(f"{store.path}: no images in its {store.split} split; a classifier trains on train and "
                                "is validated on val")  # fmt: skip
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    main = rank == 0
    if cfg.batch % world:
        raise FastloadError(f"--batch {cfg.batch} is the total over {world} processes: make it a multiple of {world}")
    device = torch.device(cfg.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    cuda = device.type == "cuda"
    if world > 1:  # torchrun: one process per GPU (or CPU processes over gloo), each with its shard of the batches
        if cuda:
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
            torch.cuda.set_device(device)
        torch.distributed.init_process_group("nccl" if cuda else "gloo")
    progress = progress and main
    imgsz = fit_stride(cfg.imgsz, 32, floor=32)
    if imgsz != cfg.imgsz and progress:
        say(f"--imgsz {cfg.imgsz}: a multiple of the stride 32: using {imgsz}")
    cfg.imgsz = imgsz
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    nc = len(train_store.names)
    model, started_from = resolve_model(cfg, nc) if checkpoint is None else (classifier(cfg.model, nc), None)
    if started_from and progress:
        say(f"transferred {started_from['transferred']}/{started_from['total']} tensors from {cfg.weights}")
    if main and not cfg.resume:
        cfg.name = os.path.basename(new_run_dir(cfg.project, cfg.name, cfg.exist_ok))
    out = os.path.join(cfg.project, cfg.name)  # (written by rank 0 alone)
    if main:
        os.makedirs(os.path.join(out, "weights"), exist_ok=True)
        write_atomic(os.path.join(out, "opt.yaml"), yaml.safe_dump(asdict(cfg), sort_keys=False).encode())
    model = model.to(device, memory_format=torch.channels_last)
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"])
    torch.backends.cudnn.benchmark = cuda
    opt = build_optimizer(
        model,
        cfg.optimizer,
        cfg.batch,
        OptimHyp(lr0=cfg.lr0, momentum=0.9, weight_decay=cfg.decay, nominal_batch=cfg.batch),
    )  # fmt: skip  (YOLOv5's smart_optimizer)
    ema, scaler = ModelEMA(model), torch.amp.GradScaler(device.type, enabled=cuda)
    criterion = torch.nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    start_epoch, best, best_epoch = 0, 0.0, -1
    if checkpoint is not None:
        ema.ema.load_state_dict(checkpoint["ema"])
        ema.updates = checkpoint["ema_updates"]
        opt.load_state_dict(checkpoint["optimizer"])
        scaler.load_state_dict(checkpoint["scaler"])
        start_epoch, best, best_epoch = checkpoint["epoch"] + 1, checkpoint["best_fitness"], checkpoint["best_epoch"]
        set_rng_state(checkpoint["rng"])
    augment = ClassifyAugment() if cfg.augment else None
    loader = ClassifyLoader(train_store, cfg.imgsz, cfg.batch // world, augment=augment, seed=cfg.seed, rank=rank,
                            world=world, device=str(device), workers=cfg.workers)  # fmt: skip
    if not cfg.augment:  # the centre crops, still shuffled every epoch
        loader.planner.sampler.shuffle = loader.planner.sampler.pad = True
    val_loader = ClassifyLoader(val_store, cfg.imgsz, cfg.batch * 2, augment=None, device=str(device),
                                workers=cfg.workers) if main else None  # fmt: skip
    results = os.path.join(out, "results.csv")
    if main and (checkpoint is None or not os.path.exists(results)):
        write_atomic(results, (",".join(COLUMNS) + "\n").encode())
    forward = model if world == 1 else torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index]
                                                                                 if cuda else None)  # fmt: skip
    clock, totals, startup = StepClock(device), np.zeros(3), 0.0  # images, data wait, compute
    metrics, epoch = {}, start_epoch - 1
    with noting_kept_checkpoint(os.path.join(out, "weights", "last.pt")):
        for epoch in range(start_epoch, cfg.epochs):
            for group in opt.param_groups:  # YOLOv5's LambdaLR, stepped after each epoch
                group["lr"] = group["initial_lr"] * lr_factor(epoch, cfg.epochs, 0.01, cfg.cosine)
            model.train()
            loader.set_epoch(epoch)
            loss_sum, images = torch.zeros((), device=device), 0
            bar = tqdm(total=len(loader), desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False,
                       disable=None if progress else True)  # fmt: skip
            clock.start(startup=epoch == start_epoch)
            for b in loader:
                clock.batch_ready()
                x = normalize(b.images).contiguous(memory_format=torch.channels_last)
                with torch.autocast(device.type, enabled=cuda):
                    loss = criterion(forward(x), b.labels)  # DDP averages the ranks' gradients
                scaler.scale(loss).backward()
                scaler.unscale_(opt)
                torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=10.0)
                scaler.step(opt)
                scaler.update()
                opt.zero_grad(set_to_none=True)
                ema.update(model)
                clock.step_done()
                loss_sum += loss.detach() * len(x)
                images += len(x)
                bar.update()
            wait, compute = clock.stop()
            bar.close()
            totals += (images, wait, compute)
            startup += clock.startup
            if not main:
                continue
            last = epoch == cfg.epochs - 1
            val_s, improved = 0.0, False
            if last or not cfg.noval:
                t0 = time.perf_counter()
                metrics = validate(ema.ema, val_loader, criterion, train_store.names, progress)
                val_s = time.perf_counter() - t0
                improved = metrics["top1"] > best or best_epoch < 0
                if improved:
                    best, best_epoch = metrics["top1"], epoch
            t0 = time.perf_counter()
            writes = [("last.pt", False)] * (not cfg.nosave or last) + [("best.pt", True)] * improved
            state = writes and {
                "model": model.state_dict(), "ema": ema.ema.state_dict(), "ema_updates": ema.updates,
                "optimizer": opt.state_dict(), "scaler": scaler.state_dict(), "epoch": epoch, "best_fitness": best,
                "best_epoch": best_epoch, "config": asdict(cfg), "rng": rng_state(), "names": train_store.names,
                "metrics": {k: metrics[k] for k in ("top1", "top5", "loss") if k in metrics},
            }  # fmt: skip
            for name, stripped in writes:
                save_atomic(weights_only(state) if stripped else state, os.path.join(out, "weights", name))
            row = [epoch, float(loss_sum) / max(images, 1), metrics.get("loss", 0.0), metrics.get("top1", 0.0),
                   metrics.get("top5", 0.0), opt.param_groups[0]["lr"], images / max(wait + compute, 1e-9), wait,
                   compute, val_s, time.perf_counter() - t0]  # fmt: skip
            with open(results, "a", newline="") as f:
                csv.writer(f).writerow([f"{v:.6g}" if isinstance(v, float) else v for v in row])
            if progress:
                say(f"epoch {epoch + 1}/{cfg.epochs}: loss {row[1]:.3f}, val loss {row[2]:.3f}, top-1 {row[3]:.3f}, "
                    f"top-5 {row[4]:.3f}")  # fmt: skip
    if progress and "classes" in metrics and len(train_store.names) < 50:
        for line in class_table(metrics):
            say(line)
    if world > 1:
        torch.distributed.destroy_process_group()
    return {
        "rank": rank,
        "task": TASK,
        "model": cfg.model,
        "top1": metrics.get("top1", 0.0),
        "top5": metrics.get("top5", 0.0),
        "val_loss": metrics.get("loss", 0.0),
        "epochs": epoch + 1,
        "val_images": metrics.get("images", 0),
        "images_per_sec": float(totals[0] / max(totals[1] + totals[2], 1e-9)),
        "data_wait_fraction": float(totals[1] / max(totals[1] + totals[2], 1e-9)),
        "loader_startup_s": startup,
        "weights": os.path.join(out, "weights", "best.pt"),
        "last": os.path.join(out, "weights", "last.pt"),
        "results": results,
        "device": str(device),
        "pretrained": started_from,
        "best_epoch": best_epoch,
    }
