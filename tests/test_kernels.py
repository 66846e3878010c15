"""The fused Triton kernels against their PyTorch references: CIoU values and both boxes' gradients in float32
against the float64 reference, on random boxes and the hard cases; the multi-tensor EMA against YOLOv5's per-tensor
loop over a real YOLOv5s state dict. Compiled on a CUDA device when there is one, in Triton's interpreter on CPU."""

import math

import pytest
import torch

from yolo import kernels
from yolo.kernels.box_loss import box_loss_fused, box_loss_reference
from yolo.kernels.ciou import ciou_fused, ciou_reference
from yolo.kernels.ema import EmaTriton, ema_reference
from yolo.loss import ComputeLoss
from yolo.model import YOLOv5

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def random_boxes(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * 4
    wh = torch.rand(n, 2, generator=g) * 3 + 0.05
    box1 = torch.cat([xy, wh], 1)
    box2 = torch.cat([xy + torch.randn(n, 2, generator=g) * 0.7, wh * torch.exp(torch.randn(n, 2, generator=g))], 1)
    return box1.to(DEVICE), box2.to(DEVICE)


def hard_boxes() -> tuple[torch.Tensor, torch.Tensor]:
    rows = [
        ((1, 1, 2, 2), (1, 1, 2, 2)),  # identical
        ((0.5, 0.5, 1, 1), (0.5, 0.5, 1, 1)),
        ((0, 0, 1, 1), (5, 5, 1, 1)),  # no overlap
        ((0, 0, 1, 1), (1, 0, 1, 1)),  # touching edges (intersection width exactly 0)
        ((0, 0, 4, 4), (0.5, -0.5, 1, 1)),  # one inside the other
        ((0.5, -0.5, 1, 1), (0, 0, 4, 4)),
        ((0, 0, 0, 1), (0, 0, 1, 1)),  # zero width
        ((0, 0, 1, 1), (0.2, 0, 0, 2)),
        ((0, 0, 1, 1), (0, 0, 2, 0)),  # zero height (reference: atan(inf), no NaN in the value)
        ((0, 0, 300, 0.5), (1, 0, 0.5, 200)),  # very large aspect ratios
        ((0, 0, 1e-3, 500), (0, 0, 500, 1e-3)),
        ((2, 2, 3, 1), (2, 2, 1, 3)),  # same centre, crossing
    ]
    box1 = torch.tensor([r[0] for r in rows], dtype=torch.float32, device=DEVICE)
    box2 = torch.tensor([r[1] for r in rows], dtype=torch.float32, device=DEVICE)
    return box1, box2


def values_and_grads(fn, box1, box2, dtype):
    a = box1.to(dtype).clone().requires_grad_()
    b = box2.to(dtype).clone().requires_grad_()
    out = fn(a, b)
    weights = torch.linspace(-1, 2, len(out), dtype=dtype, device=out.device)  # a non-uniform upstream gradient
    (out * weights).sum().backward()
    return out.detach().double(), a.grad.double(), b.grad.double()


def relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    """Max |got - want| over the largest |want| (per quantity), ignoring where the reference itself is NaN."""
    finite = torch.isfinite(want)
    assert torch.equal(finite, torch.isfinite(got)), "NaN/inf where the reference has none (or the reverse)"
    if not finite.any():
        return 0.0
    return float((got[finite] - want[finite]).abs().max() / want[finite].abs().max().clamp_min(1e-30))


def worst(got: torch.Tensor, want: torch.Tensor, box1: torch.Tensor, box2: torch.Tensor) -> str:
    """The pair where got and want differ most, for the failure message (what a GPU run has to say)."""
    diff = torch.where(torch.isfinite(want), (got - want).abs(), 0).reshape(len(want), -1).amax(1)
    i = int(diff.argmax())
    return f"pair {i}: boxes {box1[i].tolist()} {box2[i].tolist()}, got {got[i].tolist()}, want {want[i].tolist()}"


@pytest.mark.parametrize("case", ["random", "hard"])
def test_fused_ciou_matches_the_float64_reference(case):
    box1, box2 = random_boxes(300, 0) if case == "random" else hard_boxes()
    want = values_and_grads(ciou_reference, box1, box2, torch.float64)
    got = values_and_grads(ciou_fused, box1, box2, torch.float32)
    for name, g, w in zip(("ciou", "grad box1", "grad box2"), got, want, strict=True):
        assert relative_error(g, w) < 1e-6, f"{name}: {worst(g, w, box1, box2)}"
    if case == "hard":
        assert torch.isfinite(got[0]).all()  # values NaN-free at eps, zero widths and heights included
        assert got[0][0] == pytest.approx(1.0, abs=1e-6) and got[0][2] < 0  # identical: 1; apart: negative
        ok = torch.tensor([i != 8 for i in range(len(box1))], device=DEVICE)  # zero height: d atan(w/0) is 0/0 in both
        assert torch.isfinite(got[1][ok]).all() and torch.isfinite(got[2][ok]).all()


def test_fused_ciou_per_element_error_is_small_against_float32_reference():
    box1, box2 = random_boxes(500, 1)
    ref = values_and_grads(ciou_reference, box1, box2, torch.float32)
    got = values_and_grads(ciou_fused, box1, box2, torch.float32)
    for g, w in zip(got, ref, strict=True):
        assert torch.allclose(g, w, rtol=1e-4, atol=1e-5)


def test_fused_ciou_only_computes_the_gradients_asked_for():
    box1, box2 = random_boxes(64, 2)
    a = box1.clone().requires_grad_()
    out = ciou_fused(a, box2)  # targets carry no gradient, as in the loss
    out.sum().backward()
    b = box1.clone().requires_grad_()
    ciou_reference(b, box2).sum().backward()
    assert box2.grad is None and torch.allclose(a.grad, b.grad, rtol=1e-4, atol=1e-5)
    assert ciou_fused(box1[:0], box2[:0]).shape == (0,)


def test_triton_ema_equals_the_per_tensor_loop_on_yolov5s():
    torch.manual_seed(0)
    model = YOLOv5("s", nc=80).to(DEVICE)
    floats = [t for t in model.state_dict().values() if t.dtype.is_floating_point]
    ema_a = [t.detach().clone() for t in floats]
    ema_b = [t.clone() for t in ema_a]
    update = EmaTriton(ema_b, floats)
    for step in range(2):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p) * 0.01)
        d = 0.9999 * (1 - math.exp(-(step + 1) / 2000))
        ema_reference(ema_a, floats, d)
        update(d)
    assert sum(t.numel() for t in ema_b) > 7_000_000
    for a, b in zip(ema_a, ema_b, strict=True):
        assert torch.allclose(a, b, rtol=1e-6, atol=1e-7)


