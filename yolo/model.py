"""YOLOv5 v6+ detection model: Conv-BN-SiLU, C3, SPPF, nearest 2x upsample, Detect on P3-P5 with 3 anchors each;
sizes n/s/m/l/x from one definition scaled by depth and width multiples, as YOLOv5's yolov5{n,s,m,l,x}.yaml; and
its P6 models n6/s6/m6/l6/x6 (yolov5{n,s,m,l,x}6.yaml: one more stage, 768 channels at P5, Detect on P3-P6, stride
64, for 1280-pixel training); and its segmentation models n-seg .. x-seg (yolov5{n,s,m,l,x}-seg.yaml: Segment, with
32 mask coefficients per anchor and Proto's prototype masks at stride 4). Any other YOLOv5 architecture is built from
its model yaml by yolo.yaml_model; all are DetectionModels.

    model = YOLOv5("s", nc=80)      # 7,235,389 parameters; 7,225,885 after fuse(), like YOLOv5s
    preds = model(images)            # training: 3 maps [N, 3, H/s, W/s, 5 + nc]; eval: also [N, A, 5 + nc] decoded
    YOLOv5("s6").detect.stride       # tensor([ 8., 16., 32., 64.]): 4 maps
    YOLOv5("s-seg", nc=80)           # 7,621,277 parameters, like YOLOv5s-seg; training: (maps, prototypes)
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
ANCHORS_P6 = (  # yolov5{n,s,m,l,x}6.yaml's, for P3/8 .. P6/64
    ((19, 27), (44, 40), (38, 94)),
    ((96, 68), (86, 152), (180, 137)),
    ((140, 301), (303, 264), (238, 542)),
    ((436, 615), (739, 380), (925, 792)),
)
STRIDES_P6 = (8, 16, 32, 64)
# YOLOv5 v6+ yolov5{n,s,m,l,x}.yaml layer index -> this model's module (11, 12, 15, 16, 19, 22: Upsample, Concat)
LAYERS = {0: "b0", 1: "b1.0", 2: "b1.1", 3: "b2.0", 4: "b2.1", 5: "b3.0", 6: "b3.1", 7: "b4.0", 8: "b4.1",
          9: "b4.2", 10: "h_lat5", 13: "h_c3_4", 14: "h_lat4", 17: "h_out3", 18: "h_down3", 20: "h_out4",
          21: "h_down4", 23: "h_out5", 24: "detect"}  # fmt: skip
# and of its P6 models, yolov5{n,s,m,l,x}6.yaml (13, 14, 17, 18, 21, 22, 25, 28, 31: Upsample, Concat)
LAYERS_P6 = {0: "b0", 1: "b1.0", 2: "b1.1", 3: "b2.0", 4: "b2.1", 5: "b3.0", 6: "b3.1", 7: "b4.0", 8: "b4.1",
             9: "b5.0", 10: "b5.1", 11: "b5.2", 12: "h_lat6", 15: "h_c3_5", 16: "h_lat5", 19: "h_c3_4",
             20: "h_lat4", 23: "h_out3", 24: "h_down3", 26: "h_out4", 27: "h_down4", 29: "h_out5", 30: "h_down5",
             32: "h_out6", 33: "detect"}  # fmt: skip
MODELS = (*SIZES, *(f"{size}6" for size in SIZES), *(f"{size}-seg" for size in SIZES))  # n .. x6, n-seg .. x-seg
MASKS, PROTOS = 32, 256  # a segmentation model's mask coefficients and prototype channels (scaled by the width)


def is_p6(model: str) -> bool:
    """Whether a model name (n .. x, n6 .. x6) is a P6 model."""
    return model.endswith("6")


def strides(model: str) -> tuple[int, ...]:
    """The strides of a model's detection levels: (8, 16, 32), or (8, 16, 32, 64) for a P6 model."""
    return STRIDES_P6 if is_p6(model) else STRIDES


def max_stride(model: str) -> int:
    """The model's largest stride: what image sides must be multiples of (YOLOv5's gs)."""
    return strides(model)[-1]


