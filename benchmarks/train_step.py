"""The YOLOv5s training step on the GPU (640, batch 64, AMP, SGD, EMA, gradient clipping), as fastload's trainer
runs it: compute alone on a fixed batch with the fused kernels on and off (and the nearest-upsample share from the
profiler), then end to end fed by fastload's loader (16 and 2 workers) and by YOLOv5's `create_dataloader`
(16 workers): images/sec and the fraction of the step spent waiting for data.

    python benchmarks/train_step.py --store runs/demo/demo.lmdb --json
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from yolo import kernels  # noqa: E402
from yolo.ema import ModelEMA  # noqa: E402
from yolo.loss import ComputeLoss  # noqa: E402
from yolo.model import YOLOv5  # noqa: E402
from yolo.optim import OptimHyp, build_optimizer  # noqa: E402
from yolo.stepclock import StepClock  # noqa: E402


class Trainer:
    """model + loss + SGD + GradScaler + EMA: one `step(images uint8, targets)` as YOLOv5's train.py does."""

    def __init__(
        self, nc: int, imgsz: int, batch: int, size: str = "s", channels_last: bool = False, fused_opt: bool = True
    ) -> None:
        torch.manual_seed(0)
        self.model = YOLOv5(size, nc=nc).cuda().train()
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.model.to(memory_format=self.memory_format)
        self.loss = ComputeLoss(self.model.detect, imgsz)
        self.opt = build_optimizer(self.model, "SGD", batch, OptimHyp(), fused=fused_opt)
        self.scaler = torch.amp.GradScaler("cuda")
        self.ema = ModelEMA(self.model)

    def step(self, images: torch.Tensor, targets: torch.Tensor, assigned: list | None = None) -> None:
        x = (images.float() / 255).contiguous(memory_format=self.memory_format)
        with torch.autocast("cuda", dtype=torch.float16):
            loss, _ = self.loss(self.model(x), targets, assigned)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.opt)
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm=10.0)
        self.scaler.step(self.opt)
        self.scaler.update()
        self.opt.zero_grad(set_to_none=True)
        self.ema.update(self.model)