def test_triton_ema_runs_over_channels_last_weights_and_refuses_mixed_layouts():
    torch.manual_seed(1)
    model = YOLOv5("n", nc=3).to(DEVICE, memory_format=torch.channels_last)
    floats = [t for t in model.state_dict().values() if t.dtype.is_floating_point]
    assert any(t.dim() == 4 and not t.is_contiguous() for t in floats)  # really channels-last
    ema_a = [t.detach().clone() for t in floats]  # clone keeps the layout
    ema_b = [t.clone() for t in ema_a]
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    ema_reference(ema_a, floats, 0.9)
    EmaTriton(ema_b, floats)(0.9)
    for a, b in zip(ema_a, ema_b, strict=True):
        assert torch.allclose(a, b, rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="laid out alike"):
        EmaTriton([t.contiguous() for t in ema_a], floats)


def random_outputs(n: int, seed: int):
    """Raw (x, y, w, h) outputs of n matched cells, their anchors (grid cells) and targets around the decoded boxes."""
    g = torch.Generator().manual_seed(seed)
    p = torch.randn(n, 4, generator=g) * 1.5
    anchors = torch.rand(n, 2, generator=g) * 4 + 0.2
    tbox = torch.cat([torch.rand(n, 2, generator=g) * 2 - 0.5, anchors * torch.exp(torch.randn(n, 2, generator=g))], 1)
    return p.to(DEVICE), anchors.to(DEVICE), tbox.to(DEVICE)


