"""YOLOv5's copy_paste (hyp copy_paste, hyp.scratch-high's 0.1): objects of a mosaic pasted mirrored by their
polygons. Its choice rule; its mask; through the real DALI loader (CPU) the pasted pixels are exactly the canvas's
mirror image where the mask is and the pasted boxes mirror their objects; the GPU graph's assembly gives the same
pixels; `train` says when a store has no polygons to paste."""

import json

import numpy as np
import pytest

from fastload.loader.augment import Hyp
from fastload.loader.copy_paste import paste_choice, paste_mask
from fastload.loader.pipelines import augment_graph, build
from fastload.loader.sources import AugmentPlanner, AugmentSource
from fastload.loader.train_loader import TrainLoader
from fastload.store import open_store

FIXED = dict(translate=0.0, scale=0.0, hsv_h=0.0, hsv_s=0.0, hsv_v=0.0, fliplr=0.0)  # the output: the canvas's centre


def test_an_object_is_pasted_only_where_its_mirror_hides_under_30_percent_of_every_label():
    boxes = np.array([
        [10, 10, 20, 20],  # A: its mirror (80..90) lands on nothing: pasted
        [70, 50, 90, 70],  # B: its mirror (10..30) covers all of C: not pasted
        [12, 52, 28, 68],  # C: its mirror (72..88) covers 64% of B: not pasted
        [40, 80, 45, 90],  # D and E: each other's mirror image: neither pasted
        [55, 80, 60, 90],
        [10, 30, 20, 40],  # F and G: their mirrors overlap each other 80%: whichever is tried first is pasted
        [12, 30, 22, 40],
    ], np.float64)  # fmt: skip
    firsts = set()
    for seed in range(12):
        picks, mirrored = paste_choice(np.random.default_rng(seed), boxes, 1.0, 100.0)
        assert len(picks) == 2 and 0 in picks.tolist() and len({5, 6} & set(picks.tolist())) == 1
        firsts.add(int(picks[picks >= 5][0]))
        for j, box in zip(picks, mirrored, strict=True):
            np.testing.assert_array_equal(box, [100 - boxes[j, 2], boxes[j, 1], 100 - boxes[j, 0], boxes[j, 3]])
    assert firsts == {5, 6}
    # round(p n) objects are tried: 0.3 x 7 -> 2; an empty mosaic or p = 0 tries none
    rng = np.random.default_rng(0)
    assert len(paste_choice(rng, boxes[[0, 3, 4]], 1.0, 100.0)[0]) == 1
    counts = [len(paste_choice(np.random.default_rng(s), boxes, 0.3, 100.0)[0]) for s in range(40)]
    assert max(counts) == 2 and min(counts) == 0
    assert len(paste_choice(rng, boxes, 0.0, 100.0)[0]) == len(paste_choice(rng, boxes[:0], 1.0, 100.0)[0]) == 0


def test_the_mask_is_the_polygons_fill_mirrored_and_kept_to_the_region_read():
    """cv2.drawContours(FILLED) of a rectangle at integer vertices fills it edges included; flipped across the
    canvas of width 100, columns x become 99 - x."""
    rect = np.array([[10.7, 5.2], [20.9, 5.0], [20.0, 15.9], [10.0, 15.0]], np.float32)  # truncated to 10..20, 5..15
    (top, left), mask = paste_mask([rect], 100, (0, 0, 100, 100))
    assert (top, left, *mask.shape) == (5, 79, 11, 11) and mask.all()
    (top, left), mask = paste_mask([rect], 100, (8, 85, 100, 100))  # only what the warp reads: rows 8.., cols 85..
    assert (top, left, *mask.shape) == (8, 85, 8, 5) and mask.all()
    assert paste_mask([rect], 100, (0, 0, 100, 70)) is None  # the mirror lands outside the region
    triangle = np.array([[0, 0], [30, 0], [0, 30]], np.float32)
    (top, left), mask = paste_mask([triangle], 100, (0, 0, 100, 100))
    assert (top, left) == (0, 69) and mask[0].all() and mask[:, -1].all() and not mask[-1, 0]  # mirrored: right angle
    assert mask.sum() == pytest.approx(31 * 32 / 2, rel=0.05)


