"""YOLOv5 v6+ detection model: Conv-BN-SiLU, C3, SPPF, nearest 2x upsample, Detect on P3-P5 with 3 anchors each;
sizes n/s/m/l/x from one definition scaled by depth and width multiples, as YOLOv5's yolov5{n,s,m,l,x}.yaml.

    model = YOLOv5("s", nc=80)      # 7,235,389 parameters; 7,225,885 after fuse(), like YOLOv5s
    preds = model(images)            # training: 3 maps [N, 3, H/s, W/s, 5 + nc]; eval: also [N, A, 5 + nc] decoded
"""

from __future__ import annotations

import math

import torch
from torch import nn

SIZES = {"n": (0.33, 0.25), "s": (0.33, 0.50), "m": (0.67, 0.75), "l": (1.0, 1.0), "x": (1.33, 1.25)}
ANCHORS = (  # COCO anchors (pixels) for P3/8, P4/16, P5/32
    ((10, 13), (16, 30), (33, 23)),
    ((30, 61), (62, 45), (59, 119)),
    ((116, 90), (156, 198), (373, 326)),
)
STRIDES = (8, 16, 32)


def fit_stride(imgsz: int, stride: int = STRIDES[-1], floor: int = 0) -> int:
    """The image size rounded up to the largest stride and at least `floor`, as YOLOv5's check_img_size does."""
    return max(stride, floor, -(-imgsz // stride) * stride)


class Conv(nn.Sequential):
    """Conv2d (no bias) + BatchNorm + SiLU, 'same' padding; `fuse()` folds the BatchNorm into the conv."""

    def __init__(self, c1: int, c2: int, k: int = 1, s: int = 1, p: int | None = None) -> None:
        super().__init__(
            nn.Conv2d(c1, c2, k, s, k // 2 if p is None else p, bias=False),
            nn.BatchNorm2d(c2, eps=1e-3, momentum=0.03),  # YOLOv5's BN settings
            nn.SiLU(inplace=True),
        )

    @torch.no_grad()
    def fuse(self) -> None:
        conv, bn = self[0], self[1]
        if isinstance(bn, nn.Identity):
            return
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, bias=True)
        fused.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))
        fused.bias.copy_(bn.bias - bn.running_mean * scale)
        self[0], self[1] = fused.to(conv.weight.device), nn.Identity()


