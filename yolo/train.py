"""The YOLOv5 trainer on fastload's loaders: YOLOv5's model, loss, SGD schedule with warmup, gradient accumulation
to a nominal batch of 64, clipping, AMP on CUDA, EMA, validation every `val_interval` epochs (and the last), and
`runs/train/<name>/` with results.csv, weights/last.pt and best.pt written atomically. One process (DDP: issue 4).

    python -m yolo.train                         # or: fastload train --data runs/demo/demo.lmdb --epochs 30
"""

from __future__ import annotations

import csv
import os
import random
import sys
import time
from dataclasses import asdict, dataclass, fields

import numpy as np
import torch
from tqdm import tqdm

from fastload.errors import FastloadError
from fastload.loader.augment import Hyp
from fastload.loader.draw import save_batch_in_thread
from fastload.loader.pipelines import parse_device
from fastload.loader.train_loader import TrainLoader
from fastload.loader.val_loader import ValLoader
from fastload.pack.cache import ensure_store
from fastload.store import open_store
from yolo.autoanchor import check_anchors
from yolo.autobatch import autobatch
from yolo.checkpoint import load_checkpoint, rng_state, save_atomic, set_rng_state
from yolo.ema import ModelEMA
from yolo.loss import ComputeLoss
from yolo.model import YOLOv5, fit_stride
from yolo.optim import OptimHyp, Schedule, build_optimizer
from yolo.stepclock import StepClock
from yolo.val import validate
from yolo.weights import read_weights, transfer


@dataclass
class TrainConfig:
    data: str = ""  # a store, YOLO folder or data.yaml with train and val splits ("" = the built-in demo dataset)
    model: str = ""  # YOLOv5 size: n, s, m, l, x ("" = the size of `weights`, else n)
    weights: str = ""  # start from a fastload or YOLOv5 checkpoint: its tensors whose name and shape match
    epochs: int = 30
    imgsz: int = 256  # training and validation size (pixels, multiple of 32)
    batch: int = 16  # total over all processes; 0 = AutoBatch (CUDA: fits the largest multi-scale size)
    device: str = ""  # cpu, cuda, cuda:N ("" = cuda if there is one)
    workers: int = 2  # DALI source processes per loader
    seed: int = 0
    optimizer: str = "SGD"  # SGD or AdamW
    lr0: float = 0.01  # initial learning rate (YOLOv5: 0.01 for SGD, 0.001 for AdamW)
    warmup_epochs: float = 3.0  # lr / momentum warmup (at least 100 steps, as YOLOv5; 0 = none)
    nominal_batch: int = 0  # accumulate gradients to ~this many images per step (0: YOLOv5's 64; demo run: batch)
    augment: bool = True  # YOLOv5's hyp.scratch-low augmentation (False: letterbox only)
    cosine: bool = False  # cosine instead of linear lr decay
    multi_scale: bool = False  # one size per batch in [0.5, 1.5] x imgsz
    val_interval: int = 1  # validate every N epochs (always after the last)
    val_fraction: float = 1.0  # validate on this fixed, seeded share of the val split (at least one image)
    project: str = "runs/train"
    name: str = "exp"
    resume: str = ""  # a last.pt to continue from (its config wins, apart from epochs)


NO_AUGMENT = Hyp(hsv_h=0, hsv_s=0, hsv_v=0, translate=0, scale=0, fliplr=0, mosaic=0)

COLUMNS = ["epoch", "box_loss", "obj_loss", "cls_loss", "precision", "recall", "map50", "map50_95", "lr0",
           "images_per_sec", "data_wait_s", "compute_s", "val_s", "checkpoint_s"]  # fmt: skip


def say(message: str) -> None:
    """A line for the user, on stderr (stdout carries only --json's object), between progress bars."""
    tqdm.write(message, file=sys.stderr)


def resolve_device(device: str) -> torch.device:
    """'' -> cuda if there is one, else cpu; a device this machine lacks is a FastloadError."""
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    parse_device(device)
    return torch.device(device)


