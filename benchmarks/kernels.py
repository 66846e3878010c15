"""Kernel benchmarks (CUDA): per kernel the reference, torch.compile of the reference, and the fused Triton
version, with speedups and the max error against the float64 reference, at YOLOv5s's real sizes: the CIoU and the
whole box-loss term over the targets ComputeLoss matches per layer at batch 64, 640 (from a real fastload batch when
a store is given), and the EMA over the YOLOv5s state dict.

    python benchmarks/kernels.py [--store runs/demo/demo.lmdb] --json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from yolo.kernels.box_loss import box_loss_fused, box_loss_reference, decode  # noqa: E402
from yolo.kernels.ciou import ciou_fused, ciou_reference  # noqa: E402
from yolo.kernels.ema import EmaTriton, ema_foreach, ema_reference  # noqa: E402
from yolo.loss import ComputeLoss  # noqa: E402
from yolo.model import YOLOv5  # noqa: E402


def cuda_ms(fn, repeat: int = 50, warmup: int = 5) -> float:
    """Median milliseconds of fn() between CUDA events."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeat):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def matched_boxes(store: str | None, nc: int = 80, batch: int = 64, imgsz: int = 640):
    """Per detection layer, the (prediction, target) box pairs ComputeLoss scores for one batch."""
    model = YOLOv5("s", nc=nc).cuda()
    loss = ComputeLoss(model.detect, imgsz)
    if store:
        from fastload.loader.train_loader import TrainLoader
        from fastload.store import open_store

        loader = TrainLoader(open_store(store, "train"), imgsz, batch, device="cuda", workers=4)
        targets = next(iter(loader)).targets
        source = "first augmented batch of " + os.path.basename(store)
    else:  # ~8 boxes per image of COCO-like sizes
        g = torch.Generator().manual_seed(0)
        m = batch * 8
        wh = torch.exp(torch.randn(m, 2, generator=g) * 0.9 - 2.3).clamp(0.005, 1)
        xy = torch.rand(m, 2, generator=g) * (1 - wh) + wh / 2
        img = torch.arange(m) // 8
        targets = torch.cat([img[:, None], torch.randint(0, nc, (m, 1), generator=g), xy, wh], 1).float().cuda()
        source = "synthetic, 8 boxes per image"
    shapes = [(batch, 3, imgsz // s, imgsz // s, nc + 5) for s in (8, 16, 32)]
    preds = [torch.zeros(s, device="cuda") for s in shapes]
    layers = []
    g = torch.Generator(device="cuda").manual_seed(1)
    for b, _, _, _, tbox, _, anchors, _, _ in loss.build_targets(preds, targets):
        raw = torch.randn(b.shape[0], 4, device="cuda", generator=g) * 1.5  # the matched cells' raw x, y, w, h
        layers.append((raw, anchors.contiguous(), tbox.contiguous()))
    return layers, source, int(targets.shape[0])


def ciou_bench(layers: list, source: str, nt: int) -> dict:
    pairs = [(decode(raw, anchors), tbox) for raw, anchors, tbox in layers]
    n_total = sum(p.shape[0] for p, _ in pairs)
    compiled = torch.compile(ciou_reference)

    def step(fn, dtype=torch.float32):
        boxes = [(p.to(dtype).requires_grad_(), t.to(dtype)) for p, t in pairs]

        def run():
            for p, t in boxes:  # one call per layer, as the loss does
                out = fn(p, t)
                torch.autograd.grad(out, p, torch.ones_like(out))

        return run

    t0 = time.perf_counter()
    step(compiled)()
    compile_s = time.perf_counter() - t0
    ref_ms, compiled_ms, fused_ms = cuda_ms(step(ciou_reference)), cuda_ms(step(compiled)), cuda_ms(step(ciou_fused))
    fwd_ref = cuda_ms(lambda: [ciou_reference(p, t) for p, t in pairs])
    fwd_fused = cuda_ms(lambda: [ciou_fused(p, t) for p, t in pairs])
    err_v = err_g = floor_g = 0.0
    for p, t in pairs:  # max error against the float64 reference, relative to the largest; beside it the float32
        # reference's own (torch's autograd, what YOLOv5 computes): predictions with tiny heights (very negative raw
        # outputs) make some gradients ill-conditioned in float32 whatever computes them
        a, b, c = p.double().requires_grad_(), p.clone().requires_grad_(), p.clone().requires_grad_()
        want, got, ref32 = ciou_reference(a, t.double()), ciou_fused(b, t), ciou_reference(c, t)
        (ga,) = torch.autograd.grad(want.sum(), a)
        (gb,) = torch.autograd.grad(got.sum(), b)
        (gc,) = torch.autograd.grad(ref32.sum(), c)
        err_v = max(err_v, float((got.double() - want).abs().max() / want.abs().max()))
        err_g = max(err_g, float((gb.double() - ga).abs().max() / ga.abs().max()))
        floor_g = max(floor_g, float((gc.double() - ga).abs().max() / ga.abs().max()))
    return {
        "targets": nt,
        "pairs_per_layer": [p.shape[0] for p, _ in pairs],
        "pairs": n_total,
        "source": source,
        "fwd_bwd_ms": {"reference": round(ref_ms, 4), "compiled": round(compiled_ms, 4), "fused": round(fused_ms, 4)},
        "fwd_ms": {"reference": round(fwd_ref, 4), "fused": round(fwd_fused, 4)},
        "speedup_fwd_bwd_vs_reference": round(ref_ms / fused_ms, 2),
        "speedup_fwd_bwd_vs_compiled": round(compiled_ms / fused_ms, 2),
        "compile_s": round(compile_s, 1),
        "max_rel_error_value": err_v,
        "max_rel_error_grad": err_g,
        "max_rel_error_grad_float32_reference": floor_g,
    }


def box_loss_before(p: torch.Tensor, anchors: torch.Tensor, tbox: torch.Tensor):
    """The box-loss term as the loss computed it before box_loss.py: decode and mean in torch, the CIoU fused."""
    iou = ciou_fused(decode(p, anchors), tbox)
    return (1.0 - iou).mean(), iou.detach().clamp(0)


def box_loss_bench(layers: list) -> dict:
    """One training step's box-loss terms (forward + backward, one call per layer) under AMP, the raw outputs in
    float16 as the model gives them: YOLOv5's lines, torch.compile of them, the CIoU alone fused, all of it fused."""
    compiled = torch.compile(box_loss_reference)

    def step(fn):
        inputs = [(raw.half().requires_grad_(), anchors, tbox) for raw, anchors, tbox in layers]

        def run():
            with torch.autocast("cuda"):
                for p, anchors, tbox in inputs:
                    loss, _ = fn(p, anchors, tbox)
                    torch.autograd.grad(loss, p)

        return run

    t0 = time.perf_counter()
    step(compiled)()
    compile_s = time.perf_counter() - t0
    names = {"reference": box_loss_reference, "compiled": compiled, "ciou_fused_only": box_loss_before,
             "fused": box_loss_fused}  # fmt: skip
    times = {name: cuda_ms(step(fn)) for name, fn in names.items()}
    err = {"fused": [0.0, 0.0], "reference_amp": [0.0, 0.0]}  # (loss, grad) against float64 on the same inputs
    for raw, anchors, tbox in layers:
        half = raw.half()
        a = half.double().requires_grad_()
        want, _ = box_loss_reference(a, anchors.double(), tbox.double())
        (ga,) = torch.autograd.grad(want, a)
        want = want.detach()
        for name, fn in (("fused", box_loss_fused), ("reference_amp", box_loss_reference)):
            b = half.clone().requires_grad_()
            with torch.autocast("cuda"):
                got, _ = fn(b, anchors, tbox)
            (gb,) = torch.autograd.grad(got, b)
            err[name][0] = max(err[name][0], float((got.detach().double() - want).abs() / want.abs()))
            err[name][1] = max(err[name][1], float((gb.double() - ga).abs().max() / ga.abs().max()))
    return {
        "fwd_bwd_ms": {k: round(v, 4) for k, v in times.items()},
        "speedup_vs_reference": round(times["reference"] / times["fused"], 2),
        "speedup_vs_ciou_fused_only": round(times["ciou_fused_only"] / times["fused"], 2),
        "compile_s": round(compile_s, 1),
        "max_rel_error_loss": err["fused"][0],
        "max_rel_error_grad": err["fused"][1],  # float32 inside; the gradient is stored in float16 as AMP's
        "max_rel_error_grad_reference_under_amp": err["reference_amp"][1],  # YOLOv5's: the decode in float16
    }


def ema_bench() -> dict:
    torch.manual_seed(0)
    model = YOLOv5("s", nc=80).cuda()
    live = [t for t in model.state_dict().values() if t.dtype.is_floating_point]
    d = 0.9999 * (1 - math.exp(-1000 / 2000))

    def fresh():
        return [t.detach().clone() for t in live]

    ema_ref, ema_each, ema_tri, ema_cmp = fresh(), fresh(), fresh(), fresh()
    triton_update = EmaTriton(ema_tri, live)
    compiled = torch.compile(ema_reference)
    t0 = time.perf_counter()
    compiled(ema_cmp, live, d)
    compile_s = time.perf_counter() - t0
    times = {
        "per_tensor_loop": cuda_ms(lambda: ema_reference(ema_ref, live, d)),
        "compiled_loop": cuda_ms(lambda: compiled(ema_cmp, live, d)),
        "foreach_lerp": cuda_ms(lambda: ema_foreach(ema_each, live, d)),
        "triton_multi_tensor": cuda_ms(lambda: triton_update(d)),
    }
    # error after the same number of updates from the same start
    a, b = fresh(), fresh()
    upd = EmaTriton(b, live)
    for _ in range(10):
        ema_reference(a, live, d)
        upd(d)
    err = max(float(((x - y).abs() / y.abs().clamp_min(1e-12)).max()) for x, y in zip(b, a, strict=True) if y.numel())
    best = min(("foreach_lerp", "triton_multi_tensor"), key=times.get)
    return {
        "tensors": len(live),
        "elements": sum(t.numel() for t in live),
        "update_ms": {k: round(v, 4) for k, v in times.items()},
        "speedup_triton_vs_loop": round(times["per_tensor_loop"] / times["triton_multi_tensor"], 1),
        "speedup_foreach_vs_loop": round(times["per_tensor_loop"] / times["foreach_lerp"], 1),
        "faster_multi_tensor": best,
        "compile_s": round(compile_s, 1),
        "max_rel_error_triton_vs_loop": err,
    }


def run(store: str | None = None) -> dict:
    layers, source, nt = matched_boxes(store)
    return {
        "device": torch.cuda.get_device_name(0),
        "ciou": ciou_bench(layers, source, nt),
        "box_loss": box_loss_bench(layers),
        "ema": ema_bench(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--store", help="a fastload store: count matched targets on its first augmented batch")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        sys.exit("kernels.py times CUDA kernels: no GPU here (the CPU tests check correctness)")
    result = run(args.store)
    print(json.dumps(result) if args.json else json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
