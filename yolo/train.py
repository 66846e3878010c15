"""The YOLOv5 trainer on fastload's loaders: YOLOv5's model, loss, optimiser schedule with warmup, gradient
accumulation to a nominal batch of 64, clipping, AMP on CUDA, EMA, validation every `val_interval` epochs (and the
last), early stopping, frozen layers, YOLOv5's hyperparameter files, and `runs/train/<name>/` with results.csv,
hyp.yaml, opt.yaml, weights/last.pt and best.pt written atomically. One process, or one per GPU under torchrun.

    python -m yolo.train                         # or: fastload train --data runs/demo/demo.lmdb --epochs 30
"""

from __future__ import annotations

import os
import random
import time
from dataclasses import asdict, dataclass, field, fields
from functools import partial

import numpy as np
import torch
import yaml
from tqdm import tqdm

from fastload.errors import FastloadError
from fastload.loader.augment import Hyp
from fastload.loader.draw import save_batch_in_thread
from fastload.loader.pipelines import parse_device
from fastload.loader.train_loader import TrainLoader
from fastload.loader.val_loader import ValLoader
from fastload.pack.tiles import Tiling
from fastload.store.tempfiles import write_atomic
from yolo.autoanchor import check_anchors
from yolo.autobatch import autobatch
from yolo.checkpoint import (
    load_checkpoint,
    noting_kept_checkpoint,
    rng_state,
    save_atomic,
    set_rng_state,
    weights_only,
)
from yolo.classify import classify_arch
from yolo.classify_train import TASK as CLASSIFY
from yolo.classify_train import classify_config, resume_classifier, train_classifier
from yolo.diverge import ADVICE, LossGuard
from yolo.ema import ModelEMA
from yolo.hyp import check_hyp, fits_anchors, hyp_yaml, split_hyp
from yolo.image_weights import ImageWeights, class_maps
from yolo.loss import ComputeLoss, SegmentLoss
from yolo.metrics import fitness
from yolo.model import fit_stride, is_segment
from yolo.optim import Schedule, build_optimizer
from yolo.run_data import run_stores, say, whole_val_store
from yolo.rundir import new_run_dir
from yolo.runlog import RunLog, plot_labels
from yolo.segment import MASK_RATIO, check_mask_ratio
from yolo.sliced import Merging, SlicedImages, sliced_validate
from yolo.stepclock import StepClock
from yolo.stopping import EarlyStop, agree_to_stop, from_rank0
from yolo.val import class_rows, class_table, validate
from yolo.weights import freeze, read_weights, transfer
from yolo.yaml_model import arch_name, build_model, describe, fitted_anchors, grid_size, layer_names, segment_arch

DEFAULT_EPOCHS = 30
MASK_KEYS = ("mask_precision", "mask_recall", "mask_map50", "mask_map50_95")


