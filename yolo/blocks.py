"""The rest of YOLOv5's building blocks (models/common.py), for models built from a model yaml (yolo.yaml_model):
YOLOv5 v5's Focus and SPP, YOLOv3's, the ghost, transformer and cross-conv variants of C3, Concat. Each has
YOLOv5's arguments and its parameter names, so YOLOv5's checkpoints of these models load tensor by tensor; the
blocks the built-in models use (Conv, Bottleneck, C3, SPPF) are in yolo.model."""

from __future__ import annotations

import math

import torch
from torch import nn

from yolo.model import C3, Bottleneck, Conv


class DWConv(Conv):
    """Depth-wise convolution: groups = gcd(c1, c2)."""

    def __init__(self, c1: int, c2: int, k=1, s=1, d: int = 1, act: bool | nn.Module = True) -> None:
        super().__init__(c1, c2, k, s, g=math.gcd(c1, c2), d=d, act=act)


class DWConvTranspose2d(nn.ConvTranspose2d):
    def __init__(self, c1: int, c2: int, k=1, s=1, p1=0, p2=0) -> None:
        super().__init__(c1, c2, k, s, p1, p2, groups=math.gcd(c1, c2))


class Focus(nn.Module):
    """YOLOv5 v5's stem: the four pixel phases of each 2x2 cell stacked as channels, then a conv."""

    def __init__(self, c1: int, c2: int, k=1, s=1, p=None, g: int = 1, act: bool | nn.Module = True) -> None:
        super().__init__()
        self.conv = Conv(c1 * 4, c2, k, s, p, g, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat((x[..., ::2, ::2], x[..., 1::2, ::2], x[..., ::2, 1::2], x[..., 1::2, 1::2]), 1))