def plot_results(csv_path: str, png_path: str) -> None:
    """results.png: per epoch the losses, P and R, the mAPs, and where the seconds went."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(csv_path) as f:
        table = list(csv.DictReader(f))
    epoch = [int(r["epoch"]) for r in table]
    panels = [
        ("loss", ("box_loss", "obj_loss", "cls_loss")),
        ("P / R", ("precision", "recall")),
        ("mAP", ("map50", "map50_95")),
        ("seconds", ("data_wait_s", "compute_s", "val_s", "checkpoint_s")),
    ]
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.5))
    for ax, (title, columns) in zip(axes, panels, strict=True):
        for c in columns:
            ax.plot(epoch, [float(r[c]) for r in table], marker=".", label=c)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.legend(fontsize=8)
    fig.tight_layout()
    tmp = f"{png_path}.partial-{os.getpid()}.png"
    fig.savefig(tmp, dpi=80)
    plt.close(fig)
    os.replace(tmp, png_path)


def train(cfg: TrainConfig, progress: bool = True) -> dict:
    checkpoint = None
    if cfg.resume:
        checkpoint = load_checkpoint(cfg.resume)
        if cfg.epochs <= checkpoint["epoch"] + 1:
            done = checkpoint["epoch"] + 1
            raise FastloadError(f"{cfg.resume}: already trained {done} epochs; ask for more with --epochs")
        cfg = TrainConfig(**{**checkpoint["config"], "epochs": cfg.epochs, "resume": cfg.resume})
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    if not cfg.data:  # the built-in demo run: a 400-image dataset needs every batch to be an optimizer step
        from fastload.demo import ensure_demo_store

        cfg.data = ensure_demo_store("runs/demo")
        cfg.nominal_batch = cfg.nominal_batch or cfg.batch
    else:  # a dataset folder or data.yaml: packed once (by rank 0) and reused while its files are unchanged
        stores = os.path.join(os.path.dirname(os.path.normpath(cfg.project)), "stores")  # runs/stores
        cfg.data, report = ensure_store(cfg.data, stores, packer=rank == 0)
        if report is not None and progress:
            say(f"packed {cfg.data}: {sum(s['count'] for s in report['splits'].values())} images, "
                f"{len(report['skipped'])} skipped (fastload info {cfg.data})")  # fmt: skip
    if "://" not in cfg.data:  # the checkpoint's config names the store wherever `fastload val` runs from
        cfg.data = os.path.abspath(cfg.data)
    cfg.nominal_batch = cfg.nominal_batch or 64
    device = resolve_device(cfg.device)
    cuda = device.type == "cuda"
    if world > 1:  # torchrun: one process per GPU (or CPU processes with gloo), each with its own loader shard
        if cfg.batch % world:
            raise ValueError(f"--batch {cfg.batch} is the total over {world} processes: make it a multiple of {world}")
        if cuda:
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
            torch.cuda.set_device(device)
        torch.distributed.init_process_group("nccl" if cuda else "gloo")
    main = rank == 0
    if fit_stride(cfg.imgsz) != cfg.imgsz:
        if main and progress:
            say(f"--imgsz {cfg.imgsz} is not a multiple of the stride 32: using {fit_stride(cfg.imgsz)}")
        cfg.imgsz = fit_stride(cfg.imgsz)
    out = os.path.join(cfg.project, cfg.name)
    os.makedirs(os.path.join(out, "weights"), exist_ok=True)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)

    train_store, val_store = open_store(cfg.data, "train"), open_store(cfg.data, "val")
    pretrained = read_weights(cfg.weights) if cfg.weights and checkpoint is None else None
    cfg.model = cfg.model or (pretrained.size if pretrained else "n")
    # channels-last convolutions: 2.8x the NCHW step on an H100 under AMP, ~1.15x on the CPU (oneDNN)
    model = YOLOv5(cfg.model, nc=len(train_store.names)).to(device, memory_format=torch.channels_last)
    torch.backends.cudnn.benchmark = cuda
    anchors, started_from = None, None
    if checkpoint is not None:  # a resumed run keeps its checkpoint's weights and anchors
        model.load_state_dict(checkpoint["model"])
    else:
        if pretrained is not None:  # as YOLOv5's --weights: what fits is loaded, a new class count's head is not
            done, total = transfer(model, pretrained.state)
            started_from = {"weights": cfg.weights, "source": pretrained.source, "transferred": done, "total": total}
            if main and progress:
                say(f"transferred {done}/{total} tensors from {cfg.weights} ({pretrained.source}, {pretrained.size})")
        anchors = check_anchors(model.detect, train_store.sizes, train_store.labels, cfg.imgsz, cfg.seed)
        if main and progress:
            change = "replaced by k-means + evolution" if anchors["changed"] else "kept"
            say(f"autoanchor: best possible recall {anchors['bpr']:.3f} -> {anchors['bpr_after']:.3f}, {change}")
    if cfg.batch <= 0:
        per_process, message = autobatch(model, cfg.imgsz, cfg.multi_scale)
        cfg.batch = per_process * world
        if main:
            say(message)
    compute_loss = ComputeLoss(model.detect, cfg.imgsz)
    hyp = OptimHyp(lr0=cfg.lr0, warmup_epochs=cfg.warmup_epochs, nominal_batch=cfg.nominal_batch)
    opt = build_optimizer(model, cfg.optimizer, cfg.batch, hyp)
    augment = Hyp() if cfg.augment else NO_AUGMENT
    loader = TrainLoader(
        train_store, cfg.imgsz, cfg.batch // world, hyp=augment, seed=cfg.seed, rank=rank, world=world,
        multi_scale=cfg.multi_scale, device=str(device), workers=cfg.workers,
        # on CUDA the loss's target assignment is made ahead on the CPU (prefetch thread): it spares the step six
        # waits for the GPU. The CPU has no wait to spare, and the thread's work beside the step's slowed the demo
        # run on 2 cores by 9% (22.0 vs 24.3 img/s, means of 4 and 6 alternated 3-epoch runs)
        prepare_targets=compute_loss.assigner() if cuda else None,
    )  # fmt: skip
    val_loader = None
    if main:
        n = max(1, int(cfg.val_fraction * len(val_store) + 0.5))
        subset = np.sort(np.random.default_rng(cfg.seed).permutation(len(val_store))[:n])
        val_loader = ValLoader(
            val_store, cfg.imgsz, cfg.batch * 2, device=str(device), workers=cfg.workers, records=subset
        )
    forward = model
    if world > 1:
        forward = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if cuda else None)
    schedule = Schedule(opt, hyp, cfg.epochs, len(loader), cfg.batch, cfg.cosine)
    ema = ModelEMA(model)
    scaler = torch.amp.GradScaler(device.type, enabled=cuda)
    start_epoch, best, last_step = 0, -1.0, -1
    if checkpoint is not None:
        ema.ema.load_state_dict(checkpoint["ema"])
        ema.updates = checkpoint["ema_updates"]
        opt.load_state_dict(checkpoint["optimizer"])
        scaler.load_state_dict(checkpoint["scaler"])
        start_epoch, best, last_step = checkpoint["epoch"] + 1, checkpoint["best_fitness"], checkpoint["last_step"]
        set_rng_state(checkpoint["rng"])
    csv_path = os.path.join(out, "results.csv")
    if checkpoint is None or not os.path.exists(csv_path):
        with open(csv_path, "w", newline="") as f:
            csv.writer(f).writerow(COLUMNS)

    metrics, epoch, totals, startup = {}, start_epoch - 1, np.zeros(3), 0.0  # images, data wait, compute seconds
    drawing = []  # threads drawing YOLOv5's train_batch0-2.jpg: a new run's first batches, as the model gets them
    clock = StepClock(device)  # CUDA: the GPU's idle time between steps; CPU: the time blocked taking batches
    for epoch in range(start_epoch, cfg.epochs):
        model.train()
        loader.set_epoch(epoch)
        losses, images = torch.zeros(3, device=device), 0  # running mean, kept on the device: no sync per step
        bar = tqdm(
            total=len(loader),
            desc=f"epoch {epoch + 1}/{cfg.epochs}",
            disable=None if progress and main else True,
            leave=False,
        )
        clock.start(startup=epoch == start_epoch)  # the loader's one-time start is booked apart
        for k, batch in enumerate(loader):
            clock.batch_ready()
            step = k + epoch * len(loader)
            if main and step < 3:
                path, titles = os.path.join(out, f"train_batch{step}.jpg"), map(train_store.path_of, batch.indices[:16])
                drawing.append(
                    save_batch_in_thread(batch.images[:16], batch.targets, train_store.names, path, [*titles])
                )
            accumulate = schedule.step(epoch, step)
            x = (batch.images.float() / 255).contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, enabled=cuda):
                loss, items = compute_loss(forward(x), batch.targets, batch.assigned)
            scaler.scale(loss * world).backward()  # DDP averages gradients over ranks; YOLOv5 scales the loss back
            if step - last_step >= accumulate:
                scaler.unscale_(opt)
                torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=10.0)
                scaler.step(opt)
                scaler.update()
                opt.zero_grad(set_to_none=True)
                ema.update(model)
                last_step = step
            clock.step_done()
            losses = (losses * k + items.detach()) / (k + 1)
            images += len(x)
            if not bar.disable and (k % 10 == 0 or k == len(loader) - 1):  # a read of the losses syncs: no bar, no read
                box, obj, cls = losses.tolist()
                busy = clock.elapsed()
                bar.set_postfix(box=f"{box:.3f}", obj=f"{obj:.3f}", cls=f"{cls:.3f}", img_s=f"{images / busy:.0f}",
                                wait=f"{clock.wait / busy:.0%}")  # fmt: skip
            bar.update()
        wait, compute = clock.stop()
        bar.close()
        totals += (images, wait, compute)
        startup += clock.startup
        if not main:
            continue
        last = epoch == cfg.epochs - 1
        val_s = 0.0
        if last or (epoch + 1) % cfg.val_interval == 0:
            metrics = validate(ema.ema, val_loader, val_store, plot=os.path.join(out, "val_batch0") if last else "")
            val_s = metrics["seconds"]
        fitness = 0.1 * metrics.get("map50", 0.0) + 0.9 * metrics.get("map50_95", 0.0)  # YOLOv5's fitness
        t0 = time.perf_counter()
        state = {
            "model": model.state_dict(), "ema": ema.ema.state_dict(), "ema_updates": ema.updates,
            "optimizer": opt.state_dict(), "scaler": scaler.state_dict(), "epoch": epoch,
            "best_fitness": max(best, fitness), "last_step": last_step, "config": asdict(cfg), "rng": rng_state(),
            "names": train_store.names, "metrics": {k: v for k, v in metrics.items() if isinstance(v, float)},
        }  # fmt: skip
        save_atomic(state, os.path.join(out, "weights", "last.pt"))
        if fitness > best:
            best = fitness
            save_atomic(state, os.path.join(out, "weights", "best.pt"))
        checkpoint_s = time.perf_counter() - t0
        with open(csv_path, "a", newline="") as f:
            row = [epoch, *losses.cpu().tolist(), *(metrics.get(k, 0.0) for k in ("precision", "recall", "map50")),
                   metrics.get("map50_95", 0.0), opt.param_groups[0]["lr"], images / max(wait + compute, 1e-9),
                   wait, compute, val_s, checkpoint_s]  # fmt: skip
            csv.writer(f).writerow([f"{v:.6g}" if isinstance(v, float) else v for v in row])
        plot_results(csv_path, os.path.join(out, "results.png"))
    for thread in drawing:
        thread.join()
    if world > 1:
        torch.distributed.destroy_process_group()
    return {
        "rank": rank,
        "map50": metrics.get("map50", 0.0),
        "map50_95": metrics.get("map50_95", 0.0),
        "precision": metrics.get("precision", 0.0),
        "recall": metrics.get("recall", 0.0),
        "epochs": epoch + 1,
        "val_images": metrics.get("images", 0),
        "images_per_sec": float(totals[0] / max(totals[1] + totals[2], 1e-9)),
        "data_wait_fraction": float(totals[1] / max(totals[1] + totals[2], 1e-9)),
        "loader_startup_s": startup,  # the first batch of the run: worker processes, pipeline build
        "weights": os.path.join(out, "weights", "best.pt"),
        "last": os.path.join(out, "weights", "last.pt"),
        "results": csv_path,
        "device": str(device),
        "autoanchor": anchors,
        "pretrained": started_from,  # --weights: what was transferred (None: from scratch, or resumed)
    }


def config_from(**overrides) -> TrainConfig:
    names = {f.name for f in fields(TrainConfig)}
    return TrainConfig(**{k: v for k, v in overrides.items() if k in names and v is not None})


if __name__ == "__main__":
    print(train(TrainConfig()))