def fit_stride(imgsz: int, stride: int = STRIDES[-1], floor: int = 0) -> int:
    """The image size rounded up to the largest stride and at least `floor`, as YOLOv5's check_img_size does."""
    return max(stride, floor, -(-imgsz // stride) * stride)


def same_padding(k, d: int = 1):
    """YOLOv5's autopad: the padding that keeps the size at stride 1, for a kernel side or (h, w) and a dilation."""
    if isinstance(k, int):
        return (d * (k - 1) + 1) // 2
    return [(d * (x - 1) + 1) // 2 for x in k]


class Conv(nn.Sequential):
    """Conv2d (no bias) + BatchNorm + SiLU, 'same' padding (YOLOv5's Conv: groups, dilation, and `act` True for
    SiLU, a module, or False for none); `fuse()` folds the BatchNorm into the conv."""

    def __init__(self, c1: int, c2: int, k=1, s=1, p=None, g: int = 1, d: int = 1, act: bool | nn.Module = True):
        super().__init__(
            nn.Conv2d(c1, c2, k, s, same_padding(k, d) if p is None else p, groups=g, dilation=d, bias=False),
            nn.BatchNorm2d(c2, eps=1e-3, momentum=0.03),  # YOLOv5's BN settings
            nn.SiLU(inplace=True) if act is True else act if isinstance(act, nn.Module) else nn.Identity(),
        )

    @torch.no_grad()
    def fuse(self) -> None:
        conv, bn = self[0], self[1]
        if isinstance(bn, nn.Identity):
            return
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                          dilation=conv.dilation, groups=conv.groups, bias=True)  # fmt: skip
        fused.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))
        fused.bias.copy_(bn.bias - bn.running_mean * scale)
        self[0], self[1] = fused.to(conv.weight.device), nn.Identity()


class Bottleneck(nn.Module):
    """1x1 conv to c2 * e channels, 3x3 conv back to c2, plus the input when the shapes allow."""

    def __init__(self, c1: int, c2: int, shortcut: bool = True, g: int = 1, e: float = 0.5) -> None:
        super().__init__()
        c_ = int(c2 * e)
        self.cv1, self.cv2 = Conv(c1, c_, 1), Conv(c_, c2, 3, g=g)
        self.add = shortcut and c1 == c2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class C3(nn.Module):
    """CSP bottleneck with 3 convolutions."""

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = True, g: int = 1, e: float = 0.5) -> None:
        super().__init__()
        c_ = int(c2 * e)
        self.cv1, self.cv2, self.cv3 = Conv(c1, c_, 1), Conv(c1, c_, 1), Conv(2 * c_, c2, 1)
        self.m = nn.Sequential(*(Bottleneck(c_, c_, shortcut, g, e=1.0) for _ in range(n)))

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

    def __init__(self, nc: int, channels: tuple[int, ...], anchors=ANCHORS, strides=STRIDES, nm: int = 0) -> None:
        super().__init__()
        self.nm = nm  # mask coefficients per anchor (Segment's)
        self.nc, self.no, self.na = nc, nc + 5 + nm, len(anchors[0])
        self.m = nn.ModuleList(nn.Conv2d(c, self.no * self.na, 1) for c in channels)
        self.register_buffer("stride", torch.tensor(strides, dtype=torch.float32))
        # anchors in grid units of each level, as YOLOv5 stores them after check_anchor_order
        self.register_buffer("anchors", torch.tensor(anchors, dtype=torch.float32) / self.stride.view(-1, 1, 1))

    @torch.no_grad()
    def set_strides(self, strides) -> None:
        """Take the strides a forward pass found (a model built from a yaml, made with strides of 1, so its anchors
        are still pixels): anchors to grid units, their order flipped where it runs against the strides' (YOLOv5's
        check_anchor_order)."""
        pixels = self.anchors * self.stride.view(-1, 1, 1)
        self.stride.copy_(torch.as_tensor(strides, dtype=torch.float32))
        area = pixels.prod(-1).mean(-1)
        if (area[-1] - area[0]).sign() * (self.stride[-1] - self.stride[0]).sign() < 0:
            pixels = pixels.flip(0)
        self.anchors.copy_(pixels / self.stride.view(-1, 1, 1))

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
        y = p[..., : no - self.nm].sigmoid()
        xy = (y[..., :2] * 2 + grid) * self.stride[i]
        wh = (y[..., 2:4] * 2) ** 2 * anchor
        return torch.cat((xy, wh, y[..., 4:], p[..., no - self.nm :]), -1).view(n, -1, no)  # mask coefficients raw

    @torch.no_grad()
    def init_biases(self, class_frequency: torch.Tensor | None = None) -> None:
        """YOLOv5's _initialize_biases: objectness prior of ~8 objects per 640 image, class prior 0.6 / nc."""
        for conv, s in zip(self.m, self.stride, strict=True):
            b = conv.bias.view(self.na, -1)
            b[:, 4] += math.log(8 / (640 / s) ** 2)
            classes = b[:, 5 : 5 + self.nc]
            if class_frequency is None:
                classes += math.log(0.6 / (self.nc - 0.99999))
            else:
                classes += torch.log(class_frequency / class_frequency.sum())


