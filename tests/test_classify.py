"""Classification, as YOLOv5's classify/ scripts: class folders packed into a classification store, the DALI
classification loader's crops, YOLOv5's -cls models (its checkpoints read tensor for tensor), and train, val and
detect on a classifier."""

import os
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import cli
from PIL import Image

from fastload.demo_data import NAMES, DemoConfig, generate
from fastload.errors import FastloadError
from fastload.loader.classify import ClassifyAugment, center_crop, random_crop
from fastload.loader.classify_loader import ClassifyLoader, normalize
from fastload.merge import merge
from fastload.pack import PackOptions, pack
from fastload.store import open_store, read_meta
from yolo.classify import Classifier
from yolo.classify_train import ClassifyConfig, classify_config
from yolo.weights import read_weights

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> dict:
    """30 pictures (~130 x 100) of one shape each in class folders (`src`), val a copy of train (a classifier that
    learned them scores on val), packed (`store`); and a dataset of the same with strays (`stray`)."""
    root = tmp_path_factory.mktemp("classify")
    src = str(root / "shapes")
    generate(src, DemoConfig(images=30, seed=3, scale=0.2, val_fraction=0.0, classify=True))
    shutil.rmtree(os.path.join(src, "val"))
    shutil.copytree(os.path.join(src, "train"), os.path.join(src, "val"))
    store = str(root / "shapes.lmdb")
    pack(src, store, PackOptions())
    return {"root": root, "src": src, "store": store}


def test_class_folders_pack_one_row_an_image_its_folders_class(shapes, demo_store, tmp_path):
    meta = read_meta(shapes["store"])[1]
    assert meta["task"] == "classify" and meta["names"] == sorted(NAMES) and meta["pack"]["source_kind"] == "classify"
    store = open_store(shapes["store"], "train")
    assert len(store) == 30 and (store.box_counts == 1).all()
    for i in range(len(store)):
        row = store.labels(i)[0]
        assert store.names[int(row[0])] == store.path_of(i).split("/")[1]  # train/<class>/<name>.jpg
        assert row[1:].tolist() == [0.5, 0.5, 1.0, 1.0]
    # strays: a picture outside a class folder, a val class that train lacks; both skipped, the rest packed
    stray = str(tmp_path / "stray")
    shutil.copytree(shapes["src"], stray)
    first = os.path.join(stray, "train", "circle", sorted(os.listdir(os.path.join(stray, "train", "circle")))[0])
    shutil.copy(first, os.path.join(stray, "train", "loose.jpg"))
    os.makedirs(os.path.join(stray, "val", "hexagon"))
    shutil.copy(first, os.path.join(stray, "val", "hexagon", "h.jpg"))
    out = cli("pack", stray, "-o", str(tmp_path / "stray.zarr"), "--format", "zarr", "--json")
    reasons = {s["path"]: s["reason"] for s in out["skipped"]}
    assert reasons == {"train/loose.jpg": "not in a class folder", "val/hexagon": "a class folder train does not have"}
    assert out["task"] == "classify" and out["splits"]["train"]["count"] == 30
    # a store converts with its task; a classification store and a detection one do not merge
    assert cli("pack", str(tmp_path / "stray.zarr"), "-o", str(tmp_path / "back.lmdb"), "--json")["task"] == "classify"
    with pytest.raises(FastloadError, match="classification store.*do not merge"):
        merge([shapes["store"], demo_store], str(tmp_path / "m.lmdb"))


def test_a_classification_store_unpacks_into_class_folders_that_pack_into_the_same_records(shapes, tmp_path):
    out = cli("unpack", shapes["store"], "-o", str(tmp_path / "folders"), "--json")
    assert out["format"] == "classify" and out["splits"]["train"]["images"] == 30
    again = str(tmp_path / "again.lmdb")
    pack(str(tmp_path / "folders"), again, PackOptions())
    for split in ("train", "val"):
        a, b = open_store(shapes["store"], split), open_store(again, split)
        assert sorted((a.path_of(i), bytes(a.image(i)), a.labels(i).tobytes()) for i in range(len(a))) == sorted(
            (b.path_of(i), bytes(b.image(i)), b.labels(i).tobytes()) for i in range(len(b)))  # fmt: skip
    cli("unpack", shapes["store"], "-o", str(tmp_path / "coco"), "--format", "coco", code=2)