def hard_outputs():
    """Raw outputs 0 decode exactly, in any precision, to (0.5, 0.5, anchor w, anchor h): ties are real ties."""
    rows = [  # raw (x, y, w, h), anchor (w, h), target (x, y, w, h)
        ((0, 0, 0, 0), (2, 3), (0.5, 0.5, 2, 3)),  # identical
        ((0, 0, 0, 0), (1, 1), (4.5, 3.5, 1, 1)),  # no overlap
        ((0, 0, 0, 0), (1, 1), (1.5, 0.5, 1, 1)),  # touching edges
        ((0, 0, 0, 0), (4, 4), (0.25, 0.75, 1, 1)),  # target inside the prediction
        ((0, 0, 0, 0), (0.5, 0.5), (0.5, 0.5, 3, 3)),  # prediction inside the target
        ((0, 0, 0, 0), (1, 1), (0.5, 0.5, 0, 1)),  # zero-width target
        ((0, 0, 0, 0), (1, 1), (0.7, 0.5, 1, 0)),  # zero-height target
        ((0, 0, 0, 0), (40, 0.05), (0.5, 0.5, 0.05, 40)),  # very large aspect ratios, crossing
        ((20, -20, 20, -20), (1, 1), (1.5, -0.5, 4, 1e-6)),  # saturated sigmoids (wh -> 4 anchors and ~0)
        ((-9, 9, -9, 9), (2, 2), (-0.4, 1.4, 1e-6, 8)),
        ((0.3, -0.7, 1.1, -2.5), (1.5, 0.8), (0.6, 0.2, 2.0, 0.3)),  # an ordinary one beside them
    ]
    p, anchors, tbox = (torch.tensor([r[k] for r in rows], dtype=torch.float32, device=DEVICE) for k in range(3))
    return p, anchors, tbox


def box_loss_run(fn, p, anchors, tbox, dtype):
    """Loss, objectness target and gradient, with the outputs p in `dtype` (anchors and targets: float32 or 64)."""
    a = p.to(dtype).clone().requires_grad_()
    wide = torch.float64 if dtype == torch.float64 else torch.float32
    loss, iou = fn(a, anchors.to(wide), tbox.to(wide))
    (loss * 3).backward()  # an upstream gradient other than 1
    return loss.detach().double().view(1), iou.double(), a.grad.double()


@pytest.mark.parametrize("case", ["random", "hard"])
def test_fused_box_loss_matches_the_float64_reference(case):
    """The whole box-loss term (decode, CIoU, mean, detached clamped CIoU) and its gradient to the raw outputs; 700
    random pairs span two blocks, so the loss sums partial sums."""
    p, anchors, tbox = random_outputs(700, 3) if case == "random" else hard_outputs()
    want = box_loss_run(box_loss_reference, p, anchors, tbox, torch.float64)
    got = box_loss_run(box_loss_fused, p, anchors, tbox, torch.float32)
    for name, g, w in zip(("loss", "objectness target", "grad"), got, want, strict=True):
        assert relative_error(g, w) < 1e-6, f"{name}: {worst(g, w, p, tbox)}"
    iou = got[1]
    assert (iou >= 0).all() and torch.isfinite(got[2]).all()
    if case == "hard":
        assert iou[0] == pytest.approx(1.0, abs=1e-6) and iou[1] == 0 and iou[3] > 0
        assert got[2][0].abs().max() < 1e-6  # identical boxes: a maximum of the CIoU, no pull in any direction


def test_fused_box_loss_takes_float16_outputs_as_under_amp():
    p, anchors, tbox = random_outputs(200, 4)
    half = p.half()
    loss, iou, grad = box_loss_run(box_loss_fused, half, anchors, tbox, torch.float16)
    want = box_loss_run(box_loss_reference, half, anchors, tbox, torch.float64)  # the same inputs, in float64
    assert box_loss_fused(half, anchors, tbox)[1].dtype == torch.float16  # tobj's dtype under AMP
    assert relative_error(loss, want[0]) < 1e-6  # float32 inside: the inputs were float16, the maths is not
    assert relative_error(iou, want[1]) < 1e-3 and relative_error(grad, want[2]) < 1e-3  # stored as float16
    assert box_loss_fused(half[:0], anchors[:0], tbox[:0])[1].shape == (0,)