class Proto(nn.Module):
    """YOLOv5's mask prototypes: 3x3 conv, nearest 2x upsample, 3x3 conv, 1x1 conv to `c2` maps at stride 4."""

    def __init__(self, c1: int, c_: int = 256, c2: int = 32) -> None:
        super().__init__()
        self.cv1, self.cv2, self.cv3 = Conv(c1, c_, 3), Conv(c_, c_, 3), Conv(c_, c2)
        self.upsample = nn.Upsample(scale_factor=2, mode="nearest")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cv3(self.cv2(self.upsample(self.cv1(x))))


class Segment(Detect):
    """YOLOv5's Segment: Detect with `nm` mask coefficients more per anchor, and `Proto` on the P3 input making `nm`
    prototype masks; an instance's mask is the sigmoid of its coefficients times the prototypes. Training: (the
    maps, the prototypes [N, nm, H/4, W/4]); eval: (decoded [N, A, 5 + nc + nm], the maps, the prototypes)."""

    def __init__(self, nc: int, channels: tuple[int, ...], anchors=ANCHORS, strides=STRIDES, nm=32, npr=256):
        super().__init__(nc, channels, anchors, strides, nm)
        self.npr = npr
        self.proto = Proto(channels[0], npr, nm)

    def forward(self, xs: list[torch.Tensor]):
        proto = self.proto(xs[0])
        out = super().forward(xs)
        return (out, proto) if self.training else (*out, proto)


def mask_coefficients(model: nn.Module) -> int:
    """A model's (or its Detect's) mask coefficients per anchor: 32 for a segmentation model, else 0 (an exported
    model, which has no Detect, too)."""
    return getattr(getattr(model, "detect", model), "nm", 0)


def is_segment(model: nn.Module) -> bool:
    """Whether a model (or its Detect) makes instance masks."""
    return mask_coefficients(model) > 0


def scaled_width(c: int, gw: float) -> int:
    return math.ceil(c * gw / 8) * 8  # YOLOv5's make_divisible(c * gw, 8)


def scaled_depth(n: int, gd: float) -> int:
    return max(round(n * gd), 1)


def top_down_c3(k: int) -> str:
    """The C3 that merges level k's upsampled lateral into level k - 1: `h_c3_<k-1>`, or at P3 `h_out3`, whose
    output Detect takes."""
    return f"h_c3_{k - 1}" if k > 4 else "h_out3"


class DetectionModel(nn.Module):
    """What the trainer, val, detect and export take: a built-in YOLOv5 or a yolo.yaml_model.YamlModel."""

    detect: Detect
    arch: str | dict  # what yolo.yaml_model.build_model makes it from again: a size name, or a model yaml dict

    @property
    def grid_size(self) -> int:
        """What input sides must be multiples of (YOLOv5's gs): the largest stride, at least 32 (a yaml model may
        downsample past its last detection level, as yolov5-p34.yaml does)."""
        return max(int(self.detect.stride.max()), 32)

    def layer_names(self) -> dict[int, str]:
        """YOLOv5's layer index -> this model's module of that layer (--freeze, and weights across models)."""
        raise NotImplementedError

    def fuse(self) -> DetectionModel:
        """Fold every BatchNorm into its conv for inference (as YOLOv5 does before validation and export)."""
        for module in self.modules():
            if isinstance(module, Conv):
                module.fuse()
        return self


def model_summary(model: DetectionModel, imgsz: int = 640) -> dict:
    """YOLOv5's model summary: its layers (YOLOv5's numbering), parameters and GFLOPs for an imgsz square image
    (counted on a small image and scaled, as YOLOv5 does; 4.5 for yolov5n at 640, as YOLOv5 states)."""
    from torch.utils.flop_counter import FlopCounterMode

    side, training = 2 * model.grid_size, model.training
    p = next(model.parameters())
    model.eval()
    try:
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(torch.zeros(1, 3, side, side, dtype=p.dtype, device=p.device))
    finally:
        model.train(training)
    return {
        "layers": max(model.layer_names()) + 1,
        "parameters": sum(p.numel() for p in model.parameters()),
        "gflops": counter.get_total_flops() / 1e9 * (imgsz / side) ** 2,
    }