class Bottleneck(nn.Module):
    def __init__(self, c1: int, c2: int, shortcut: bool = True) -> None:
        super().__init__()
        self.cv1, self.cv2 = Conv(c1, c2, 1), Conv(c2, c2, 3)
        self.add = shortcut and c1 == c2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class C3(nn.Module):
    """CSP bottleneck with 3 convolutions."""

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = True) -> None:
        super().__init__()
        c_ = c2 // 2
        self.cv1, self.cv2, self.cv3 = Conv(c1, c_, 1), Conv(c1, c_, 1), Conv(2 * c_, c2, 1)
        self.m = nn.Sequential(*(Bottleneck(c_, c_, shortcut) for _ in range(n)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cv3(torch.cat((self.m(self.cv1(x)), self.cv2(x)), 1))


class SPPF(nn.Module):
    """Spatial pyramid pooling, fast: three chained 5x5 max-pools."""

    def __init__(self, c1: int, c2: int, k: int = 5) -> None:
        super().__init__()
        c_ = c1 // 2
        self.cv1, self.cv2 = Conv(c1, c_, 1), Conv(c_ * 4, c2, 1)
        self.m = nn.MaxPool2d(k, 1, k // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.cv1(x)
        y1 = self.m(x)
        y2 = self.m(y1)
        return self.cv2(torch.cat((x, y1, y2, self.m(y2)), 1))


class Detect(nn.Module):
    """One 1x1 conv per level to 3 anchors x (4 box + 1 objectness + nc classes)."""

    def __init__(self, nc: int, channels: tuple[int, ...], anchors=ANCHORS, strides=STRIDES) -> None:
        super().__init__()
        self.nc, self.no, self.na = nc, nc + 5, len(anchors[0])
        self.m = nn.ModuleList(nn.Conv2d(c, self.no * self.na, 1) for c in channels)
        self.register_buffer("stride", torch.tensor(strides, dtype=torch.float32))
        # anchors in grid units of each level, as YOLOv5 stores them after check_anchor_order
        self.register_buffer("anchors", torch.tensor(anchors, dtype=torch.float32) / self.stride.view(-1, 1, 1))

    def forward(self, xs: list[torch.Tensor]):
        out = []
        for i, x in enumerate(xs):
            n, _, h, w = x.shape
            out.append(self.m[i](x).view(n, self.na, self.no, h, w).permute(0, 1, 3, 4, 2).contiguous())
        if self.training:
            return out
        return torch.cat([self.decode(i, p) for i, p in enumerate(out)], 1), out

    def decode(self, i: int, p: torch.Tensor) -> torch.Tensor:
        """YOLOv5's v6 decoding: xy = (2 sigmoid - 0.5 + grid) * stride, wh = (2 sigmoid)^2 * anchor."""
        n, na, h, w, no = p.shape
        ys, xs = torch.meshgrid(torch.arange(h, device=p.device), torch.arange(w, device=p.device), indexing="ij")
        grid = torch.stack((xs, ys), -1).view(1, 1, h, w, 2).to(p.dtype) - 0.5
        anchor = (self.anchors[i] * self.stride[i]).view(1, na, 1, 1, 2).to(p.dtype)
        y = p.sigmoid()
        xy = (y[..., :2] * 2 + grid) * self.stride[i]
        wh = (y[..., 2:4] * 2) ** 2 * anchor
        return torch.cat((xy, wh, y[..., 4:]), -1).view(n, -1, no)

    @torch.no_grad()
    def init_biases(self, class_frequency: torch.Tensor | None = None) -> None:
        """YOLOv5's _initialize_biases: objectness prior of ~8 objects per 640 image, class prior 0.6 / nc."""
        for conv, s in zip(self.m, self.stride, strict=True):
            b = conv.bias.view(self.na, -1)
            b[:, 4] += math.log(8 / (640 / s) ** 2)
            if class_frequency is None:
                b[:, 5:] += math.log(0.6 / (self.nc - 0.99999))
            else:
                b[:, 5:] += torch.log(class_frequency / class_frequency.sum())


def scaled_width(c: int, gw: float) -> int:
    return math.ceil(c * gw / 8) * 8  # YOLOv5's make_divisible(c * gw, 8)


def scaled_depth(n: int, gd: float) -> int:
    return max(round(n * gd), 1)


class YOLOv5(nn.Module):
    def __init__(self, size: str = "s", nc: int = 80, anchors=ANCHORS) -> None:
        super().__init__()
        if size not in SIZES:
            raise ValueError(f"model size must be one of {', '.join(SIZES)}, not {size!r}")
        gd, gw = SIZES[size]
        c = {k: scaled_width(k, gw) for k in (64, 128, 256, 512, 1024)}
        d = {k: scaled_depth(k, gd) for k in (3, 6, 9)}
        self.size, self.nc = size, nc
        # backbone
        self.b0 = Conv(3, c[64], 6, 2, 2)  # P1/2
        self.b1 = nn.Sequential(Conv(c[64], c[128], 3, 2), C3(c[128], c[128], d[3]))  # P2/4
        self.b2 = nn.Sequential(Conv(c[128], c[256], 3, 2), C3(c[256], c[256], d[6]))  # P3/8
        self.b3 = nn.Sequential(Conv(c[256], c[512], 3, 2), C3(c[512], c[512], d[9]))  # P4/16
        self.b4 = nn.Sequential(Conv(c[512], c[1024], 3, 2), C3(c[1024], c[1024], d[3]), SPPF(c[1024], c[1024]))
        # head: top-down then bottom-up (PANet)
        self.h_lat5 = Conv(c[1024], c[512], 1)
        self.h_c3_4 = C3(c[1024], c[512], d[3], shortcut=False)
        self.h_lat4 = Conv(c[512], c[256], 1)
        self.h_out3 = C3(c[512], c[256], d[3], shortcut=False)  # P3/8
        self.h_down3 = Conv(c[256], c[256], 3, 2)
        self.h_out4 = C3(c[512], c[512], d[3], shortcut=False)  # P4/16
        self.h_down4 = Conv(c[512], c[512], 3, 2)
        self.h_out5 = C3(c[1024], c[1024], d[3], shortcut=False)  # P5/32
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.detect = Detect(nc, (c[256], c[512], c[1024]), anchors)
        self.detect.init_biases()

    def fuse(self) -> YOLOv5:
        """Fold every BatchNorm into its conv for inference (as YOLOv5 does before validation and export)."""
        for module in self.modules():
            if isinstance(module, Conv):
                module.fuse()
        return self

    def forward(self, x: torch.Tensor):
        p3 = self.b2(self.b1(self.b0(x)))
        p4 = self.b3(p3)
        p5 = self.b4(p4)
        l5 = self.h_lat5(p5)
        t4 = self.h_c3_4(torch.cat((self.up(l5), p4), 1))
        l4 = self.h_lat4(t4)
        o3 = self.h_out3(torch.cat((self.up(l4), p3), 1))
        o4 = self.h_out4(torch.cat((self.h_down3(o3), l4), 1))
        o5 = self.h_out5(torch.cat((self.h_down4(o4), l5), 1))
        return self.detect([o3, o4, o5])