def test_the_loader_pastes_the_mirror_image_where_the_mask_is(polygon_data):
    """No zoom, shift or flip: the output is the 2s mosaic's centre, whose mirror image is the output's own, so
    with copy_paste each sample is the same plan's sample without it, flipped where the mask is: pixel for pixel.
    The targets are those without copy_paste, then the pasted objects', each the mirror of one of them."""
    store = open_store(polygon_data["polygons"])
    out, plans = {}, []
    for p in (0.0, 1.0):
        loader = TrainLoader(store, 128, 4, hyp=Hyp(copy_paste=p, **FIXED), seed=2, workers=1)
        loader.set_epoch(0)
        out[p] = [(b.images.numpy(), b.targets.numpy()) for b in loader]
        plans = [loader.planner.plan(0, k)[2] for k in range(len(loader))]
    pasted_pixels = pasted_boxes = 0
    for ((a, ta), (b, tb)), batch_plans in zip(zip(out[0.0], out[1.0], strict=True), plans, strict=True):
        for j, plan in enumerate(batch_plans):
            want = a[j].copy()
            paste = plan.canvas.paste
            if paste is not None:
                shown = np.zeros((256, 256), bool)  # the canvas
                y0, x0 = plan.canvas.region[:2]
                top, left = paste.place[0] + y0 - 1, paste.place[1] + x0 - 1
                shown[top : top + paste.mask.shape[0], left : left + paste.mask.shape[1]] = paste.mask > 0
                shown = shown[64:192, 64:192]  # the output
                want[:, shown] = a[j][:, :, ::-1][:, shown]
                pasted_pixels += int(shown.sum())
            np.testing.assert_array_equal(b[j], want)
            own, theirs = ta[ta[:, 0] == j], tb[tb[:, 0] == j]
            np.testing.assert_array_equal(theirs[: len(own)], own)
            for row in theirs[len(own) :]:
                mirror = own[:, 1:] * [1, -1, 1, 1, 1] + [0, 1, 0, 0, 0]
                assert np.abs(mirror - row[1:]).max(1).min() < 2e-3
                pasted_boxes += 1
    assert pasted_pixels > 5000 and pasted_boxes > 20


def test_the_gpus_assembly_pastes_the_same_pixels(polygon_data):
    """The GPU graph assembles the mirror by concatenation, the CPU graph by multi_paste: the same pixels, with
    mixup (a second mosaic, with its own mask) and a rotation."""
    hyp = Hyp(copy_paste=0.5, mixup=0.5, degrees=20, scale=0.5, translate=0.2, hsv_h=0, hsv_s=0, hsv_v=0)
    planner = AugmentPlanner(open_store(polygon_data["polygons"]), 128, 4, hyp, 5, 0, 1, True, 32)
    assert planner.pastes
    outputs = {}
    for how in ("paste", "concat"):
        pipe = build(augment_graph, AugmentSource(planner, 0, "affine"), "cpu", 4, 1, warp="affine", mixup=True,
                     how=how, paste=True)  # fmt: skip
        outputs[how] = [np.array(pipe.run()[0].as_tensor()) for _ in range(3)]
        del pipe
    for a, b in zip(outputs["paste"], outputs["concat"], strict=True):
        np.testing.assert_array_equal(a, b)
    plans = [p for k in range(3) for p in planner.plan(0, k)[2]]
    assert any(p.canvas.paste for p in plans) and any(p.mix and p.mix.paste for p in plans)
    store = open_store(polygon_data["polygons"])  # no mosaics, nothing to paste: the graph without its steps
    assert not AugmentPlanner(store, 128, 4, hyp, 5, 0, 1, True, 32, rect=True).pastes
    assert not AugmentPlanner(open_store(polygon_data["boxes"]), 128, 4, hyp, 5, 0, 1, True, 32).pastes


def test_train_pastes_on_a_polygon_store_and_says_a_box_store_has_nothing_to_paste(polygon_data, tmp_path):
    from click.testing import CliRunner

    from fastload.cli import main

    for kind, warned in (("polygons", False), ("boxes", True)):
        args = ["train", "--data", polygon_data[kind], "--hyp", "hyp.scratch-high.yaml", "--epochs", "1", "--imgsz",
                "64", "--batch", "4", "--workers", "1", "--noval", "--nosave", "--noplots", "--project", str(tmp_path),
                "--name", kind, "--json"]  # fmt: skip
        result = CliRunner().invoke(main, args, catch_exceptions=False)
        assert result.exit_code == 0, result.stderr
        assert ("nothing is pasted" in result.stderr) is warned
        assert json.loads(result.stdout.strip().splitlines()[-1])["epochs"] == 1
