"""YOLOv5's --image-weights: the weights are YOLOv5's formulas over the store's boxes and the last validation's
per-class mAPs; each epoch draws its records by them (seeded, the same on every rank); the loader's workers draw
by new weights as soon as they are set; a resumed run draws by the weights its checkpoint left."""

import json
import os
import shutil

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import cli

from fastload.cli import main
from fastload.loader.sampler import EpochSampler
from fastload.loader.train_loader import TrainLoader
from fastload.store import open_store
from yolo.image_weights import ImageWeights, class_maps, class_weights


def yolov5_labels_to_class_weights(labels: list[np.ndarray], nc: int) -> np.ndarray:
    """ultralytics/yolov5 utils/general.py labels_to_class_weights, numpy for torch."""
    labels = np.concatenate(labels, 0)
    weights = np.bincount(labels[:, 0].astype(int), minlength=nc).astype(float)
    weights[weights == 0] = 1
    weights = 1 / weights
    weights /= weights.sum()
    return weights


def yolov5_labels_to_image_weights(labels: list[np.ndarray], nc: int, class_weights: np.ndarray) -> np.ndarray:
    """ultralytics/yolov5 utils/general.py labels_to_image_weights."""
    class_counts = np.array([np.bincount(x[:, 0].astype(int), minlength=nc) for x in labels])
    return (class_weights.reshape(1, nc) * class_counts).sum(1)


def test_weights_are_yolov5s_formulas_over_the_stores_boxes(demo_store):
    store = open_store(demo_store, "train")
    nc = len(store.names)
    labels = [store.labels(i) for i in range(len(store))]
    assert sum(len(x) == 0 for x in labels) < len(labels) and nc == 3
    maps = np.array([0.1, 0.7, 0.3])
    cw = yolov5_labels_to_class_weights(labels, nc) * nc  # YOLOv5's model.class_weights
    expected = yolov5_labels_to_image_weights(labels, nc, cw * (1 - maps) ** 2 / nc)
    weigh = ImageWeights(store)
    np.testing.assert_allclose(weigh.class_weights, cw, rtol=1e-12)
    np.testing.assert_allclose(weigh(maps), expected, rtol=1e-12)
    assert (weigh(maps)[[len(x) == 0 for x in labels]] == 0).all()  # no boxes: never drawn, as YOLOv5
    # a class missing from the labels counts as one box
    np.testing.assert_allclose(class_weights(np.array([0, 0, 2]), 4), np.array([0.5, 1, 1, 1]) / 3.5 * 4)


def test_maps_are_each_classs_map_and_the_mean_where_validation_has_none():
    metrics = {"map50_95": 0.4, "classes": np.array([0, 2]), "ap": np.array([[0.6] * 10, np.linspace(0, 0.9, 10)])}
    np.testing.assert_allclose(class_maps(metrics, 4), [0.6, 0.4, 0.45, 0.4])
    assert (class_maps({}, 3) == 0).all()  # before any validation


def test_an_epoch_draws_by_the_weights_seeded_and_split_over_ranks():
    weights = np.array([0, 0, 1, 1, 1, 1, 1, 1, 1, 5], float)
    sampler = EpochSampler(10, seed=4)
    sampler.set_weights(weights)
    draws = np.concatenate([sampler.order(e) for e in range(400)])
    assert len(sampler.order(0)) == 10 and not np.isin(draws, [0, 1]).any()
    assert np.bincount(draws, minlength=10)[9] / len(draws) == pytest.approx(5 / 12, rel=0.05)
    assert (sampler.order(3) == sampler.order(3)).all() and (sampler.order(3) != sampler.order(4)).any()
    ranks = [EpochSampler(10, seed=4, rank=r, world=3) for r in range(3)]
    for r in ranks:
        r.set_weights(weights)
    padded = np.resize(sampler.order(2), 12)
    assert sorted(np.concatenate([r.indices(2) for r in ranks])) == sorted(padded)
    sampler.set_weights(np.zeros(10))  # nothing weighs anything: uniform
    assert len(np.unique(np.concatenate([sampler.order(e) for e in range(20)]))) == 10
    sampler.set_weights(None)
    assert sorted(sampler.order(0)) == list(range(10))  # a permutation again
    for bad in (np.ones(9), np.array([1.0] * 9 + [-1]), np.array([1.0] * 9 + [np.nan])):
        with pytest.raises(ValueError, match="10 finite weights"):
            sampler.set_weights(bad)