class SPP(nn.Module):
    """Spatial pyramid pooling: max-pools of 5, 9 and 13 side by side (SPPF chains three 5s to the same end)."""

    def __init__(self, c1: int, c2: int, k=(5, 9, 13)) -> None:
        super().__init__()
        c_ = c1 // 2
        self.cv1, self.cv2 = Conv(c1, c_, 1), Conv(c_ * (len(k) + 1), c2, 1)
        self.m = nn.ModuleList(nn.MaxPool2d(x, 1, x // 2) for x in k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.cv1(x)
        return self.cv2(torch.cat([x] + [m(x) for m in self.m], 1))


class BottleneckCSP(nn.Module):
    """YOLOv5 v4's CSP bottleneck (4 convolutions; C3 replaced it)."""

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = True, g: int = 1, e: float = 0.5) -> None:
        super().__init__()
        c_ = int(c2 * e)
        self.cv1 = Conv(c1, c_, 1)
        self.cv2 = nn.Conv2d(c1, c_, 1, 1, bias=False)
        self.cv3 = nn.Conv2d(c_, c_, 1, 1, bias=False)
        self.cv4 = Conv(2 * c_, c2, 1)
        self.bn = nn.BatchNorm2d(2 * c_)  # of cat(cv3, cv2)
        self.act = nn.SiLU()
        self.m = nn.Sequential(*(Bottleneck(c_, c_, shortcut, g, e=1.0) for _ in range(n)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cv4(self.act(self.bn(torch.cat((self.cv3(self.m(self.cv1(x))), self.cv2(x)), 1))))


class CrossConv(nn.Module):
    """A k x 1 after a 1 x k convolution."""

    def __init__(self, c1: int, c2: int, k=3, s=1, g=1, e=1.0, shortcut=False) -> None:
        super().__init__()
        c_ = int(c2 * e)
        self.cv1, self.cv2 = Conv(c1, c_, (1, k), (1, s)), Conv(c_, c2, (k, 1), (s, 1), g=g)
        self.add = shortcut and c1 == c2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class C3x(C3):
    """C3 with cross convolutions."""

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = True, g: int = 1, e: float = 0.5) -> None:
        super().__init__(c1, c2, n, shortcut, g, e)
        c_ = int(c2 * e)
        self.m = nn.Sequential(*(CrossConv(c_, c_, 3, 1, g, 1.0, shortcut) for _ in range(n)))


class C3SPP(C3):
    def __init__(self, c1: int, c2: int, k=(5, 9, 13), n: int = 1, shortcut=True, g: int = 1, e: float = 0.5):
        super().__init__(c1, c2, n, shortcut, g, e)
        self.m = SPP(int(c2 * e), int(c2 * e), k)


class GhostConv(nn.Module):
    """Half the channels by a conv, the other half by a cheap 5x5 depth-wise conv of those (GhostNet)."""

    def __init__(self, c1: int, c2: int, k=1, s=1, g: int = 1, act: bool | nn.Module = True) -> None:
        super().__init__()
        c_ = c2 // 2
        self.cv1, self.cv2 = Conv(c1, c_, k, s, None, g, act=act), Conv(c_, c_, 5, 1, None, c_, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv1(x)
        return torch.cat((y, self.cv2(y)), 1)


class GhostBottleneck(nn.Module):
    def __init__(self, c1: int, c2: int, k=3, s=1) -> None:
        super().__init__()
        c_ = c2 // 2
        self.conv = nn.Sequential(
            GhostConv(c1, c_, 1, 1),
            DWConv(c_, c_, k, s, act=False) if s == 2 else nn.Identity(),
            GhostConv(c_, c2, 1, 1, act=False),
        )
        self.shortcut = (
            nn.Sequential(DWConv(c1, c1, k, s, act=False), Conv(c1, c2, 1, 1, act=False)) if s == 2 else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) + self.shortcut(x)


class C3Ghost(C3):
    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = True, g: int = 1, e: float = 0.5) -> None:
        super().__init__(c1, c2, n, shortcut, g, e)
        self.m = nn.Sequential(*(GhostBottleneck(int(c2 * e), int(c2 * e)) for _ in range(n)))


class TransformerLayer(nn.Module):
    """Multi-head self-attention and a two-layer MLP, each with a residual (no LayerNorm, as YOLOv5's)."""

    def __init__(self, c: int, num_heads: int) -> None:
        super().__init__()
        self.q, self.k, self.v = (nn.Linear(c, c, bias=False) for _ in range(3))
        self.ma = nn.MultiheadAttention(embed_dim=c, num_heads=num_heads)
        self.fc1, self.fc2 = nn.Linear(c, c, bias=False), nn.Linear(c, c, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.ma(self.q(x), self.k(x), self.v(x))[0] + x
        return self.fc2(self.fc1(x)) + x


class TransformerBlock(nn.Module):
    """The pixels as a sequence, plus a learnt position embedding, through `num_layers` transformer layers."""

    def __init__(self, c1: int, c2: int, num_heads: int, num_layers: int) -> None:
        super().__init__()
        self.conv = Conv(c1, c2) if c1 != c2 else None
        self.linear = nn.Linear(c2, c2)
        self.tr = nn.Sequential(*(TransformerLayer(c2, num_heads) for _ in range(num_layers)))
        self.c2 = c2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.conv is not None:
            x = self.conv(x)
        b, _, h, w = x.shape
        p = x.flatten(2).permute(2, 0, 1)
        return self.tr(p + self.linear(p)).permute(1, 2, 0).reshape(b, self.c2, h, w)


class C3TR(C3):
    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = True, g: int = 1, e: float = 0.5) -> None:
        super().__init__(c1, c2, n, shortcut, g, e)
        self.m = TransformerBlock(int(c2 * e), int(c2 * e), 4, n)


class Regrid(nn.Module):
    """Pixels moved between space and channels by a gain (Contract and Expand undo each other)."""

    def __init__(self, gain: int = 2) -> None:
        super().__init__()
        self.gain = gain


class Contract(Regrid):
    """Space to depth: (b, c, h, w) -> (b, c * gain^2, h / gain, w / gain)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        s = self.gain
        x = x.view(b, c, h // s, s, w // s, s).permute(0, 3, 5, 1, 2, 4).contiguous()
        return x.view(b, c * s * s, h // s, w // s)


class Expand(Regrid):
    """Depth to space: (b, c, h, w) -> (b, c / gain^2, h * gain, w * gain)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        s = self.gain
        x = x.view(b, s, s, c // s**2, h, w).permute(0, 3, 4, 1, 5, 2).contiguous()
        return x.view(b, c // s**2, h * s, w * s)


class Concat(nn.Module):
    def __init__(self, dimension: int = 1) -> None:
        super().__init__()
        self.d = dimension

    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat(xs, self.d)