def test_the_loss_with_the_fused_kernels_gives_the_references_loss_and_gradients():
    """ComputeLoss with the box loss fused (on CPU: Triton's interpreter) against the reference, through YOLOv5n."""
    torch.manual_seed(0)
    model = YOLOv5("n", nc=3).to(DEVICE)
    x = torch.rand(2, 3, 96, 96, device=DEVICE)
    g = torch.Generator().manual_seed(0)
    wh = torch.rand(10, 2, generator=g) * 0.4 + 0.05
    xy = torch.rand(10, 2, generator=g) * (1 - wh) + wh / 2
    targets = torch.cat([(torch.arange(10) // 5)[:, None], torch.randint(0, 3, (10, 1), generator=g), xy, wh], 1)
    results = []
    tf32 = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False  # on CUDA: TF32 convolutions would round a 1e-7 difference up to ~1e-3
    try:
        for fused in (False, True):
            kernels.use_fused(fused, cpu=True)
            model.zero_grad()
            loss, items = ComputeLoss(model.detect, 96)(model(x), targets.to(DEVICE))
            loss.backward()
            results.append((items, [p.grad.clone() for p in model.parameters()]))
    finally:
        kernels.use_fused(True)
        torch.backends.cudnn.allow_tf32 = tf32
    (items_ref, grads_ref), (items_fused, grads_fused) = results
    assert items_ref[0] > 0 and torch.allclose(items_fused, items_ref, rtol=1e-5, atol=1e-6)
    for a, b in zip(grads_fused, grads_ref, strict=True):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6)


COMPILE_FOR_H100 = """
import re
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from yolo.kernels.box_loss import _box_loss_bwd, _box_loss_fwd
from yolo.kernels.ciou import BLOCK, COMPILE_OPTIONS, _ciou_bwd, _ciou_fwd
f32, flags = "*fp32", {"GRAD1": True, "GRAD2": True}
kernels = [
    (_ciou_fwd, {"b1": f32, "b2": f32, "out": f32, "n": "i32", "eps": "fp32"}, {}),
    (_ciou_bwd, {"b1": f32, "b2": f32, "grad": f32, "g1": f32, "g2": f32, "n": "i32", "eps": "fp32",
                 "GRAD1": "constexpr", "GRAD2": "constexpr"}, flags),
]
for p in ("*fp32", "*fp16"):  # the matched outputs in float32, and in float16 as under AMP
    head = {"p": p, "stride": "i32", "anchors": f32, "tbox": f32}
    tail = {"n": "i32", "inv_n": "fp32", "eps": "fp32"}
    kernels += [(_box_loss_fwd, {**head, "part": f32, "iou_out": p, **tail}, {}),
                (_box_loss_bwd, {**head, "grad": f32, "gp": p, **tail}, {})]
for fn, signature, constexprs in kernels:
    src = ASTSource(fn=fn, signature={**signature, "BLOCK": "constexpr"}, constexprs={**constexprs, "BLOCK": BLOCK})
    ptx = triton.compile(src, target=GPUTarget("cuda", 90, 32), options=COMPILE_OPTIONS).asm["ptx"]
    ops = re.findall(r"^\\s*(?:@!?%p\\d+\\s+)?([a-z][a-z0-9]*(?:\\.[a-z0-9]+)+)\\s", ptx, re.M | re.I)
    floats = {op for op in ops if re.search(r"\\.f(16|32|64)\\b", op)}
    print(fn.__name__, " ".join(sorted(floats)))
"""
ROUNDED = {"add.rn.f32", "sub.rn.f32", "mul.rn.f32", "div.rn.f32", "cvt.rn.f16.f32"}  # IEEE nearest, as numpy's
EXACT = {"abs.f32", "neg.f32", "min.f32", "max.f32", "selp.f32", "cvt.f32.f16", "cvt.rn.f32.s32", "cvt.rzi.s32.f32"}
EXACT |= {f"setp.{c}.{t}" for c in ("eq", "ne", "gt", "ge", "lt", "le") for t in ("f32", "f16")}


def test_the_compiled_kernels_compute_as_the_interpreter_does():
    """Compiled for an H100 (sm_90, PTX; no GPU needed) with the launch's options, every float operation of the CIoU
    and box-loss kernels is IEEE-rounded or exact, the interpreter's arithmetic, so the float64 tests above hold on
    the GPU: no approximate division (Triton's `/` is div.full.f32, which on the H100 flipped ties and touching edges
    in the backward: the hard cases' gradients 0.89 off while the interpreter agreed), no approximate exponential
    (`tl.exp` is ex2.approx.f32) and no fused multiply-add."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.run([sys.executable, "-c", COMPILE_FOR_H100], cwd=root, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [line.split(" ", 1) for line in proc.stdout.strip().splitlines()]
    assert [name for name, _ in lines] == ["_ciou_fwd", "_ciou_bwd"] + ["_box_loss_fwd", "_box_loss_bwd"] * 2
    for name, rest in lines:
        used = set(rest.split())
        assert "div.rn.f32" in used and used <= ROUNDED | EXACT, f"{name}: {sorted(used - ROUNDED - EXACT)}"
