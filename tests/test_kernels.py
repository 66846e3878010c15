"""The fused Triton kernels against their PyTorch references: CIoU values and both boxes' gradients in float32
against the float64 reference, on random boxes and the hard cases; the multi-tensor EMA against YOLOv5's per-tensor
loop over a real YOLOv5s state dict. Compiled on a CUDA device when there is one, in Triton's interpreter on CPU."""

import math

import pytest
import torch

from yolo.kernels.ciou import ciou_fused, ciou_reference
from yolo.kernels.ema import EmaTriton, ema_reference
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


COMPILE_FOR_H100 = """
import re
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from yolo.kernels.ciou import BLOCK, COMPILE_OPTIONS, _ciou_bwd, _ciou_fwd
ptr, flags = "*fp32", {"GRAD1": True, "GRAD2": True}
kernels = {
    _ciou_fwd: ({"b1": ptr, "b2": ptr, "out": ptr, "n": "i32", "eps": "fp32", "BLOCK": "constexpr"}, {}),
    _ciou_bwd: ({"b1": ptr, "b2": ptr, "grad": ptr, "g1": ptr, "g2": ptr, "n": "i32", "eps": "fp32",
                      "GRAD1": "constexpr", "GRAD2": "constexpr", "BLOCK": "constexpr"}, flags),
}
for fn, (signature, constexprs) in kernels.items():
    src = ASTSource(fn=fn, signature=signature, constexprs={**constexprs, "BLOCK": BLOCK})
    ptx = triton.compile(src, target=GPUTarget("cuda", 90, 32), options=COMPILE_OPTIONS).asm["ptx"]
    ops = re.findall(r"^\\s*(?:@!?%p\\d+\\s+)?([a-z]+(?:\\.[a-z0-9]+)*\\.f32)\\b", ptx, re.M)
    print(fn.__name__, " ".join(sorted(set(ops))))
"""
ROUNDED = {"add.rn.f32", "sub.rn.f32", "mul.rn.f32", "div.rn.f32"}  # IEEE round-to-nearest, as numpy's float32
EXACT = {"abs.f32", "neg.f32", "min.f32", "max.f32", "selp.f32", "setp.eq.f32", "setp.gt.f32", "setp.lt.f32"}


def test_the_compiled_ciou_computes_as_the_interpreter_does():
    """Compiled for an H100 (sm_90, PTX; no GPU needed) with the launch's options, every float operation of the CIoU
    kernels is IEEE-rounded or exact, the interpreter's arithmetic, so the float64 tests above hold on the GPU: no
    approximate division (Triton's `/` is div.full.f32, which on the H100 flipped ties and touching edges in the
    backward: the hard cases' gradients 0.89 off while the interpreter agreed) and no fused multiply-add."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.run([sys.executable, "-c", COMPILE_FOR_H100], cwd=root, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    ops = {name: set(rest.split()) for name, rest in (line.split(" ", 1) for line in proc.stdout.strip().splitlines())}
    assert set(ops) == {"_ciou_fwd", "_ciou_bwd"}, proc.stdout
    for name, used in ops.items():
        assert "div.rn.f32" in used and used <= ROUNDED | EXACT, f"{name}: {sorted(used - ROUNDED - EXACT)}"
