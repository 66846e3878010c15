"""A batch drawn for the eye: boxes land where the targets say (also scaled down, and predictions above their
confidence only), `fastload preview` draws the loader's first batch of an epoch, and bad paths are one-line errors."""

import numpy as np
import torch
from click.testing import CliRunner
from conftest import cli
from PIL import Image

from fastload.cli import main
from fastload.loader.augment import Hyp
from fastload.loader.draw import batch_grid, class_colour, detection_rows
from fastload.loader.train_loader import TrainLoader
from fastload.store import open_store

GREY = 100


def grey_batch(n: int, h: int = 64, w: int = 96) -> torch.Tensor:
    return torch.full((n, 3, h, w), GREY, dtype=torch.uint8)


def test_boxes_are_drawn_in_their_tile_at_their_place():
    # image 1 (second tile of a 3 x 2 grid) has a box of class 2 over x 24..72, y 16..48 of its 96 x 64 pixels
    grid = np.asarray(batch_grid(grey_batch(5), torch.tensor([[1, 2, 0.5, 0.5, 0.5, 0.5]]), ["a", "b", "c"]))
    assert grid.shape == (2 * 64, 3 * 96, 3)
    assert tuple(grid[32, 96 + 24]) == tuple(grid[32, 96 + 71]) == tuple(grid[47, 96 + 48]) == class_colour(2)
    assert (grid[32, 96 + 48] == GREY).all()  # inside the box: the image
    assert (grid[32, 24] == GREY).all() and (grid[32, 2 * 96 + 24] == GREY).all()  # the same place in other tiles
    assert (grid[64 + 32, 2 * 96 + 48] == 255).all()  # the sixth cell has no image: background


def test_a_large_batch_is_scaled_down_with_its_boxes():
    images = grey_batch(16, 640, 640)
    grid = batch_grid(images, torch.tensor([[5, 0, 0.25, 0.5, 0.5, 0.5]]), ["a"], max_size=320)
    a = np.asarray(grid)
    assert grid.size == (320, 320)  # 4 x 4 tiles of 80 px
    x0, y0 = 80, 80  # image 5: second row, second column
    assert tuple(a[y0 + 40, x0]) == class_colour(0) and tuple(a[y0 + 20, x0 + 39]) == class_colour(0)
    assert (a[y0 + 40, x0 + 20] == GREY).all()


def test_float_images_draw_as_their_bytes():
    images = torch.randint(0, 256, (2, 3, 32, 48), dtype=torch.uint8)
    targets = torch.tensor([[0, 1, 0.4, 0.5, 0.3, 0.6]])
    same = np.asarray(batch_grid(images, targets, ["a", "b"])) == np.asarray(
        batch_grid(images / 255, targets, ["a", "b"])
    )
    assert same.all()


def test_predictions_are_drawn_above_their_confidence():
    detections = [torch.tensor([[24.0, 16, 72, 48, 0.9, 1], [0, 0, 20, 20, 0.1, 0]]), torch.zeros((0, 6))]
    rows = detection_rows(detections, (64, 96))
    assert np.allclose(rows, [[0, 1, 0.5, 0.5, 0.5, 0.5, 0.9], [0, 0, 10 / 96, 10 / 64, 20 / 96, 20 / 64, 0.1]])
    grid = np.asarray(batch_grid(grey_batch(2), rows, ["a", "b"], conf=0.25))
    assert tuple(grid[32, 24]) == class_colour(1)  # conf 0.9: drawn
    assert (grid[10, 4] == GREY).all() and (grid[19, 10] == GREY).all()  # conf 0.1: not drawn


def test_preview_draws_the_first_batch_of_the_epoch(demo_store, tmp_path):
    out = tmp_path / "pics" / "batch.png"
    got = cli("preview", demo_store, "-o", str(out), "--imgsz", "96", "--batch", "4", "--epoch", "2", "--seed", "5",
              "--workers", "1", "--json")  # fmt: skip
    loader = TrainLoader(open_store(demo_store), 96, 4, hyp=Hyp(), seed=5, workers=1)
    loader.set_epoch(2)
    first = next(iter(loader))
    assert got["records"] == first.indices.tolist() and got["boxes"] == len(first.targets) > 0
    picture = Image.open(out)
    assert picture.size == (2 * 96, 2 * 96) and got["shape"] == [96, 96]
    boxes = batch_grid(first.images, first.targets, open_store(demo_store).names)  # the same picture but for the titles
    assert (np.asarray(picture)[48:, :] == np.asarray(boxes)[48:, :]).mean() > 0.99  # PNG: exact below the titles


def test_preview_of_the_validation_loader_and_mistakes(demo_store, tmp_path):
    got = cli("preview", demo_store, "-o", str(tmp_path / "val.jpg"), "--split", "val", "--no-augment", "--imgsz", "96",
              "--workers", "1", "--json")  # fmt: skip
    assert (
        got["images"] == 5 and got["augment"] is False and max(got["shape"]) == 128
    )  # YOLOv5's rect shapes: + half a stride
    assert Image.open(tmp_path / "val.jpg").format == "JPEG"
    mistakes = {"x.gif": "x.gif: the picture must be .jpg or .png", "val.jpg": "no split 'nope' (has train, val)"}
    for name, message in mistakes.items():
        split = "nope" if name == "val.jpg" else "train"
        result = CliRunner().invoke(main, ["preview", demo_store, "-o", str(tmp_path / name), "--split", split])
        lines = result.stderr.strip().splitlines()
        assert result.exit_code == 2 and len(lines) == 1 and message in lines[0], lines