def test_a_detection_dataset_is_not_taken_for_class_folders_and_pack_options_for_objects_are_refused(
    demo_dataset, shapes, tmp_path
):
    roboflow, beside = tmp_path / "roboflow", tmp_path / "beside"  # <split>/images/ + labels/; labels beside images
    for split in ("train", "val"):
        for kind in ("images", "labels"):
            shutil.copytree(os.path.join(demo_dataset, kind, split), roboflow / split / kind)
            shutil.copytree(os.path.join(demo_dataset, kind, split), beside / split / "seq1", dirs_exist_ok=True)
    for src in (roboflow, beside):
        out = cli("pack", str(src), "-o", str(tmp_path / f"{src.name}.lmdb"), "--json")
        assert "task" not in out and out["pack"]["source_kind"] == "yolo" and out["splits"]["train"]["boxes"] > 19
    for option in (["--classes", "circle"], ["--background", "0.5"], ["--tile", "64"]):
        cli("pack", shapes["src"], "-o", str(tmp_path / "x.lmdb"), *option, code=2)


def test_crop_windows_are_randomresizedcrops_and_centre_squares():
    assert center_crop(100, 160) == (0, 30, 100, 100) and center_crop(161, 100) == (30, 0, 100, 100)
    aug = ClassifyAugment()
    rng = np.random.default_rng(0)
    for _ in range(500):
        h, w = int(rng.integers(20, 400)), int(rng.integers(20, 400))
        y, x, ch, cw = random_crop(rng, h, w, aug)
        assert 0 <= y and 0 <= x and y + ch <= h and x + cw <= w and ch > 0 and cw > 0
        if (ch, cw) != (h, w):  # a try that fitted (the fallback takes the whole picture of an aspect in range)
            assert 0.08 * h * w * 0.9 - 2 * (h + w) <= ch * cw <= h * w
    same = [random_crop(np.random.default_rng(5), 300, 200, aug) for _ in range(2)]
    assert same[0] == same[1]
    assert random_crop(np.random.default_rng(1), 10, 1000, aug)[2:] == (10, round(10 / 0.75))  # too wide: the centre


def test_the_validation_loader_gives_each_pictures_centre_crop_resized(shapes):
    store = open_store(shapes["store"], "val")
    loader = ClassifyLoader(store, 64, 7, augment=None, workers=1)
    batches = list(loader)
    assert [len(b.labels) for b in batches] == [7, 7, 7, 7, 2]
    seen = np.concatenate([b.indices for b in batches])
    assert seen.tolist() == list(range(30))
    classes = torch.cat([b.labels for b in batches]).tolist()
    assert [store.names[c] for c in classes] == [store.path_of(i).split("/")[1] for i in range(30)]
    for b in batches[:2]:
        for image, i in zip(b.images, b.indices, strict=True):
            picture = np.asarray(Image.open(os.path.join(shapes["src"], store.path_of(int(i)))).convert("RGB"))
            y, x, h, w = center_crop(*picture.shape[:2])
            crop = torch.from_numpy(picture[y : y + h, x : x + w].copy()).permute(2, 0, 1)[None].float()
            want = F.interpolate(crop, size=(64, 64), mode="bilinear", align_corners=False)[0]
            assert (image.float() - want).abs().mean() < 3  # JPEG decoders differ by a grey level or two
    x = normalize(batches[0].images)
    assert x.dtype == torch.float32 and abs(x.mean().item()) < 2


def test_training_batches_are_seeded_crops_flips_and_jitter_of_every_record(shapes):
    store = open_store(shapes["store"], "train")
    one, two = (ClassifyLoader(store, 48, 8, seed=4, workers=1) for _ in range(2))
    first = [b.images.clone() for b in one]
    assert all(torch.equal(a, b.images) for a, b in zip(first, two, strict=True))  # the same seed: the same batches
    one.set_epoch(0)
    epoch0 = list(one)
    assert sorted(np.concatenate([b.indices for b in epoch0]).tolist()) == list(range(30))  # each record once
    later = list(one)  # epoch 1: another order and other crops
    assert not np.array_equal(np.concatenate([b.indices for b in later]), np.concatenate([b.indices for b in epoch0]))
    plan = one.planner.rows(0, 0, epoch0[0].indices)
    assert plan.shape == (8, 8) and set(np.unique(plan[:, 4])) <= {0, 1}  # no vertical flips by default
    assert ((plan[:, 5:] >= 0.6) & (plan[:, 5:] <= 1.4)).all()  # brightness, contrast, saturation in 1 -+ 0.4
    rows = np.concatenate([one.planner.rows(0, k, one.planner.records(0, k)) for k in range(len(one))])
    unjittered = (rows[:, 5:] == 1).all(1).mean()
    assert 0.2 < unjittered < 0.8  # albumentations' ColorJitter on half the pictures (p 0.5)


