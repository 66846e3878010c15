"""YOLOv5's optimiser groups, weight-decay scaling, lr schedules and warmup."""

import math

import numpy as np
import pytest
import torch

from yolo.model import YOLOv5
from yolo.optim import OptimHyp, Schedule, build_optimizer, lr_factor


def test_three_groups_cover_every_parameter_with_decay_only_on_weights():
    model = YOLOv5("n", nc=3)
    opt = build_optimizer(model, "SGD", batch=16, hyp=OptimHyp())
    biases, weights, norms = (g["params"] for g in opt.param_groups)
    assert sum(p.numel() for g in opt.param_groups for p in g["params"]) == sum(p.numel() for p in model.parameters())
    assert all(p.dim() == 1 for p in biases + norms) and all(p.dim() == 4 for p in weights)
    assert [g["weight_decay"] for g in opt.param_groups] == [0.0, pytest.approx(5e-4 * 16 * 4 / 64), 0.0]
    assert opt.param_groups[0]["nesterov"] and opt.param_groups[0]["momentum"] == 0.937
    adamw = build_optimizer(model, "AdamW", batch=64, hyp=OptimHyp(lr0=0.001))
    assert adamw.param_groups[1]["weight_decay"] == pytest.approx(5e-4) and adamw.param_groups[0]["betas"][0] == 0.937
    assert isinstance(adamw, torch.optim.AdamW)
    adam = build_optimizer(model, "Adam", batch=64, hyp=OptimHyp(lr0=0.001))  # L2 decay in the gradient, as YOLOv5's
    assert type(adam) is torch.optim.Adam and not adam.param_groups[1].get("decoupled_weight_decay")
    rmsprop = build_optimizer(model, "RMSProp", batch=64, hyp=OptimHyp())
    assert isinstance(rmsprop, torch.optim.RMSprop) and rmsprop.param_groups[0]["momentum"] == 0.937


def test_lr_factor_linear_and_cosine_go_from_1_to_lrf():
    for cosine in (False, True):
        assert lr_factor(0, 100, 0.01, cosine) == pytest.approx(1.0)
        assert lr_factor(100, 100, 0.01, cosine) == pytest.approx(0.01)
    assert lr_factor(50, 100, 0.01) == pytest.approx(0.505)
    assert lr_factor(50, 100, 0.01, cosine=True) == pytest.approx(0.505)
    assert lr_factor(25, 100, 0.01, cosine=True) == pytest.approx(1 - (1 - math.cos(math.pi / 4)) / 2 * 0.99)


def test_warmup_ramps_lr_momentum_and_accumulation():
    model = YOLOv5("n", nc=3)
    hyp = OptimHyp()
    opt = build_optimizer(model, "SGD", batch=16, hyp=hyp)
    schedule = Schedule(opt, hyp, epochs=10, batches_per_epoch=50, batch=16)
    assert schedule.warmup_steps == 150
    assert schedule.step(0, 0) == 1
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.0, 0.0] and opt.param_groups[0]["momentum"] == 0.8
    assert schedule.step(2, 150) == 4  # 64 / 16 at the end of warmup
    assert all(g["lr"] == pytest.approx(0.01 * lr_factor(2, 10, 0.01)) for g in opt.param_groups)
    assert opt.param_groups[1]["momentum"] == pytest.approx(0.937)
    schedule.step(5, 400)  # after warmup an epoch runs at the previous epoch's factor, as YOLOv5's LambdaLR
    assert all(g["lr"] == pytest.approx(0.01 * lr_factor(4, 10, 0.01)) for g in opt.param_groups)