@dataclass
class TrainConfig:
    data: str = ""  # a store, YOLO folder or data.yaml with train and val splits ("" = the built-in demo dataset)
    dataset: str = ""  # the YOLO folder or data.yaml `data` was packed from (set by train; packed again if it is gone)
    autosplit: tuple[float, ...] | None = None  # a dataset's images split anew: train, val (, test) weights
    classes: str | None = None  # only these classes of a dataset: "person,car", "bag=suitcase+handbag"
    background: float | None = None  # the share of a dataset's train images without objects kept (None: all)
    dedupe: bool | str = (
        False  # images stored twice packed once (a val image's train copy goes); "near", "crops": nearly
    )
    tile: int = 0  # > 0: a dataset's images cut into tiles of this side as they are packed (pack --tile)
    tile_overlap: float = 0.2  # the share of a tile's side its neighbours overlap
    tile_whole: bool = False  # with tile: each cut picture kept whole too
    val_whole: bool = False  # with tile: validate the val split's whole pictures by sliced inference, not its tiles
    tile_merge: str = "nmm"  # with val_whole: how the tiles' detections merge (yolo.sliced.Merging: SAHI's)
    tile_metric: str = "ios"
    tile_threshold: float = 0.5
    model: str | dict = ""  # YOLOv5 size: n .. x, P6 n6 .. x6, or a model yaml's dict ("" = `weights`' model, else n)
    weights: str = ""  # start from a fastload or YOLOv5 checkpoint: its tensors whose name and shape match
    epochs: int = 0  # total epochs (0 = 30, or with `resume` the run's own total)
    imgsz: int = 256  # training and validation size (pixels, multiple of 32; of 64 for a P6 model)
    batch: int = 16  # total over all processes; 0 = AutoBatch (CUDA: fits the largest multi-scale size)
    device: str = ""  # cpu, cuda, cuda:N ("" = cuda if there is one)
    workers: int = 2  # DALI source processes per loader
    seed: int = 0
    hyp: dict = field(default_factory=dict)  # YOLOv5 hyperparameters (lr0, warmup_epochs, mosaic, ...: yolo/hyp.py)
    #   over hyp.scratch-low.yaml's; `--hyp FILE` reads a YOLOv5 hyp file into it
    optimizer: str = "SGD"  # SGD, Adam, AdamW or RMSProp (give AdamW a smaller lr0, such as 0.001)
    label_smoothing: float = 0.0  # class targets 1 - eps/2 and eps/2
    dropout: float = 0.0  # a classification model's dropout before its linear layer (yolo.classify_train)
    nominal_batch: int = 0  # accumulate gradients to ~this many images per step (0: YOLOv5's 64; demo run: batch)
    augment: bool = True  # the hyperparameters' augmentation (False: letterbox only)
    image_weights: bool = False  # draw images by rare and poorly detected classes: YOLOv5's --image-weights
    sync_bn: bool = False  # BatchNorm statistics over all ranks (torchrun on CUDA devices): YOLOv5's --sync-bn
    single_cls: bool = False  # train every class as one ("item"), as YOLOv5's --single-cls
    tensorboard: bool = True  # also log the results.csv values for TensorBoard in the run folder (if installed)
    noval: bool = False  # validate only after the last epoch (and where the patience runs out): YOLOv5's --noval
    nosave: bool = False  # last.pt only after the last epoch (best.pt still when it improves): YOLOv5's --nosave
    noautoanchor: bool = False  # keep the model's anchors: YOLOv5's --noautoanchor
    noplots: bool = False  # no train_batch*, val_batch0_* pictures nor results.png: YOLOv5's --noplots
    cosine: bool = False  # cosine instead of linear lr decay
    multi_scale: bool = False  # one size per batch in [0.5, 1.5] x imgsz
    rect: bool = False  # YOLOv5's --rect: fixed batches by aspect ratio, each letterboxed to its rectangle, no mosaic
    quad: bool = False  # YOLOv5's --quad: each 4 loader images become one of twice the side (tiled 2 x 2, or upscaled)
    mask_ratio: int = MASK_RATIO  # a segmentation run's target masks: 1/N of the image's side (YOLOv5's --mask-ratio)
    no_overlap: bool = False  # a segmentation run's targets: each object's whole mask, not one overlap mask per image
    val_interval: int = 1  # validate every N epochs (always after the last)
    val_fraction: float = 1.0  # validate on this fixed, seeded share of the val split (at least one image)
    patience: int = 100  # stop after this many epochs without a better fitness (0 = never), as YOLOv5
    freeze: int = 0  # no gradients for YOLOv5's layers 0..freeze-1 (10 = the backbone; of a P6 model, 12)
    save_period: int = 0  # also keep weights/epoch{N}.pt every this many epochs (0 = never)
    project: str = "runs/train"
    name: str = "exp"  # taken: exp2, exp3, ... as YOLOv5 (the checkpoint's config has the name used)
    exist_ok: bool = False  # write into project/name even if it exists (YOLOv5's --exist-ok)
    resume: str = ""  # a last.pt to continue from (its config wins, apart from epochs)


NO_AUGMENT = Hyp(hsv_h=0, hsv_s=0, hsv_v=0, translate=0, scale=0, fliplr=0, mosaic=0)


def resolve_device(device: str) -> torch.device:
    """'' -> cuda if there is one, else cpu; a device this machine lacks is a FastloadError."""
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    parse_device(device)
    return torch.device(device)