def test_yolov5_classification_checkpoints_read_tensor_for_tensor():
    w = read_weights(os.path.join(DATA, "yolov5n-cls-3cls.pt"))
    assert (w.arch, w.names, w.source) == ("n-cls", ["circle", "rectangle", "triangle"], "yolov5")
    fixture = torch.load(os.path.join(DATA, "yolov5n-cls-3cls-output.pt"))
    model = w.model().eval()
    with torch.no_grad():
        assert torch.equal(model(fixture["input"]), fixture["output"])
        fused = model.fuse()(fixture["input"])
    assert torch.allclose(fused, fixture["output"], atol=1e-4)
    # YOLOv5's parameter counts (ClassificationModel of yolov5n.yaml / yolov5s.yaml, 1000 classes)
    assert [sum(p.numel() for p in Classifier(a, 1000).parameters()) for a in ("n-cls", "s-cls")] == [2493000, 5453480]


def test_train_takes_yolov5s_classify_defaults_for_what_is_not_given():
    detection = {"data": "s.lmdb", "imgsz": 256, "optimizer": "SGD", "batch": 16, "epochs": 0, "label_smoothing": 0.0,
                 "lr0": 0.01, "decay": 5e-4, "project": "runs/train"}  # fmt: skip
    cfg = classify_config(detection, set())
    assert cfg == ClassifyConfig(data="s.lmdb")
    assert (cfg.imgsz, cfg.optimizer, cfg.lr0, cfg.decay, cfg.label_smoothing, cfg.epochs) == (
        224, "Adam", 0.001, 5e-5, 0.1, 10)  # fmt: skip
    given = classify_config({"data": "s.lmdb", "imgsz": 96, "lr0": 0.01, "decay": 5e-4, "batch": 16}, {"imgsz", "hyp"})
    assert (given.imgsz, given.lr0, given.decay, given.batch) == (96, 0.01, 5e-4, 64)


def test_a_classifier_trains_validates_resumes_and_classifies_pictures(shapes, tmp_path):
    project = str(tmp_path / "runs")
    out = cli("train", "--data", shapes["store"], "--epochs", "2", "--imgsz", "64", "--batch", "8", "--no-augment",
              "--lr0", "0.003", "--project", project, "--json")  # fmt: skip
    assert out["task"] == "classify" and out["model"] == "n-cls" and out["epochs"] == 2
    resumed = cli("train", "--resume", out["last"], "--epochs", "30", "--json")
    assert resumed["epochs"] == 30 and resumed["last"] == out["last"]
    assert resumed["top1"] >= 0.6  # 30 pictures learned (chance: a third)
    with open(os.path.join(project, "exp", "results.csv")) as f:
        rows = f.read().splitlines()
    assert rows[0].startswith("epoch,train_loss,val_loss,top1,top5") and len(rows) == 31
    best = torch.load(out["weights"], weights_only=False)
    assert set(best) >= {"ema", "epoch", "config", "names"} and "optimizer" not in best
    val = cli("val", "--weights", out["weights"], "--json")
    assert val["task"] == "classify" and val["images"] == 30 and val["imgsz"] == 64
    assert val["top1"] == pytest.approx(best["metrics"]["top1"], abs=1e-6)
    assert val["top5"] == 1.0 and sum(c["images"] for c in val["classes"].values()) == 30
    for fmt in ("onnx", "torchscript"):  # exported (its logits), validated to the same scores
        exported = cli("export", "--weights", out["weights"], "--include", fmt, "--json")
        assert exported["output"] == [1, 3] and exported["checked"] and exported["imgsz"] == 64
        again = cli("val", "--weights", exported["path"], "--data", shapes["store"], "--json")
        assert again["top1"] == val["top1"] and again["loss"] == pytest.approx(val["loss"], abs=1e-4)
    # detect: the pictures' five likeliest classes (three here), written out
    pictures = os.path.join(shapes["src"], "val", "triangle")
    found = cli("detect", pictures, "--weights", out["weights"], "--save-txt", "--save-csv", "--project",
                str(tmp_path / "pred"), "--json")  # fmt: skip
    n = len(os.listdir(pictures))
    assert found["task"] == "classify" and found["images"] == n and sum(found["per_class"].values()) == n
    labels = sorted(os.listdir(found["labels"]))
    assert len(labels) == n
    with open(os.path.join(found["labels"], labels[0])) as f:
        lines = f.read().splitlines()
    probs = [float(line.split()[0]) for line in lines]
    assert sorted(line.split()[1] for line in lines) == sorted(NAMES) and probs == sorted(probs, reverse=True)
    assert abs(sum(probs) - 1) <= 0.02
    with open(found["csv"]) as f:
        assert len(f.read().splitlines()) == n + 1
    assert len([f for f in os.listdir(found["out"]) if f.endswith(".jpg")]) == n