class YOLOv5(DetectionModel):
    """The stages are named by what they make: `b1`..`b4` (`b5` for P6) the backbone's, `h_lat<k>` the 1x1 conv
    that narrows level k for the top-down path, `h_c3_<k>` its C3 there, `h_down<k>` the 3x3 stride-2 conv from
    level k up, `h_out<k>` the C3 whose output Detect takes at level k (YOLOv5's PANet)."""

    def __init__(self, size: str = "s", nc: int = 80, anchors=None) -> None:
        super().__init__()
        if size not in MODELS:
            raise ValueError(f"model size must be one of {', '.join(MODELS)}, not {size!r}")
        gd, gw = SIZES[size[0]]
        p6 = is_p6(size)
        # output channels and C3 depth of backbone stages b1.. (P2, P3, ...), the last one ending in SPPF
        widths = [scaled_width(c, gw) for c in (128, 256, 512, *((768,) if p6 else ()), 1024)]
        depths = [scaled_depth(n, gd) for n in (3, 6, 9, *((3,) if p6 else ()), 3)]
        self.size, self.nc = size, nc
        self.b0 = Conv(3, scaled_width(64, gw), 6, 2, 2)  # P1/2
        c_in = self.b0[0].out_channels
        for i, (c, n) in enumerate(zip(widths, depths, strict=True), 1):  # b1 P2/4, b2 P3/8, ...
            stage = [Conv(c_in, c, 3, 2), C3(c, c, n)] + ([SPPF(c, c)] if i == len(widths) else [])
            setattr(self, f"b{i}", nn.Sequential(*stage))
            c_in = c
        self.top = len(widths) + 1  # the coarsest level: 5 (P5/32) or 6 (P6/64)
        ch = dict(enumerate(widths, 2))  # level -> the backbone's channels there
        n = scaled_depth(3, gd)
        for k in range(self.top, 3, -1):  # top-down (FPN): narrow, upsample, concat with the backbone, C3
            setattr(self, f"h_lat{k}", Conv(c_in, ch[k - 1], 1))
            setattr(self, top_down_c3(k), C3(2 * ch[k - 1], ch[k - 1], n, shortcut=False))
            c_in = ch[k - 1]
        for k in range(3, self.top):  # bottom-up (PAN): downsample, concat with the top-down lateral, C3
            setattr(self, f"h_down{k}", Conv(ch[k], ch[k], 3, 2))
            setattr(self, f"h_out{k + 1}", C3(2 * ch[k], ch[k + 1], n, shortcut=False))
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        outs = tuple(ch[k] for k in range(3, self.top + 1))
        anchors = anchors or (ANCHORS_P6 if p6 else ANCHORS)
        if size.endswith("-seg"):  # yolov5{n,s,m,l,x}-seg.yaml: Segment(nc, anchors, 32, 256 x width)
            self.detect = Segment(nc, outs, anchors, strides(size), MASKS, scaled_width(PROTOS, gw))
        else:
            self.detect = Detect(nc, outs, anchors, strides(size))
        self.detect.init_biases()

    @property
    def arch(self) -> str:
        return self.size

    def layer_names(self) -> dict[int, str]:
        return LAYERS_P6 if is_p6(self.size) else LAYERS

    def forward(self, x: torch.Tensor):
        levels = {1: self.b0(x)}
        for k in range(2, self.top + 1):
            levels[k] = getattr(self, f"b{k - 1}")(levels[k - 1])
        lat, x = {}, levels[self.top]
        for k in range(self.top, 3, -1):
            lat[k] = getattr(self, f"h_lat{k}")(x)
            x = getattr(self, top_down_c3(k))(torch.cat((self.up(lat[k]), levels[k - 1]), 1))
        outs = [x]
        for k in range(3, self.top):
            down = getattr(self, f"h_down{k}")(outs[-1])
            outs.append(getattr(self, f"h_out{k + 1}")(torch.cat((down, lat[k + 1]), 1)))
        return self.detect(outs)