def fixed_batch(store: str | None, imgsz: int, batch: int):
    if store:
        from fastload.loader.train_loader import TrainLoader
        from fastload.store import open_store

        b = next(iter(TrainLoader(open_store(store, "train"), imgsz, batch, device="cuda", workers=4)))
        return b.images, b.targets
    g = torch.Generator().manual_seed(0)
    m = batch * 8
    wh = torch.rand(m, 2, generator=g) * 0.3 + 0.02
    xy = torch.rand(m, 2, generator=g) * (1 - wh) + wh / 2
    t = torch.cat([(torch.arange(m) // 8)[:, None], torch.randint(0, 3, (m, 1), generator=g), xy, wh], 1)
    return torch.randint(0, 255, (batch, 3, imgsz, imgsz), dtype=torch.uint8).cuda(), t.float().cuda()


def compute_only(nc: int, images, targets, steps: int, rounds: int = 2) -> dict:
    """Step time with the fused kernels off (YOLOv5's CIoU and per-tensor EMA) and on, then also with channels-last
    convolutions and cuDNN's autotuner (YOLOv5's train.py: neither). The configurations take turns for `rounds`
    rounds (a GPU runs later work faster for a while: clocks, caches), each reported as the median over all."""
    configs = (
        ("reference", False, False),
        ("fused", True, False),
        ("reference_channels_last", False, True),
        ("fused_channels_last", True, True),
    )
    times = {name: [] for name, *_ in configs}
    per_round = {name: [] for name, *_ in configs}
    for _ in range(rounds):
        for name, fused, fast in configs:
            kernels.use_fused(fused)
            torch.backends.cudnn.benchmark = fast
            trainer = Trainer(nc, images.shape[-1], images.shape[0], channels_last=fast)
            these = []
            for k in range(steps + 5):
                torch.cuda.synchronize()
                t0 = time.perf_counter()
                trainer.step(images, targets)
                torch.cuda.synchronize()
                if k >= 5:
                    these.append(time.perf_counter() - t0)
            times[name] += these
            per_round[name].append(round(1000 * statistics.median(these), 2))
            del trainer
    kernels.use_fused(True)
    out = {f"{name}_step_ms": round(1000 * statistics.median(t), 2) for name, t in times.items()}
    out["rounds_step_ms"] = per_round
    out["speedup_fused"] = round(out["reference_step_ms"] / out["fused_step_ms"], 3)
    out["speedup_fused_channels_last"] = round(out["reference_step_ms"] / out["fused_channels_last_step_ms"], 3)
    out["speedup_fused_within_channels_last"] = round(
        out["reference_channels_last_step_ms"] / out["fused_channels_last_step_ms"], 3
    )
    out["images_per_sec_fused"] = round(images.shape[0] * 1000 / out["fused_step_ms"], 1)
    return out


def upsample_share(nc: int, images, targets) -> dict:
    """Share of the GPU kernel time in nearest upsampling (forward and backward) over 5 steps."""
    from torch.profiler import ProfilerActivity, profile

    trainer = Trainer(nc, images.shape[-1], images.shape[0])
    for _ in range(3):
        trainer.step(images, targets)
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(5):
            trainer.step(images, targets)
        torch.cuda.synchronize()
    total = up = 0.0
    for ev in prof.key_averages():
        t = getattr(ev, "self_device_time_total", None) or getattr(ev, "self_cuda_time_total", 0.0)
        total += t
        if "upsample" in ev.key.lower():
            up += t
    return {
        "upsample_ms_per_step": round(up / 5000, 3),
        "gpu_ms_per_step": round(total / 5000, 2),
        "upsample_share": round(up / total, 4) if total else None,
    }


def fed(
    nc: int, batches, steps: int, warmup: int, imgsz: int, batch: int, channels_last: bool, sync: bool = False, **kw
) -> dict:
    """Steps fed by a loader, not synchronised (as the trainer runs them; `sync`: waiting for each step as the
    trainer did before 2026-11-23): images/sec over the run, the GPU's idle time between steps
    (`data_wait_fraction`, CUDA events: what fastload train reports) and the host's time blocked taking batches
    (`host_wait_fraction`, which a queued GPU hides). `batches` yields (images, targets, assigned)."""
    torch.backends.cudnn.benchmark = channels_last
    model = Trainer(nc, imgsz, batch, channels_last=channels_last, **kw)
    clock, it = StepClock(torch.device("cuda")), iter(batches)
    for _ in range(warmup):
        imgs, targets, assigned = next(it)
        model.step(imgs.cuda(non_blocking=True), targets.cuda(non_blocking=True), assigned)
    clock.start()
    for _ in range(steps):
        imgs, targets, assigned = next(it)
        clock.batch_ready()
        model.step(imgs.cuda(non_blocking=True), targets.cuda(non_blocking=True), assigned)  # YOLOv5's: copied here
        clock.step_done()
        if sync:
            torch.cuda.synchronize()
    wait, compute = clock.stop()
    total = wait + compute
    return {
        "images_per_sec": round(steps * batch / total, 1),
        "data_wait_fraction": round(wait / total, 4),
        "host_wait_fraction": round(clock.host_wait / total, 4),
        "step_ms_mean": round(1000 * total / steps, 2),
    }


def fastload_batches(loader):
    for epoch in itertools.count():
        loader.set_epoch(epoch)
        for b in loader:
            yield b.images, b.targets, b.assigned


def yolov5_batches(folder: str, imgsz: int, batch: int, workers: int):
    from fastload.bench import yolov5_baseline
    from fastload.loader.augment import Hyp

    for imgs, targets, *_ in yolov5_baseline(folder, imgsz, batch, workers, Hyp(), True):
        yield imgs, targets, None


def run(
    store: str, source_folder: str | None = None, steps: int = 80, imgsz: int = 640, batch: int = 64, rounds: int = 2
) -> dict:
    from fastload.loader.train_loader import TrainLoader
    from fastload.store import open_store

    nc = len(open_store(store, "train").names)
    images, targets = fixed_batch(store, imgsz, batch)
    out = {"model": "yolov5s", "imgsz": imgsz, "batch": batch, "amp": "float16", "nc": nc}
    out["compute_only"] = compute_only(nc, images, targets, 30, rounds)
    out["profile"] = upsample_share(nc, images, targets)
    # fastload's trainer: fused kernels, channels-last, cuDNN autotuner, targets assigned in the loader's prefetch
    # thread; with 16 and 2 source workers, with 16 and the assignment in the step (on the GPU, waiting for it: YOLOv5's
    # step, and the trainer's until c66e52b), with 16 and Python's thread switch interval cut from 5 to 0.5 ms (does the
    # prefetch thread's hold on the GIL show in the wait?), and with 16 synchronising every step (the trainer's loop
    # before 2026-11-23); the variants take turns for `rounds` rounds, and each reports the mean of its rounds
    variants = (("w16", 16, None, False, True), ("w16_assign_in_step", 16, None, False, False),
                ("w16_synced", 16, None, True, True), ("w2", 2, None, False, True),
                ("w16_switch0.5ms", 16, 0.0005, False, True))  # fmt: skip
    runs = {name: [] for name, *_ in variants}
    assign = ComputeLoss(YOLOv5("s", nc=nc).detect, imgsz).assigner()  # the COCO anchors every Trainer starts with
    for _ in range(rounds):
        for name, workers, switch, sync, ahead in variants:
            default = sys.getswitchinterval()
            sys.setswitchinterval(switch or default)
            loader = TrainLoader(open_store(store, "train"), imgsz, batch, device="cuda", workers=workers,
                                 prepare_targets=assign if ahead else None)  # fmt: skip
            batches = fastload_batches(loader)
            r = fed(nc, batches, steps, 8, imgsz, batch, channels_last=True, sync=sync)
            r["loader_stages"] = loader.times.summary()  # DALI's run, hand-over (prefetch thread)
            runs[name].append(r)
            batches.close()  # stops the prefetch thread and lets the pipeline and its workers go before the next run
            sys.setswitchinterval(default)
            print(f"train step fastload {name}: {r}", flush=True)
    for name, rs in runs.items():
        out[f"fastload_{name}"] = {
            **{k: round(statistics.mean(r[k] for r in rs), 4) for k in rs[0] if k != "loader_stages"},
            "rounds_images_per_sec": [r["images_per_sec"] for r in rs],
            "loader_stages": rs[-1]["loader_stages"],
        }
    if source_folder:
        try:  # YOLOv5's train.py path: its loader, the reference kernels (YOLOv5's loss and EMA), NCHW, foreach SGD
            kernels.use_fused(False)
            batches = yolov5_batches(source_folder, imgsz, batch, 16)
            out["yolov5_loader_w16"] = fed(nc, batches, steps, 8, imgsz, batch, channels_last=False, fused_opt=False)
            kernels.use_fused(True)
            out["speedup_vs_yolov5_loader"] = round(
                out["fastload_w16"]["images_per_sec"] / out["yolov5_loader_w16"]["images_per_sec"], 3
            )
        except ImportError as e:
            out["yolov5_loader_w16"] = {"error": str(e)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--store", required=True)
    ap.add_argument("--yolov5-folder", help="the store's source images/train folder, to feed YOLOv5's loader")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        sys.exit("train_step.py measures the GPU step: no GPU here")
    result = run(args.store, args.yolov5_folder, args.steps)
    print(json.dumps(result) if args.json else json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