def test_classification_errors_are_one_line(shapes, demo_store, tmp_path):
    yolov5_cls = os.path.join(DATA, "yolov5n-cls-3cls.pt")
    cli("val", "--weights", yolov5_cls, code=2)  # names no dataset
    cli("val", "--weights", yolov5_cls, "--data", shapes["store"], "--save-txt", code=2)
    cli("val", "--weights", yolov5_cls, "--data", demo_store, code=2)  # a detection store
    cli("val", "--weights", yolov5_cls, "--data", shapes["store"], "--task", "study", "--study-sizes", "64", code=2)
    cli("train", "--data", demo_store, "--model", "n-cls", "--epochs", "1", "--project", str(tmp_path), code=2)
    cli("detect", shapes["src"], "--weights", yolov5_cls, "--tile", "64", "--project", str(tmp_path), code=2)
    cli("detect", shapes["src"], "--weights", yolov5_cls, "--augment", "--project", str(tmp_path), code=2)
    cli("demo-data", str(tmp_path / "d"), "--classify", "--polygons", code=2)
    from yolo.predictor import Detector

    with pytest.raises(FastloadError, match="a classification model"):
        Detector(yolov5_cls)


def test_bench_and_preview_run_the_classification_loader(shapes, tmp_path):
    out = cli("bench", shapes["store"], "--batch", "8", "--batches", "2", "--workers", "1", "--json")
    assert out["task"] == "classify" and out["imgsz"] == 224 and out["images_per_sec"] > 0 and out["hyp"] is None
    picture = str(tmp_path / "p.png")
    got = cli("preview", shapes["store"], "-o", picture, "--batch", "4", "--workers", "1", "--json")
    assert got["task"] == "classify" and got["shape"] == [224, 224] and got["images"] == 4
    assert Image.open(picture).size[0] >= 2 * 224
    cli("bench", shapes["store"], "--multi-scale", "--batches", "1", code=2)


def test_flips_mirror_the_same_crops(shapes):
    store = open_store(shapes["store"], "train")
    plain, left_right, up_down = (
        next(iter(ClassifyLoader(store, 48, 6, augment=ClassifyAugment(hflip=h, vflip=v, jitter_p=0), workers=1)))
        for h, v in ((0, 0), (1, 0), (0, 1))
    )  # the same seed draws the same windows whatever the flips' probabilities
    assert np.array_equal(plain.indices, left_right.indices) and np.array_equal(plain.indices, up_down.indices)
    assert torch.equal(left_right.images, plain.images.flip(-1))
    assert torch.equal(up_down.images, plain.images.flip(-2))


def test_torchrun_trains_a_classifier_with_two_cpu_processes_over_gloo(shapes, tmp_path):
    import json
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "fastload",
           "train", "--data", shapes["store"], "--project", str(tmp_path), "--name", "ddp", "--epochs", "2", "--imgsz",
           "32", "--batch", "8", "--workers", "1", "--device", "cpu", "--json"]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    reports = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    assert len(reports) == 1 and reports[0]["rank"] == 0 and reports[0]["task"] == "classify"  # rank 0 reports
    with open(tmp_path / "ddp" / "results.csv") as f:
        assert len(f.read().splitlines()) == 3
    assert (tmp_path / "ddp" / "weights" / "last.pt").exists()


