"""The EMA: the multi-tensor update equals YOLOv5's per-tensor loop over a real YOLOv5s state dict; integer
buffers are copied; the decay ramps as YOLOv5's."""

import copy
import math

import torch

from yolo.ema import ModelEMA
from yolo.kernels.ema import ema_foreach, ema_reference
from yolo.model import YOLOv5


def test_foreach_equals_the_per_tensor_loop_on_yolov5s():
    torch.manual_seed(0)
    model = YOLOv5("s", nc=80)
    ema_a = [t.detach().clone() for t in model.state_dict().values() if t.dtype.is_floating_point]
    ema_b = [t.clone() for t in ema_a]
    for step in range(3):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p) * 0.01)
        live = [t for t in model.state_dict().values() if t.dtype.is_floating_point]
        d = 0.9999 * (1 - math.exp(-(step + 1) / 2000))
        ema_reference(ema_a, live, d)
        ema_foreach(ema_b, live, d)
    for a, b in zip(ema_a, ema_b, strict=True):
        assert torch.allclose(a, b, rtol=1e-6, atol=1e-7)


def test_model_ema_tracks_the_model_and_copies_integer_buffers():
    torch.manual_seed(1)
    model = YOLOv5("n", nc=3).train()
    ema = ModelEMA(model, tau=1.0)  # fast ramp so the EMA moves visibly
    reference = copy.deepcopy(model)
    opt = torch.optim.SGD(model.parameters(), 0.01)
    for step in range(1, 4):
        opt.zero_grad()
        model(torch.rand(2, 3, 64, 64))[0].mean().backward()
        opt.step()
        ema.update(model)
        d = ema.decay(step)
        for v, p in zip(reference.state_dict().values(), model.state_dict().values(), strict=True):
            if v.dtype.is_floating_point:
                v.mul_(d).add_((1 - d) * p)
    for (name, v), e in zip(reference.state_dict().items(), ema.ema.state_dict().values(), strict=True):
        if v.dtype.is_floating_point:
            assert torch.allclose(v, e, rtol=1e-5, atol=1e-6), name
    bn = next(m for m in ema.ema.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert bn.num_batches_tracked.item() == 3  # copied from the model, not averaged
    assert ema.updates == 3 and abs(ModelEMA(model).decay(2000) - 0.9999 * (1 - math.exp(-1))) < 1e-12


def test_with_the_kernels_off_the_ema_is_yolov5s_per_tensor_update():
    """FASTLOAD_KERNELS=reference compares with what YOLOv5 runs: the EMA then takes the per-tensor loop, bit for bit
    (the multi-tensor lerp rounds differently)."""
    from yolo import kernels

    torch.manual_seed(2)
    model, results = YOLOv5("n", nc=3), {}
    live = copy.deepcopy(model)
    with torch.no_grad():
        for p in live.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    for fused in (False, True):
        kernels.use_fused(fused)
        try:
            ema = ModelEMA(model, tau=1.0)
            ema.update(live)
            results[fused] = [t.clone() for t in ema.ema.state_dict().values() if t.dtype.is_floating_point]
        finally:
            kernels.use_fused(True)
    want = [t.detach().clone() for t in model.state_dict().values() if t.dtype.is_floating_point]
    moved = [t for t in live.state_dict().values() if t.dtype.is_floating_point]
    ema_reference(want, moved, ModelEMA(model, tau=1.0).decay(1))
    assert all(torch.equal(a, b) for a, b in zip(results[False], want, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(results[True], want, strict=True))  # the lerp: not bit-equal
