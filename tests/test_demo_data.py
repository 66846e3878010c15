"""The built-in dataset: deterministic per seed, YOLO layout, varied sizes, exact boxes."""

import hashlib
import os

import numpy as np
import yaml
from PIL import Image

from fastload.demo_data import NAMES, DemoConfig, _image_size, generate, render_image


def _digest(folder: str) -> str:
    h = hashlib.sha256()
    for d, _, files in sorted(os.walk(folder)):
        for f in sorted(files):
            with open(os.path.join(d, f), "rb") as fh:
                h.update(f.encode() + fh.read())
    return h.hexdigest()


def test_same_seed_same_files_other_seed_other_files(tmp_path):
    cfg = DemoConfig(images=6, seed=3, scale=0.25)
    generate(str(tmp_path / "a"), cfg)
    generate(str(tmp_path / "b"), cfg, workers=2)
    generate(str(tmp_path / "c"), DemoConfig(images=6, seed=4, scale=0.25))
    assert _digest(str(tmp_path / "a" / "images")) == _digest(str(tmp_path / "b" / "images"))
    assert _digest(str(tmp_path / "a" / "labels")) == _digest(str(tmp_path / "b" / "labels"))
    assert _digest(str(tmp_path / "a" / "images")) != _digest(str(tmp_path / "c" / "images"))


def test_yolo_layout_and_data_yaml(demo_dataset):
    cfg = yaml.safe_load(open(os.path.join(demo_dataset, "data.yaml")))
    assert cfg["names"] == NAMES and cfg["nc"] == 3 and len(NAMES) >= 3
    train = sorted(os.listdir(os.path.join(demo_dataset, "images", "train")))
    val = sorted(os.listdir(os.path.join(demo_dataset, "images", "val")))
    assert (len(train), len(val)) == (19, 5)
    for name in train + val:
        split = "train" if name in train else "val"
        rows = np.loadtxt(os.path.join(demo_dataset, "labels", split, name[:-4] + ".txt"), ndmin=2)
        assert 1 <= len(rows) <= 10
        assert set(rows[:, 0]) <= {0, 1, 2}
        assert (rows[:, 1:] > 0).all() and (rows[:, 1:] <= 1).all()


def test_sizes_vary_around_640x480_with_portrait_and_large():
    sizes = [_image_size(np.random.default_rng([0, i]), 1.0) for i in range(300)]
    portrait = sum(h > w for w, h in sizes)
    large = sum(max(w, h) > 1000 for w, h in sizes)
    typical = sum(540 <= w <= 740 and 380 <= h <= 540 for w, h in sizes)
    assert portrait > 20 and large > 10 and typical > 150


def test_every_class_occurs_and_boxes_are_exact():
    """Each circle/rectangle box is the extent of the pixels of its fill colour (within 1 px after JPEG)."""
    seen = set()
    checked = 0
    for index in range(12):
        data, rows = render_image(index, DemoConfig(seed=1, scale=0.5, quality=100))
        im = np.asarray(Image.open(__import__("io").BytesIO(data)).convert("RGB"), np.float32)
        h, w = im.shape[:2]
        for cls, cx, cy, bw, bh in rows:
            seen.add(int(cls))
            if cls == 2:  # a triangle's box centre may lie outside the triangle
                continue
            x0, y0, x1, y1 = (cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h
            fill = np.median(im[int(cy * h) - 1 : int(cy * h) + 2, int(cx * w) - 1 : int(cx * w) + 2], axis=(0, 1))
            m = 4
            ya, yb, xa, xb = max(0, int(y0) - m), min(h, int(y1) + m), max(0, int(x0) - m), min(w, int(x1) + m)
            mask = np.abs(im[ya:yb, xa:xb] - fill).sum(-1) < 60
            ys, xs = np.nonzero(mask)
            got = (xs.min() + xa, ys.min() + ya, xs.max() + xa + 1, ys.max() + ya + 1)
            assert np.allclose(got, (x0, y0, x1, y1), atol=1.0), (index, cls, got, (x0, y0, x1, y1))
            checked += 1
    assert seen == {0, 1, 2} and checked > 10


def test_shape_classes_are_learnable_from_pixels():
    """A tiny CNN learns circle / rectangle / triangle from grayscale crops cut by the boxes (colours are random,
    so only the shape carries the class): the detection task is learnable. Issue 4's trainer shows mAP."""
    import torch
    from torch import nn

    crops, classes = [], []
    for index in range(120):
        data, rows = render_image(index, DemoConfig(seed=2, scale=0.5))
        im = Image.open(__import__("io").BytesIO(data)).convert("L")
        w, h = im.size
        for c, cx, cy, bw, bh in rows:
            box = ((cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h)
            crop = np.asarray(im.crop(box).resize((24, 24)), np.float32) / 255
            crops.append((crop - crop.mean()) / (crop.std() + 1e-3))
            classes.append(int(c))
    x = torch.tensor(np.stack(crops))[:, None]
    y = torch.tensor(classes)
    n = len(y) * 3 // 4
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 36, 3),
    )
    opt = torch.optim.Adam(net.parameters(), 3e-3)
    for _ in range(60):
        for k in range(0, n, 64):
            opt.zero_grad()
            nn.functional.cross_entropy(net(x[k : min(k + 64, n)]), y[k : min(k + 64, n)]).backward()
            opt.step()
    accuracy = (net(x[n:]).argmax(1) == y[n:]).float().mean().item()
    assert len(y) > 300 and accuracy >= 0.9, accuracy