def test_weights_start_a_classifier_from_a_classifier_or_a_detectors_backbone():
    from yolo.classify_train import resolve_model

    cfg = ClassifyConfig(weights=os.path.join(DATA, "yolov5n-cls-3cls.pt"))
    model, got = resolve_model(cfg, 3)
    assert cfg.model == "n-cls" and got["transferred"] == got["total"] == 194
    cfg = ClassifyConfig(weights=os.path.join(DATA, "yolov5n-3cls.pt"))  # YOLOv5's ClassificationModel(model=...)
    model, got = resolve_model(cfg, 5)
    assert cfg.model == "n-cls" and got["transferred"] == 186 and got["total"] == 194  # all but Classify's 8
    detector = read_weights(os.path.join(DATA, "yolov5n-3cls.pt")).state
    assert torch.equal(model.state_dict()["b4.1.cv3.0.weight"], detector["b4.1.cv3.0.weight"])  # layer 8
    with pytest.raises(FastloadError, match="a classifier takes the backbone"):
        resolve_model(ClassifyConfig(weights=os.path.join(DATA, "yolov5n6-3cls.pt")), 3)


def test_yolov5s_dataset_names_fetch_its_zip_and_a_test_split_validates(shapes, tmp_path, monkeypatch):
    """`--data cifar10`, as YOLOv5's classify/train.py: its release zip fetched (here from a file:// mirror), packed
    once; cifar10 has train and test, no val: the run validates on test, and so does `val` of its weights."""
    root = tmp_path / "mirror" / "cifar10"
    shutil.copytree(os.path.join(shapes["src"], "train"), root / "train")
    shutil.copytree(os.path.join(shapes["src"], "train"), root / "test")
    shutil.make_archive(str(tmp_path / "mirror" / "cifar10"), "zip", str(tmp_path / "mirror"), "cifar10")
    monkeypatch.setenv("FASTLOAD_DATASETS_URL", f"file://{tmp_path / 'mirror'}")
    out = cli("train", "--data", "cifar10", "--epochs", "1", "--imgsz", "32", "--batch", "8", "--project",
              str(tmp_path / "runs"), "--json")  # fmt: skip
    assert out["task"] == "classify" and out["val_images"] == 30
    assert os.path.basename(os.path.dirname(read_weights(out["weights"]).config["data"])) == "stores"
    val = cli("val", "--weights", out["weights"], "--json")
    assert val["split"] == "test" and val["images"] == 30


def test_a_torchvision_classifier_trains_validates_exports_and_starts_from_its_weights(shapes, tmp_path):
    """`--model resnet18`, as YOLOv5's classify/train.py takes torchvision's models (from scratch here)."""
    out = cli("train", "--data", shapes["store"], "--model", "resnet18", "--epochs", "1", "--imgsz", "32", "--batch",
              "8", "--project", str(tmp_path), "--json")  # fmt: skip
    assert out["model"] == "resnet18" and out["epochs"] == 1
    w = read_weights(out["weights"])
    assert w.arch == "resnet18" and w.stride == 32 and sum(t.numel() for k, t in w.state.items() if "running" not in
                                                             k and "num_batches" not in k) == 11178051  # fmt: skip
    val = cli("val", "--weights", out["weights"], "--json")
    exported = cli("export", "--weights", out["weights"], "--json")
    again = cli("val", "--weights", exported["path"], "--data", shapes["store"], "--json")
    assert again["top1"] == val["top1"] and val["images"] == 30
    more = cli("train", "--data", shapes["store"], "--model", "resnet18", "--weights", out["weights"], "--epochs", "1",
               "--imgsz", "32", "--batch", "8", "--project", str(tmp_path), "--json")  # fmt: skip
    assert more["pretrained"]["transferred"] == more["pretrained"]["total"] == 122
    assert cli("model", "resnet18", "--nc", "1000", "--json")["parameters"] == 11689512  # torchvision's count
    cli("train", "--data", shapes["store"], "--model", "resnet_nine", "--project", str(tmp_path), code=2)