def test_the_loaders_workers_draw_by_new_weights_at_once(demo_store):
    store = open_store(demo_store, "train")
    loader = TrainLoader(store, 64, 4, workers=1, seed=5)
    first = np.concatenate([b.indices for b in loader])  # epoch 0: a permutation (the workers run ahead into 1)
    assert sorted(first[: len(store)]) == list(range(len(store)))
    weights = np.zeros(len(store))
    weights[[2, 7]] = 1
    loader.set_weights(weights)
    second = list(loader)  # epoch 1
    assert set(np.concatenate([b.indices for b in second]).tolist()) <= {2, 7}
    fresh = TrainLoader(store, 64, 4, workers=1, seed=5)  # its workers start with the weights
    fresh.set_weights(weights)
    fresh.set_epoch(1)
    for a, b in zip(second, fresh, strict=True):
        assert (a.indices == b.indices).all() and torch.equal(a.images, b.images) and torch.equal(a.targets, b.targets)


def test_a_run_draws_by_its_validation_and_resumes_with_it(overfit, tmp_path):
    """Fine-tuning the overfit model with --image-weights: the checkpoint's maps are the validation's per-class
    mAPs, and a run resumed from epoch 0's checkpoint (which holds them) ends with the uninterrupted run's weights.
    `--cache` and `--sync-bn` (no CUDA here) are accepted and say why they change nothing."""
    data = torch.load(overfit["weights"], map_location="cpu", weights_only=False)["config"]["data"]
    args = ["train", "--data", data, "--weights", overfit["weights"], "--image-weights", "--epochs", "2", "--imgsz",
            "160", "--batch", "4", "--nominal-batch", "4", "--workers", "1", "--noplots", "--noautoanchor",
            "--save-period", "1", "--project", str(tmp_path), "--name", "w"]  # fmt: skip
    result = CliRunner().invoke(main, [*args, "--cache", "--sync-bn", "--json"])
    assert result.exit_code == 0, result.output[-2000:]
    assert "--cache: nothing to do" in result.stderr and "--sync-bn: no effect here" in result.stderr
    got = json.loads(result.stdout.strip().splitlines()[-1])
    weights = tmp_path / "w" / "weights"
    epoch0 = torch.load(weights / "epoch0.pt", map_location="cpu", weights_only=False)
    assert epoch0["config"]["image_weights"] and len(epoch0["maps"]) == 3
    assert len(set(epoch0["maps"])) > 1  # classes detected unequally: the draw of epoch 1 depends on them
    # the last epoch's validation (of last.pt's EMA weights, at the trainer's validation batch) gave its maps
    val = cli("val", "--weights", str(weights / "last.pt"), "--imgsz", "160", "--batch", "8", "--json")
    assert val["map50_95"] == pytest.approx(got["map50_95"], abs=1e-9)
    last = torch.load(weights / "last.pt", map_location="cpu", weights_only=False)
    per_class = {row["name"]: row["map50_95"] for row in val["classes"][1:]}  # [0] is "all"
    np.testing.assert_allclose(last["maps"], [per_class.get(n, val["map50_95"]) for n in last["names"]], atol=1e-9)
    straight = str(tmp_path / "straight.pt")
    shutil.copy(weights / "last.pt", straight)
    resumed = cli("train", "--resume", str(weights / "epoch0.pt"), "--epochs", "2", "--json")
    assert resumed["epochs"] == 2
    a = torch.load(straight, map_location="cpu", weights_only=False)
    b = torch.load(os.path.join(weights, "last.pt"), map_location="cpu", weights_only=False)
    for name, t in a["model"].items():
        assert torch.allclose(t.float(), b["model"][name].float(), rtol=1e-6, atol=1e-6), name