def train(cfg: TrainConfig, progress: bool = True, given: set[str] | None = None) -> dict:
    """Train as cfg says; a classification store or model (n-cls .. x-cls) trains a classifier instead
    (yolo.classify_train: YOLOv5's classify defaults for the options not `given`, or else not set)."""
    checkpoint = None
    if cfg.resume:
        checkpoint = load_checkpoint(cfg.resume)
        if checkpoint["config"].get("task") == CLASSIFY:
            return resume_classifier(cfg.resume, cfg.epochs, progress)
        saved, done = saved_config(checkpoint["config"]), checkpoint["epoch"] + 1
        epochs = cfg.epochs or saved["epochs"]  # YOLOv5's --resume trains to the run's own end
        if epochs <= done:
            raise FastloadError(f"{cfg.resume}: already trained {done} of {epochs} epochs; ask for more with --epochs")
        cfg = TrainConfig(**{**saved, "epochs": epochs, "resume": cfg.resume})
    cfg.epochs = cfg.epochs or DEFAULT_EPOCHS
    cfg.hyp = check_hyp(cfg.hyp)  # all of YOLOv5's keys, kept in the checkpoint's config
    if cfg.rect and cfg.image_weights:
        raise FastloadError("--rect keeps fixed batches; --image-weights draws images one by one: choose one")
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    if cfg.quad and segment_arch(cfg.model):  # as YOLOv5's segment/train.py, which has no --quad
        raise FastloadError("--quad: a segmentation model's loader makes masks per image; train it without --quad")
    if segment_arch(cfg.model):
        check_mask_ratio(cfg.mask_ratio)
    if cfg.quad and 0 < cfg.batch < 4 * world:
        raise FastloadError(f"--quad makes one image of each 4: --batch {cfg.batch} needs to be at least 4 per process")
    train_store, val_store = run_stores(cfg, rank, progress)  # cfg.data: the store (a dataset packed into it)
    if train_store.meta.get("task") == CLASSIFY or classify_arch(cfg.model):
        options = asdict(cfg) | {"lr0": cfg.hyp["lr0"], "decay": cfg.hyp["weight_decay"]}
        return train_classifier(classify_config(options, given), train_store, val_store, progress)
    cfg.nominal_batch = cfg.nominal_batch or 64
    device = resolve_device(cfg.device)
    cuda = device.type == "cuda"
    if world > 1:  # torchrun: one process per GPU (or CPU processes with gloo), each with its own loader shard
        if cfg.batch % world:
            raise FastloadError(f"--batch {cfg.batch} is the total over {world} processes: make it a multiple of "
                                f"{world}")  # fmt: skip
        if cuda:
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
            torch.cuda.set_device(device)
        torch.distributed.init_process_group("nccl" if cuda else "gloo")
    main = rank == 0
    pretrained = read_weights(cfg.weights) if cfg.weights and checkpoint is None else None
    cfg.model = cfg.model or (pretrained.arch if pretrained else "n")
    if cfg.noautoanchor and checkpoint is None and fitted_anchors(cfg.model):
        raise FastloadError(f"{arch_name(cfg.model)}: `anchors: {cfg.model['anchors']}` asks autoanchor to make the "
                            "anchors from the data; drop --noautoanchor")  # fmt: skip
    layers = max(layer_names(cfg.model)) + 1
    if cfg.freeze > layers:
        raise FastloadError(f"--freeze {cfg.freeze}: {arch_name(cfg.model)} has {layers} layers (0 .. {layers - 1})")
    gs = grid_size(cfg.model)  # YOLOv5's: 32, or 64 for a P6 model
    imgsz = fit_stride(cfg.imgsz, gs, floor=2 * gs)  # YOLOv5's train.py: the top level gets at least a 2x2 grid
    if imgsz != cfg.imgsz:
        if main and progress:
            say(f"--imgsz {cfg.imgsz}: training needs a multiple of the stride {gs}, at least {2 * gs}: using {imgsz}")
        cfg.imgsz = imgsz
    if main and not cfg.resume:  # a new run gets a new folder (exp, exp2, ...); its config records the name
        cfg.name = os.path.basename(new_run_dir(cfg.project, cfg.name, cfg.exist_ok))
    out = os.path.join(cfg.project, cfg.name)
    if main:
        os.makedirs(os.path.join(out, "weights"), exist_ok=True)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)

    if cfg.single_cls:  # YOLOv5's --single-cls: one class, "item"
        train_store, val_store = train_store.single_class(), val_store.single_class()
    # channels-last convolutions: 2.8x the NCHW step on an H100 under AMP, ~1.15x on the CPU (oneDNN)
    model = build_model(cfg.model, nc=len(train_store.names)).to(device, memory_format=torch.channels_last)
    torch.backends.cudnn.benchmark = cuda
    if main and progress:  # as YOLOv5: what was built (a yaml's layers in its table)
        say("\n".join(describe(model, cfg.model)[1]))
    anchors, started_from = None, None
    if checkpoint is not None:  # a resumed run keeps its checkpoint's weights and anchors
        model.load_state_dict(checkpoint["model"])
    else:
        if pretrained is not None:  # as YOLOv5's --weights: what fits is loaded, a new class count's head is not
            done, total = transfer(model, pretrained.state, pretrained.arch)
            started_from = {"weights": cfg.weights, "source": pretrained.source, "transferred": done, "total": total}
            if main and progress:
                source = f"{pretrained.source}, {arch_name(pretrained.arch)}"
                say(f"transferred {done}/{total} tensors from {cfg.weights} ({source})")
        if not cfg.noautoanchor:
            refit = fits_anchors(cfg.hyp) or fitted_anchors(cfg.model)  # `anchors: 3`: placeholders to replace
            anchors = check_anchors(model.detect, train_store.sizes, train_store.labels, cfg.imgsz, cfg.seed,
                                    thr=cfg.hyp["anchor_t"], refit=refit)  # fmt: skip
        if main and progress and anchors is not None:
            change = "replaced by k-means + evolution" if anchors["changed"] else "kept"
            say(f"autoanchor: best possible recall {anchors['bpr']:.3f} -> {anchors['bpr_after']:.3f}, {change}")
    if main and checkpoint is None and not cfg.noplots:  # as YOLOv5: the training boxes at a glance
        plot_labels(train_store.boxes, train_store.names, os.path.join(out, "labels.jpg"))
    if cfg.freeze:  # after the weights are in; a resumed run freezes the same layers
        frozen = freeze(model, cfg.freeze)
        if main and progress:
            say(f"froze YOLOv5's layers 0-{cfg.freeze - 1}: {frozen:,} parameters")
    if cfg.batch <= 0:  # with --quad the model takes a quarter of the images at twice the side
        per_process, message = autobatch(model, cfg.imgsz * (1 + cfg.quad), cfg.multi_scale)
        cfg.batch = per_process * (4 if cfg.quad and cuda else 1) * world
        if main:
            say(message)
    if main:  # as YOLOv5's: the run's settings beside its results (`--hyp .../hyp.yaml` repeats them)
        write_atomic(os.path.join(out, "hyp.yaml"), hyp_yaml(cfg.hyp))
        write_atomic(os.path.join(out, "opt.yaml"), yaml.safe_dump(asdict(cfg), sort_keys=False).encode())
    hyp, loss_hyp, augment = split_hyp(cfg.hyp, cfg.nominal_batch, cfg.label_smoothing)
    masks = cfg.mask_ratio if is_segment(model) else 0  # a segmentation model: the loaders make its target masks
    if main and progress and not masks and (cfg.no_overlap or cfg.mask_ratio != MASK_RATIO):
        say(f"warning: model {arch_name(cfg.model)} is a detection model: --mask-ratio and --no-overlap change nothing")
    overlap = not cfg.no_overlap  # YOLOv5's overlap masks (its default), or each object's whole mask
    loss_args = (model.detect, cfg.imgsz, loss_hyp)
    compute_loss = SegmentLoss(*loss_args, overlap=overlap) if masks else ComputeLoss(*loss_args)
    opt = build_optimizer(model, cfg.optimizer, cfg.batch, hyp)
    augment = augment if cfg.augment else NO_AUGMENT
    loader = TrainLoader(
        train_store, cfg.imgsz, cfg.batch // world, hyp=augment, seed=cfg.seed, rank=rank, world=world,
        multi_scale=cfg.multi_scale, rect=cfg.rect, stride=gs, device=str(device), workers=cfg.workers,
        # on CUDA the loss's target assignment is made ahead on the CPU (prefetch thread): it spares the step six
        # waits for the GPU. The CPU has no wait to spare, and the thread's work beside the step's slowed the demo
        # run on 2 cores by 9% (22.0 vs 24.3 img/s, means of 4 and 6 alternated 3-epoch runs)
        prepare_targets=compute_loss.assigner() if cuda else None, quad=cfg.quad, mask_ratio=masks, overlap=overlap,
    )  # fmt: skip
    val_loader = None
    if main:
        n = max(1, int(cfg.val_fraction * len(val_store) + 0.5))
        subset = np.sort(np.random.default_rng(cfg.seed).permutation(len(val_store))[:n])
        val_loader = ValLoader(val_store, cfg.imgsz, cfg.batch * 2, stride=gs, device=str(device),
                               workers=cfg.workers, records=subset, mask_ratio=masks, overlap=overlap)  # fmt: skip
    whole = None  # with --val-whole: the val split's pictures, validated by their tiles
    if main and cfg.val_whole:
        loading = partial(ValLoader, imgsz=cfg.imgsz, batch=cfg.batch * 2, stride=gs, device=str(device),
                          workers=cfg.workers)  # fmt: skip
        whole = SlicedImages(whole_val_store(cfg, progress), loading, Tiling(cfg.tile, cfg.tile_overlap), False,
                             cfg.workers)  # fmt: skip
    weigh = ImageWeights(train_store) if cfg.image_weights else None
    maps = np.zeros(len(train_store.names))  # per-class mAP@0.5:0.95 of the last validation (YOLOv5's maps)
    forward = model
    if cfg.sync_bn and world > 1 and cuda:  # as YOLOv5: across CUDA ranks only (torch has no CPU SyncBatchNorm)
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)  # the same parameters, in new modules
    elif cfg.sync_bn and main and progress:
        say("--sync-bn: no effect here (it needs torchrun over CUDA devices; torch has no SyncBatchNorm on the CPU)")
    if world > 1:
        forward = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if cuda else None)
    schedule = Schedule(opt, hyp, cfg.epochs, len(loader), cfg.batch, cfg.cosine)
    ema = ModelEMA(model)
    scaler = torch.amp.GradScaler(device.type, enabled=cuda)
    start_epoch, last_step, stop, stopper = 0, -1, False, EarlyStop(cfg.patience)
    if checkpoint is not None:
        ema.ema.load_state_dict(checkpoint["ema"])
        ema.updates = checkpoint["ema_updates"]
        opt.load_state_dict(checkpoint["optimizer"])
        scaler.load_state_dict(checkpoint["scaler"])
        start_epoch, last_step = checkpoint["epoch"] + 1, checkpoint["last_step"]
        stopper.best, stopper.best_epoch = checkpoint["best_fitness"], checkpoint.get("best_epoch", checkpoint["epoch"])
        set_rng_state(checkpoint["rng"])
        maps = np.asarray(checkpoint.get("maps", maps))
    log = RunLog(out, checkpoint is not None, cfg.tensorboard, plot=not cfg.noplots, masks=masks > 0) if main else None

    metrics, epoch, totals, startup = {}, start_epoch - 1, np.zeros(3), 0.0  # images, data wait, compute seconds
    drawing = []  # threads drawing YOLOv5's train_batch0-2.jpg: a new run's first batches, as the model gets them
    clock = StepClock(device)  # CUDA: the GPU's idle time between steps; CPU: the time blocked taking batches
    guard, skipped = LossGuard(device, world, 4 if masks else 3), 0  # non-finite steps: skipped; a diverged run stops
    terms = ("box", "seg", "obj", "cls") if masks else ("box", "obj", "cls")
    with noting_kept_checkpoint(os.path.join(out, "weights", "last.pt")):  # a damaged record or Ctrl-C stops the run
        for epoch in range(start_epoch, cfg.epochs):
            model.train()
            if weigh is not None:  # YOLOv5's --image-weights, from the last validation's per-class mAPs (rank 0's)
                loader.set_weights(weigh(from_rank0(maps, world, device)))
            loader.set_epoch(epoch)
            guard.start()  # the losses' running mean, kept on the device: no sync per step
            images = 0
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
                if main and step < 3 and not cfg.noplots:
                    path, titles = (
                        os.path.join(out, f"train_batch{step}.jpg"),
                        map(train_store.path_of, batch.indices[:16]),
                    )
                    tinted = None if batch.masks is None else batch.overlap_masks()[:16]
                    drawing.append(save_batch_in_thread(batch.images[:16], batch.targets, train_store.names, path,
                                                        [*titles], tinted))  # fmt: skip
                accumulate = schedule.step(epoch, step)
                x = (batch.images.float() / 255).contiguous(memory_format=torch.channels_last)
                with torch.autocast(device.type, enabled=cuda):
                    loss, items = compute_loss(forward(x), batch.targets, batch.assigned, masks=batch.masks)
                loss = loss * 4 if cfg.quad else loss  # as YOLOv5: the loss scales with the images the model sees (B/4)
                guard.add(loss, items)
                scaler.scale(loss * world).backward()  # DDP averages gradients over ranks; YOLOv5 scales the loss back
                if step - last_step >= accumulate:
                    scaler.unscale_(opt)
                    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=10.0)
                    if guard.may_step(norm):
                        scaler.step(opt)
                    scaler.update()
                    opt.zero_grad(set_to_none=True)
                    ema.update(model)
                    last_step = step
                clock.step_done()
                images += len(x) * (4 if cfg.quad else 1)  # the loader's images
                if not bar.disable and (
                    k % 10 == 0 or k == len(loader) - 1
                ):  # a read of the losses syncs: no bar, no read
                    losses = {name: f"{v:.3f}" for name, v in zip(terms, guard.mean().tolist(), strict=True)}
                    busy = clock.elapsed()
                    bar.set_postfix(**losses, img_s=f"{images / busy:.0f}", wait=f"{clock.wait / busy:.0%}")
                bar.update()
            wait, compute = clock.stop()
            bar.close()
            totals += (images, wait, compute)
            startup += clock.startup
            skipped_now = guard.end(epoch, model, ema.ema)  # Diverged: stop before last.pt is written over
            skipped += skipped_now
            if skipped_now and main and progress:
                say(f"epoch {epoch + 1}: {skipped_now} of {guard.steps * world} steps had a non-finite loss (NaN or "
                    f"inf) and were skipped; if this goes on, {ADVICE}")  # fmt: skip
            if not main:
                if cfg.patience and agree_to_stop(False, world, device):
                    break
                continue
            last = epoch == cfg.epochs - 1
            val_s, improved = 0.0, False
            # validated every val_interval epochs, the last, and when the patience runs out unless this epoch is better
            if last or (not cfg.noval and (epoch + 1) % cfg.val_interval == 0) or stopper.due(epoch):
                plot = os.path.join(out, "val_batch0") if last and not cfg.noplots else ""
                curves = os.path.join(out, "") if plot else ""
                if whole is not None:  # no loss, no batch pictures: the tiles' run scored on the pictures
                    merging = Merging(cfg.tile_merge, cfg.tile_metric, cfg.tile_threshold)
                    metrics = sliced_validate(ema.ema, whole, 0.001, 0.6, 300, curves=curves, merging=merging)
                else:
                    metrics = validate(ema.ema, val_loader, val_store, plot=plot, compute_loss=compute_loss,
                                       curves=curves)  # fmt: skip
                val_s = metrics["seconds"]
                improved = stopper.update(epoch, fitness(metrics))
                maps = class_maps(metrics, len(train_store.names))
                stop = stopper.due(epoch) and not last
            t0 = time.perf_counter()
            writes = [("last.pt", False)] * (not cfg.nosave or last or stop) + [("best.pt", True)] * improved
            if cfg.save_period and epoch % cfg.save_period == 0:  # YOLOv5's names: epoch0.pt, epochN.pt, ...
                writes.append((f"epoch{epoch}.pt", False))
            state = writes and {  # built only when written: --nosave's epochs spend nothing here
                "model": model.state_dict(), "ema": ema.ema.state_dict(), "ema_updates": ema.updates,
                "optimizer": opt.state_dict(), "scaler": scaler.state_dict(), "epoch": epoch,
                "best_fitness": stopper.best, "best_epoch": stopper.best_epoch, "last_step": last_step,
                "config": asdict(cfg), "rng": rng_state(), "names": train_store.names, "maps": maps.tolist(),
                "metrics": {k: v for k, v in metrics.items() if isinstance(v, float)},
            }  # fmt: skip
            for name, stripped in writes:  # best.pt: the EMA weights only, as YOLOv5's stripped best.pt
                save_atomic(weights_only(state) if stripped else state, os.path.join(out, "weights", name))
            checkpoint_s = time.perf_counter() - t0
            losses = dict(zip(terms, guard.mean().cpu().tolist(), strict=True))
            val_losses = dict(zip(terms, metrics.get("loss", (0.0,) * len(terms)), strict=True))
            log.epoch({"epoch": epoch, **{f"{k}_loss": v for k, v in losses.items()},
                       **{k: metrics.get(k, 0.0) for k in ("precision", "recall", "map50", "map50_95") + MASK_KEYS},
                       **{f"val_{k}_loss": v for k, v in val_losses.items()},
                       "lr0": opt.param_groups[0]["lr"], "images_per_sec": images / max(wait + compute, 1e-9),
                       "data_wait_s": wait, "compute_s": compute, "val_s": val_s,
                       "checkpoint_s": checkpoint_s, "skipped_steps": skipped_now})  # fmt: skip
            if cfg.patience and agree_to_stop(stop, world, device):
                if progress:
                    say(
                        f"stopped early: no better fitness in the {cfg.patience} epochs after epoch "
                        f"{stopper.best_epoch} (--patience {cfg.patience}); best.pt holds that epoch's weights"
                    )
                break
    if main and progress and "classes" in metrics and len(train_store.names) < 50:  # as YOLOv5 ends a run
        for line in class_table(class_rows(metrics, train_store.names)):
            say(line)
    for thread in drawing:
        thread.join()
    if log is not None:
        log.close()
    if world > 1:
        torch.distributed.destroy_process_group()
    return {
        "rank": rank,
        "model": arch_name(cfg.model),  # a size (n .. x6) or a model yaml's file name
        "map50": metrics.get("map50", 0.0),
        "map50_95": metrics.get("map50_95", 0.0),
        "precision": metrics.get("precision", 0.0),
        "recall": metrics.get("recall", 0.0),
        **({k: metrics.get(k, 0.0) for k in MASK_KEYS} if masks else {}),  # a segmentation model's mask metrics
        "epochs": epoch + 1,
        "val_images": metrics.get("images", 0),
        "images_per_sec": float(totals[0] / max(totals[1] + totals[2], 1e-9)),
        "data_wait_fraction": float(totals[1] / max(totals[1] + totals[2], 1e-9)),
        "loader_startup_s": startup,  # the first batch of the run: worker processes, pipeline build
        "weights": os.path.join(out, "weights", "best.pt"),
        "last": os.path.join(out, "weights", "last.pt"),
        "results": os.path.join(out, "results.csv"),
        "device": str(device),
        "autoanchor": anchors,
        "pretrained": started_from,  # --weights: what was transferred (None: from scratch, or resumed)
        "stopped_early": stop,  # --patience epochs passed without a better fitness
        "skipped_steps": skipped,  # steps with a non-finite loss, left without an optimiser step
        "best_epoch": stopper.best_epoch,  # best.pt's (0-based, as results.csv)
    }


def saved_config(config: dict) -> dict:
    """A checkpoint's config with today's fields: older checkpoints kept lr0 and warmup_epochs apart from hyp."""
    moved = {k: v for k, v in config.items() if k in ("lr0", "warmup_epochs")}
    kept = {k: v for k, v in config.items() if k not in moved}
    return {**kept, "hyp": {**kept.get("hyp", {}), **moved}}


def config_from(**overrides) -> TrainConfig:
    names = {f.name for f in fields(TrainConfig)}
    return TrainConfig(**{k: v for k, v in overrides.items() if k in names and v is not None})


if __name__ == "__main__":
    print(train(TrainConfig()))