@pytest.mark.parametrize(
    ("epochs", "batches", "warmup_epochs", "cosine"),
    [(12, 20, 3.0, False), (20, 7, 3.0, True), (6, 50, 3.0, False), (4, 40, 0.0, False)],
)
def test_schedule_gives_yolov5s_lr_at_every_step(epochs, batches, warmup_epochs, cosine):
    """YOLOv5's train.py, transcribed: a LambdaLR stepped after each epoch from `last_epoch = start_epoch - 1`, and
    warmup writing lr per step while ni <= nw. Every step of fastload's Schedule gives the same lr in every group:
    warmup ending on an epoch's first step (100 = 5 x 20), mid-epoch with a cosine decay (100 in epoch 14 of 7
    steps), after 3 epochs of 50 steps, and with warmup off (fastload's warmup_epochs=0; YOLOv5 has no such
    setting)."""
    hyp = OptimHyp(warmup_epochs=warmup_epochs)
    models = [torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.BatchNorm2d(4)) for _ in range(2)]
    ours, theirs = (build_optimizer(m, "SGD", batch=16, hyp=hyp) for m in models)
    schedule = Schedule(ours, hyp, epochs=epochs, batches_per_epoch=batches, batch=16, cosine=cosine)
    nw = schedule.warmup_steps
    assert nw == (max(round(warmup_epochs * batches), 100) if warmup_epochs else 0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(theirs, lambda e: lr_factor(e, epochs, hyp.lrf, cosine))
    scheduler.last_epoch = -1  # YOLOv5: start_epoch - 1, "do not move"
    seen = set()
    for epoch in range(epochs):
        for i in range(batches):
            ni = i + batches * epoch
            schedule.step(epoch, ni)
            if ni <= nw:  # YOLOv5's warmup
                for j, x in enumerate(theirs.param_groups):
                    end = x["initial_lr"] * lr_factor(epoch, epochs, hyp.lrf, cosine)
                    x["lr"] = np.interp(ni, [0, nw], [hyp.warmup_bias_lr if j == 0 else 0.0, end])
            got, want = [g["lr"] for g in ours.param_groups], [g["lr"] for g in theirs.param_groups]
            assert got == pytest.approx(want, rel=1e-12), (epoch, i)
            seen.add(round(want[1], 12))
        theirs.step()  # silences LambdaLR's order warning; no gradients, so nothing moves
        scheduler.step()
    assert len(seen) >= epochs - 1  # the lr did change: warmup, then each epoch


def test_unknown_optimizer_is_a_clear_error():
    with pytest.raises(ValueError, match="SGD, Adam, AdamW, RMSProp"):
        build_optimizer(torch.nn.Linear(2, 2), "Lion", 16, OptimHyp())


@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW"])
def test_fused_step_matches_the_foreach_step_and_skips_a_step_with_inf_gradients(name):
    """The fused step (CUDA's default) takes AMP's inf check on the device; from the same gradients it must move
    YOLOv5n's three parameter groups as the foreach step does while warmup changes lr and momentum, and skip a
    step whose gradients overflowed."""
    runs = []
    for fused in (False, True):
        model = YOLOv5("n", nc=3)
        with torch.no_grad():
            for p in model.parameters():  # the same start for both
                p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
        opt = build_optimizer(model, name, batch=16, hyp=OptimHyp(), fused=fused)
        scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8)
        scaler.scale(torch.ones(()))  # the scale is made on first use
        g = torch.Generator().manual_seed(1)
        for step in range(5):
            for group in opt.param_groups:  # as warmup changes them
                group["lr"] = 0.01 * (step + 1)
                group["momentum" if name == "SGD" else "betas"] = (
                    0.8 + 0.03 * step if name == "SGD" else (0.8 + 0.03 * step, 0.999)
                )
            for p in model.parameters():
                p.grad = torch.randn(p.shape, generator=g) * scaler.get_scale()
            if step == 2:  # an overflow: the step is skipped and the scale backs off
                next(model.parameters()).grad[0] = float("inf")
            before = [p.detach().clone() for p in model.parameters()]
            scaler.unscale_(opt)  # as the trainer: unscale, clip, step
            torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=10.0)
            scaler.step(opt)
            scaler.update()
            moved = [not torch.equal(b, p) for b, p in zip(before, model.parameters(), strict=True)]
            assert all(moved) if step != 2 else not any(moved)
        runs.append([p.detach() for p in model.parameters()])
    for a, b in zip(*runs, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
