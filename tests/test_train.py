"""The trainer on a tiny packed dataset (CPU): results.csv and atomic weights; a run killed with SIGKILL after an
epoch resumes from last.pt and ends with the same weights as an uninterrupted run; `fastload val` reads them."""

import csv
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner
from conftest import children, cli
from PIL import Image

from fastload.cli import main
from fastload.loader.augment import Hyp
from fastload.loader.sources import AugmentPlanner
from fastload.store import open_store
from yolo.hyp import read_hyp
from yolo.model import YOLOv5
from yolo.rundir import new_run_dir
from yolo.runlog import TAGS
from yolo.stopping import EarlyStop
from yolo.train import TrainConfig, train
from yolo.weights import read_weights

BACKBONE = ("b0", "b1", "b2", "b3", "b4")  # YOLOv5's layers 0-9

ARGS = dict(model="n", epochs=2, imgsz=64, batch=8, workers=1, seed=3)


def rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_a_run_writes_results_and_weights_atomically(demo_store, tmp_path):
    config = TrainConfig(data=demo_store, project=str(tmp_path), name="a", val_fraction=0.5, **ARGS)
    result = train(config, progress=False)
    assert result["val_images"] == 3  # a fixed half of the 5 val images
    table = rows(result["results"])
    assert [r["epoch"] for r in table] == ["0", "1"]
    assert {"box_loss", "map50", "map50_95", "lr0", "data_wait_s", "compute_s", "val_s", "checkpoint_s",
            "val_box_loss", "val_obj_loss", "val_cls_loss"} <= set(table[0])  # fmt: skip
    assert all(float(r["val_box_loss"]) > 0 for r in table)
    assert (tmp_path / "a" / "results.png").stat().st_size > 10_000
    for picture in ("train_batch0", "train_batch1", "val_batch0_labels", "val_batch0_pred", "labels"):  # as YOLOv5's
        assert Image.open(tmp_path / "a" / f"{picture}.jpg").size[0] >= 64, picture
    for curve in ("confusion_matrix", "PR_curve", "F1_curve", "P_curve", "R_curve"):  # the last validation's
        assert (tmp_path / "a" / f"{curve}.png").stat().st_size > 10_000, curve
    weights = os.listdir(tmp_path / "a" / "weights")
    assert sorted(weights) == ["best.pt", "last.pt"]  # no temporary names left
    best = torch.load(result["weights"], map_location="cpu", weights_only=False)  # the EMA weights alone, as
    assert sorted(best) == ["best_epoch", "best_fitness", "config", "ema", "epoch", "maps", "metrics", "names"]
    assert os.path.getsize(result["weights"]) < 0.5 * os.path.getsize(result["last"])  # YOLOv5 strips best.pt
    ckpt = torch.load(result["last"], map_location="cpu", weights_only=False)
    assert ckpt["epoch"] == 1 and {"model", "ema", "optimizer", "scaler", "rng", "config"} <= set(ckpt)
    assert 0 <= result["map50"] <= 1 and 0 <= result["data_wait_fraction"] < 1
    assert result["loader_startup_s"] > 0  # the first batch of the run: workers and pipeline start, booked apart
    # TensorBoard has results.csv's values under YOLOv5's tags
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    board = EventAccumulator(str(tmp_path / "a")).Reload()
    for column, tag in TAGS.items():
        logged = [(e.step, e.value) for e in board.Scalars(tag)]
        assert logged == [(int(r["epoch"]), pytest.approx(float(r[column]), rel=1e-5)) for r in table], tag


def test_ctrl_c_stops_a_run_with_one_line_saying_what_last_pt_keeps(demo_store, tmp_path):
    """SIGINT to the whole process group, as Ctrl-C sends it, after an epoch: the DALI workers ignore it, the trainer
    says in one line how many epochs last.pt keeps (exit 130), and no process of the run is left."""
    cmd = [sys.executable, "-m", "fastload", "train", "--data", demo_store, "--project", str(tmp_path), "--name",
           "stopped"] + [x for k, v in {**ARGS, "epochs": 50}.items() for x in (f"--{k}", str(v))]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    results = tmp_path / "stopped" / "results.csv"
    deadline = time.time() + 300
    while time.time() < deadline and not (results.exists() and len(rows(results)) >= 1):
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    last = tmp_path / "stopped" / "weights" / "last.pt"
    kept = torch.load(last, map_location="cpu", weights_only=False)["epoch"] + 1
    assert proc.returncode == 130 and "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert (
        err.strip().splitlines()[-1]
        == f"Error: interrupted; {last} keeps {kept} trained epoch{'s' * (kept > 1)} (--resume it)"
    )
    assert kept >= 1 and len(rows(results)) in (kept, kept - 1)  # last.pt is saved before the epoch is logged
    assert group_ends(proc.pid), "the run's worker processes outlived it"


def group_ends(pgid: int, seconds: float = 30) -> bool:
    """Whether every process of the group is gone within `seconds`."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.2)
    return False


def ctrl_c_as(cmd: list[str], started) -> tuple[int, str, bool]:
    """Run `cmd` in a process group of its own and press Ctrl-C as soon as `started(pid)` holds (polled every
    2 ms): its exit code, its stderr, and whether its whole group ended."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and not started(proc.pid):
        time.sleep(0.002)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err, group_ends(proc.pid)


def test_ctrl_c_while_the_loader_starts_its_workers_stops_the_run(demo_store, tmp_path):
    """Ctrl-C as the first DALI source worker is forked: held while the workers start, then it stops the run (it
    was dropped, and the run went on, while the workers were started with SIGINT ignored)."""
    cmd = [sys.executable, "-m", "fastload", "train", "--data", demo_store, "--project", str(tmp_path)] + [
        x for k, v in {**ARGS, "epochs": 50}.items() for x in (f"--{k}", str(v))]  # fmt: skip
    code, err, ended = ctrl_c_as(cmd, children)
    assert code == 130 and "Traceback" not in err, err
    assert err.strip().splitlines()[-1].startswith("Error: interrupted")
    assert ended, "the run's worker processes outlived it"


SPAWNED_LOADER = """
import sys
from fastload.loader.val_loader import ValLoader
from fastload.store import open_store
try:
    loader = ValLoader(open_store(sys.argv[1], "val"), 64, 2, workers=2, start_method="spawn")
    for _ in range(20):
        for batch in loader:
            pass
except KeyboardInterrupt:
    sys.exit(130)
"""


def spawned(pid: int) -> list[int]:
    """The children of `pid` that multiprocessing spawned as workers."""
    out = []
    for child in children(pid):
        try:
            with open(f"/proc/{child}/cmdline", "rb") as f:
                out += [child] if b"spawn_main" in f.read() else []
        except OSError:
            continue
    return out


def test_ctrl_c_while_spawned_workers_start_stops_the_loader(demo_store):
    """As CUDA runs start DALI's source workers (spawned): a Ctrl-C as the first starts is held and then raised (it
    was lost while they started with SIGINT ignored, and the loader went on); the workers inherit it blocked, so
    none prints a KeyboardInterrupt."""
    code, err, ended = ctrl_c_as([sys.executable, "-c", SPAWNED_LOADER, demo_store], spawned)
    assert code == 130 and "KeyboardInterrupt" not in err, err
    assert ended, "the spawned workers outlived the loader"


def test_killed_run_resumes_to_the_same_weights(demo_store, tmp_path):
    straight = train(TrainConfig(data=demo_store, project=str(tmp_path), name="straight", **ARGS), progress=False)
    cmd = [sys.executable, "-m", "fastload", "train", "--data", demo_store, "--project", str(tmp_path), "--name",
           "killed"] + [x for k, v in ARGS.items() for x in (f"--{k}", str(v))]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    results = tmp_path / "killed" / "results.csv"
    deadline = time.time() + 300
    while time.time() < deadline and not (results.exists() and len(rows(results)) >= 1):
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # the trainer and its DALI workers, mid-way through epoch 2
    proc.wait()
    assert len(rows(results)) == 1
    last = tmp_path / "killed" / "weights" / "last.pt"
    # as YOLOv5's bare --resume: the newest last.pt under --project, trained to its run's own --epochs
    subprocess.run([sys.executable, "-m", "fastload", "train", "--resume", "--project", str(tmp_path)], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    assert [r["epoch"] for r in rows(results)] == ["0", "1"]
    a = torch.load(straight["last"], map_location="cpu", weights_only=False)
    b = torch.load(last, map_location="cpu", weights_only=False)
    for key in ("model", "ema"):
        for name, t in a[key].items():
            assert torch.allclose(t.float(), b[key][name].float(), rtol=1e-6, atol=1e-6), (key, name)


@pytest.fixture(scope="module")
def one_epoch(demo_dataset, tmp_path_factory):
    """One epoch on the dataset folder itself (packed into runs/stores/ beside the project), asked for at 40 px:
    trained (and checkpointed) at 64, the next multiple of the stride."""
    project = str(tmp_path_factory.mktemp("runs") / "train")
    return train(TrainConfig(data=demo_dataset, project=project, name="v", **{**ARGS, "epochs": 1, "imgsz": 40}),
                 progress=False)  # fmt: skip


def test_fastload_val_reads_a_checkpoint(one_epoch, demo_dataset, tmp_path):
    config = torch.load(one_epoch["last"], map_location="cpu", weights_only=False)["config"]
    runs = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(one_epoch["last"]))))  # runs/train/v/weights
    assert config["imgsz"] == 64 and os.path.dirname(config["data"]) == os.path.join(runs, "stores")
    for data in ([], ["--data", demo_dataset]):  # the checkpoint's store; the dataset folder, packed again here
        out = subprocess.run([sys.executable, "-m", "fastload", "val", "--weights", one_epoch["weights"], *data,
                              "--json"], capture_output=True, text=True, check=True, cwd=tmp_path)  # fmt: skip
        got = json.loads(out.stdout.strip().splitlines()[-1])
        assert got["images"] == 5 and abs(got["map50"] - one_epoch["map50"]) < 1e-9
    assert len(os.listdir(tmp_path / "runs" / "stores")) == 1


def test_a_run_whose_store_a_later_pack_replaced_validates_and_resumes_on_its_dataset(demo_dataset, tmp_path, capsys):
    """The dataset changed after the run and packing it again removed the run's store: `val` and `--resume` pack
    the dataset as it is now (the checkpoint names it) instead of failing on the missing store. (And --no-overlap
    on a detection model is said to change nothing.)"""
    from fastload.pack.cache import ensure_store, release

    data = str(tmp_path / "data")
    shutil.copytree(demo_dataset, data)
    project = str(tmp_path / "runs" / "train")
    run = train(TrainConfig(data=data, project=project, name="v", no_overlap=True, **{**ARGS, "epochs": 1}))
    said = capsys.readouterr().err
    assert "packed " in said and "model n is a detection model: --mask-ratio and --no-overlap change nothing" in said
    config = torch.load(run["last"], map_location="cpu", weights_only=False)["config"]
    assert config["dataset"] == data and os.path.exists(config["data"])
    boxes = int(open_store(config["data"], "val").box_counts.sum())
    label = os.path.join(data, "labels", "val", sorted(os.listdir(os.path.join(data, "labels", "val")))[0])
    with open(label, "a") as f:
        f.write("0 0.5 0.5 0.2 0.2\n")
    release(config["data"])  # this process's run is over
    new, report = ensure_store(data, str(tmp_path / "runs" / "stores"))
    assert report["pack"]["pruned"] == [config["data"]] and not os.path.exists(config["data"])
    out = subprocess.run([sys.executable, "-m", "fastload", "val", "--weights", run["weights"], "--json"],
                         capture_output=True, text=True, check=True, cwd=tmp_path)  # fmt: skip
    got = json.loads(out.stdout)
    assert "gone (its dataset changed since" in out.stderr and got["images"] == 5
    assert got["classes"][0]["instances"] == boxes + 1  # the val split as it is now: one box more
    resumed = train(TrainConfig(resume=run["last"], epochs=2), progress=False)
    config = torch.load(resumed["last"], map_location="cpu", weights_only=False)["config"]
    assert config["data"] == new and config["dataset"] == data


def test_user_mistakes_are_one_line_errors_and_the_checkpoint_is_kept(one_epoch, tmp_path):
    last = one_epoch["last"]
    before = open(last, "rb").read()
    garbage = tmp_path / "garbage.pt"
    garbage.write_text("not a checkpoint")
    foreign = str(tmp_path / "foreign.pt")
    torch.save({"state_dict": {}}, foreign)
    mistakes = {
        ("train", "--resume", str(garbage)): "garbage.pt: not a fastload checkpoint (",
        ("train", "--resume", last, "--epochs", "1"): "last.pt: already trained 1 of 1 epochs; ask for more with",
        ("train", "--resume", last): "last.pt: already trained 1 of 1 epochs; ask for more with",  # its own total
        ("train", "--resume", one_epoch["weights"], "--epochs", "2"): "best.pt: holds the weights only, as best.pt",
        ("val", "--weights", foreign): "foreign.pt: not a fastload or YOLOv5 checkpoint (no model)",
        ("val", "--weights", str(tmp_path / "none.pt")): "none.pt: no such checkpoint",
        ("val", "--weights", last, "--device", "cuda:99"): "--device cuda:99: this machine has ",
        ("train", "--device", "cuda:99"): "--device cuda:99: this machine has ",
        ("train", "--data", str(tmp_path / "nowhere.lmdb")): "nowhere.lmdb: no such store or dataset",
        ("train", "--data", str(garbage)): "garbage.pt: not a fastload store (",
        ("bench", "--device", "gpu"): "--device must be cpu, cuda or cuda:N, not 'gpu'",
        ("train", "--val-interval", "0"): "Invalid value for '--val-interval'",
        ("train", "--epochs", "0"): "Invalid value for '--epochs'",
        ("train", "--model", "yolov5q"): "Invalid value for '--model'",
        ("train", "--model", "yolov5s", "--data", str(tmp_path / "nowhere")): "nowhere: no such store or dataset",
    }
    for args, message in mistakes.items():
        result = CliRunner().invoke(main, list(args))
        lines = result.stderr.strip().splitlines()
        assert result.exit_code == 2 and message in lines[-1] and "Traceback" not in result.output, (args, lines)
    assert open(last, "rb").read() == before


def test_a_full_disk_stops_a_run_with_one_line_and_last_pt_whole(demo_store, tmp_path):
    """The second epoch's epochN.pt meets a full disk (its temporary file is /dev/full): one line naming the file and
    how many epochs last.pt keeps, exit 1; no partial file is left and last.pt loads."""
    weights = tmp_path / "full" / "weights"
    weights.mkdir(parents=True)
    os.symlink("/dev/full", weights / f"epoch1.pt.partial-{os.getpid()}")  # this process trains (CliRunner)
    args = [x for k, v in ARGS.items() for x in (f"--{k}", str(v))]
    result = CliRunner().invoke(main, ["train", "--data", demo_store, "--project", str(tmp_path), "--name", "full",
                                       "--exist-ok", "--save-period", "1", *args])  # fmt: skip
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert result.stderr.strip().splitlines()[-1] == (
        f"Error: {weights / 'epoch1.pt'}: No space left on device; {weights / 'last.pt'} keeps 2 trained epochs "
        "(--resume it)"
    )
    assert sorted(os.listdir(weights)) == ["best.pt", "epoch0.pt", "last.pt"]
    assert torch.load(weights / "last.pt", map_location="cpu", weights_only=False)["epoch"] == 1


def test_a_dataset_without_labels_is_refused_before_a_run_folder(demo_dataset, tmp_path):
    """Images without their labels/ folder: pack says how many images have no label file (and YOLOv5's rule for
    finding them); train refuses, as YOLOv5 does, with one line and no run folder."""
    shutil.copytree(os.path.join(demo_dataset, "images"), tmp_path / "bare" / "images")
    packed = CliRunner().invoke(main, ["pack", str(tmp_path / "bare"), "-o", str(tmp_path / "bare.lmdb")])
    assert packed.exit_code == 0
    lines = packed.stderr.strip().splitlines()
    assert lines[-2].startswith("  train: 19 of 19 images have no label file, packed without boxes (YOLOv5's rule")
    assert lines[-1].startswith("  val: 5 of 5 images have no label file")
    project = tmp_path / "runs"
    result = CliRunner().invoke(main, ["train", "--data", str(tmp_path / "bare.lmdb"), "--project", str(project)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.stderr.strip().splitlines()[-1] == (
        f"Error: {tmp_path / 'bare.lmdb'}: no boxes in the train split (19 images, 19 without a label file; see "
        f"`fastload info {tmp_path / 'bare.lmdb'}`): nothing to learn"
    )
    assert not project.exists()
    shutil.copytree(demo_dataset, tmp_path / "half")  # labelled train, unlabelled val: a warning, and it trains
    shutil.rmtree(tmp_path / "half" / "labels" / "val")
    args = [x for k, v in {**ARGS, "epochs": 1}.items() for x in (f"--{k}", str(v))]
    result = CliRunner().invoke(main, ["train", "--data", str(tmp_path / "half"), "--project", str(project), *args])
    assert result.exit_code == 0 and "warning: no boxes in " in result.stderr
    assert "'s val split (5 images): every mAP will be 0 and best.pt the last epoch's" in result.stderr


def test_a_new_run_never_writes_over_an_earlier_one(one_epoch, tmp_path):
    """As YOLOv5's runs: the same --project/--name again goes to name2 (recorded in its checkpoint, so --resume
    finds it), --exist-ok writes into the name itself, and the earlier run's weights stay as they were."""
    first = one_epoch["weights"]
    before = open(first, "rb").read()
    project = os.path.dirname(os.path.dirname(os.path.dirname(first)))  # <project>/v/weights/best.pt
    data = torch.load(first, map_location="cpu", weights_only=False)["config"]["data"]
    again = train(TrainConfig(data=data, project=project, name="v", **{**ARGS, "epochs": 1}), progress=False)
    assert again["weights"] == os.path.join(project, "v2", "weights", "best.pt") and open(first, "rb").read() == before
    assert torch.load(again["last"], map_location="cpu", weights_only=False)["config"]["name"] == "v2"
    for expected in ("x", "x2", "x3"):
        assert new_run_dir(str(tmp_path), "x") == str(tmp_path / expected) and (tmp_path / expected).is_dir()
    assert new_run_dir(str(tmp_path), "x", exist_ok=True) == str(tmp_path / "x")


def test_single_cls_trains_one_class_and_val_follows_the_checkpoint(demo_store, tmp_path):
    """YOLOv5's --single-cls: a one-class model named "item" over every box; `fastload val` reads the store the same
    way because the checkpoint says so; the store itself is unchanged."""
    result = train(TrainConfig(data=demo_store, project=str(tmp_path), name="one", single_cls=True,
                               **{**ARGS, "epochs": 1}), progress=False)  # fmt: skip
    last = torch.load(result["last"], map_location="cpu", weights_only=False)
    assert last["names"] == ["item"] and last["model"]["detect.m.0.weight"].shape[0] == 3 * (5 + 1)
    store = open_store(demo_store, "val")
    classes = {int(c) for i in range(len(store)) for c in store.labels(i)[:, 0]}
    assert len(classes) > 1 and store.names == ["circle", "rectangle", "triangle"]  # as packed
    got = cli("val", "--weights", result["weights"], "--json")
    one = store.single_class()
    assert [c["name"] for c in got["classes"]] == ["all", "item"] and one.names == ["item"]
    assert got["classes"][1]["instances"] == sum(len(store.labels(i)) for i in range(len(store)))
    assert all((one.labels(i)[:, 0] == 0).all() and np.array_equal(one.labels(i)[:, 1:], store.labels(i)[:, 1:])
               for i in range(len(store)))  # fmt: skip


def test_noval_nosave_noautoanchor_noplots_as_yolov5s(demo_store, tmp_path):
    options = [x for k, v in ARGS.items() for x in (f"--{k}", str(v))]
    got = cli("train", "--data", demo_store, "--noval", "--nosave", "--noautoanchor", "--noplots", "--project",
              str(tmp_path), "--name", "quiet", "--json", *options)  # fmt: skip
    run = tmp_path / "quiet"
    table = rows(run / "results.csv")
    assert [float(r["val_s"]) > 0 for r in table] == [False, True]  # only the last epoch validated
    assert float(table[0]["checkpoint_s"]) < 0.2 * float(table[1]["checkpoint_s"])  # and checkpointed
    assert got["autoanchor"] is None and got["epochs"] == 2
    pictures = [f for f in os.listdir(run) if f.endswith((".jpg", ".png"))]
    assert pictures == [] and sorted(os.listdir(run / "weights")) == ["best.pt", "last.pt"]


def test_yolov5s_command_lines_run_as_they_are(demo_store, demo_dataset, tmp_path):
    """YOLOv5's flag names (--cfg, --img, --batch-size, --cos-lr, --device N, a bare --resume, --conf-thres,
    --iou-thres, --source) mean what they mean there."""
    project = str(tmp_path / "runs")
    cli("train", "--data", demo_store, "--cfg", "models/yolov5n.yaml", "--img", "64", "--batch-size", "8", "--cos-lr",
        "--epochs", "1", "--workers", "1", "--project", project, "--name", "y")  # fmt: skip
    opt = yaml.safe_load((tmp_path / "runs" / "y" / "opt.yaml").read_text())
    assert (opt["model"], opt["imgsz"], opt["batch"], opt["cosine"]) == ("n", 64, 8, True)
    resumed = cli("train", "--resume", "--epochs", "2", "--project", project, "--json")  # the newest last.pt
    assert resumed["epochs"] == 2 and len(rows(tmp_path / "runs" / "y" / "results.csv")) == 2
    weights = resumed["weights"]
    got = cli("val", "--weights", weights, "--batch-size", "4", "--img", "64", "--conf-thres", "0.01", "--iou-thres",
              "0.5", "--task", "val", "--half", "--json")  # fmt: skip
    assert got["images"] == 5
    speed = cli("val", "--weights", weights, "--img", "64", "--task", "speed", "--json")  # detect.py's thresholds
    assert speed["images"] == 5 and (speed["split"], speed["conf"], speed["iou"]) == ("val", 0.25, 0.45)
    found = cli("detect", "--source", os.path.join(demo_dataset, "images", "val"), "--weights", weights, "--img", "64",
                "--conf-thres", "0.001", "--project", str(tmp_path / "detect"), "--nosave", "--half",
                "--json")  # fmt: skip
    assert found["images"] == 5 and found["conf"] == 0.001 and found["imgsz"] == 64
    mistakes = {
        ("train", "--device", "0"): "--device cuda:0: this machine has no CUDA device",
        ("train", "--device", "0,1"): "torchrun --nproc-per-node 2 -m fastload",
        ("train", "--cfg", "models/yolov5q.yaml"): "Invalid value for '--model'",
        ("train", "--resume", "--project", str(tmp_path / "none")): "--resume: no ",
        ("detect", "--weights", weights): "give the images: SOURCES... or --source PATH",
    }
    for args, message in mistakes.items():
        result = CliRunner().invoke(main, list(args))
        lines = result.stderr.strip().splitlines()
        assert result.exit_code == 2 and message in lines[-1] and "Traceback" not in result.output, (args, lines)


def test_rect_trains_on_rectangles_and_refuses_image_weights(demo_store, tmp_path):
    """--rect: the first batch the model got (train_batch0.jpg, a grid of its images) has the rectangle of YOLOv5's
    rect batch it holds."""
    got = cli("train", "--data", demo_store, "--rect", "--epochs", "1", "--imgsz", "128", "--batch", "8", "--workers",
              "1", "--project", str(tmp_path), "--name", "r", "--json")  # fmt: skip
    assert got["epochs"] == 1 and yaml.safe_load((tmp_path / "r" / "opt.yaml").read_text())["rect"]
    planner = AugmentPlanner(open_store(demo_store), 128, 8, Hyp(), 0, 0, 1, False, 32, rect=True)
    shapes = {planner.size(0, k) for k in range(len(planner))}
    assert any(h != w for h, w in shapes)  # the demo's 4:3 images: some batches are rectangles
    (h, w), n = planner.size(0, 0), len(planner.records(0, 0))
    cols = math.ceil(math.sqrt(n))
    with Image.open(tmp_path / "r" / "train_batch0.jpg") as grid:
        assert grid.size == (cols * w, math.ceil(n / cols) * h)
    result = CliRunner().invoke(main, ["train", "--data", demo_store, "--rect", "--image-weights"])
    assert result.exit_code == 2 and "--rect keeps fixed batches" in result.stderr.strip().splitlines()[-1]


def test_quad_trains_on_images_of_twice_the_side_and_needs_a_batch_of_4(demo_store, tmp_path):
    """--quad: the model gets a quarter of the batch at twice the side (train_batch0.jpg: 2 images of 128 px from
    a batch of 8 at 64); a batch under 4 is refused before the run starts."""
    got = cli("train", "--data", demo_store, "--quad", "--epochs", "1", "--imgsz", "64", "--batch", "8", "--workers",
              "1", "--project", str(tmp_path), "--name", "q", "--json")  # fmt: skip
    assert got["epochs"] == 1 and yaml.safe_load((tmp_path / "q" / "opt.yaml").read_text())["quad"]
    assert math.isfinite(float(rows(got["results"])[-1]["box_loss"])) and got["skipped_steps"] == 0
    with Image.open(tmp_path / "q" / "train_batch0.jpg") as grid:
        assert grid.size == (2 * 128, 128)
    result = CliRunner().invoke(main, ["train", "--data", demo_store, "--quad", "--batch", "2"])
    line = result.stderr.strip().splitlines()[-1]
    assert result.exit_code == 2 and "--quad makes one image of each 4: --batch 2" in line


def test_a_hyp_file_optimizer_frozen_layers_and_patience_shape_the_run(one_epoch, tmp_path):
    """`--hyp` (with YOLOv5's `anchors: 3` and a focal loss), `--optimizer Adam`, `--label-smoothing`, `--freeze 10`
    from a checkpoint, `--save-period 1` and `--patience 1`: the run's hyp.yaml and opt.yaml say so, the backbone
    keeps the starting weights while the head moves, each epoch keeps its weights, and the run stops where YOLOv5's
    EarlyStopping stops over results.csv's fitness."""
    hyp = tmp_path / "hyp.yaml"
    hyp.write_text("lr0: 0.02\nwarmup_epochs: 0\nfl_gamma: 1.5\nanchors: 3\nmosaic: 0.5\n")
    data = torch.load(one_epoch["last"], map_location="cpu", weights_only=False)["config"]["data"]
    args = ["train", "--data", data, "--weights", one_epoch["last"], "--hyp", str(hyp), "--optimizer", "Adam",
            "--label-smoothing", "0.1", "--freeze", "10", "--save-period", "1", "--patience", "1", "--epochs", "4",
            "--imgsz", "64", "--batch", "8", "--nominal-batch", "8", "--workers", "1", "--project", str(tmp_path),
            "--name", "h", "--json"]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output[-2000:]
    got = json.loads(result.stdout.strip().splitlines()[-1])
    run = tmp_path / "h"
    assert read_hyp(str(run / "hyp.yaml")) == read_hyp(str(hyp)) and got["autoanchor"]["changed"]
    opt = yaml.safe_load((run / "opt.yaml").read_text())
    assert (opt["optimizer"], opt["freeze"], opt["label_smoothing"], opt["hyp"]["fl_gamma"]) == ("Adam", 10, 0.1, 1.5)
    last = torch.load(run / "weights" / "last.pt", map_location="cpu", weights_only=False)
    assert "betas" in last["optimizer"]["param_groups"][0] and "nesterov" not in last["optimizer"]["param_groups"][0]
    start = read_weights(one_epoch["last"]).state
    backbone = [name for name, _ in YOLOv5("n", nc=3).named_parameters() if name.split(".")[0] in BACKBONE]
    assert len(backbone) > 50 and all(torch.equal(last["model"][name], start[name]) for name in backbone)
    assert not torch.equal(last["model"]["detect.m.0.weight"], start["detect.m.0.weight"])
    epochs = got["epochs"]
    kept = ["best.pt", "last.pt", *(f"epoch{e}.pt" for e in range(epochs))]
    assert sorted(os.listdir(run / "weights")) == sorted(kept)
    stopper, expected = EarlyStop(patience=1), 4
    for row in rows(run / "results.csv"):
        stopper.update(int(row["epoch"]), 0.1 * float(row["map50"]) + 0.9 * float(row["map50_95"]))
        if stopper.due(int(row["epoch"])) and int(row["epoch"]) < 3:
            expected = int(row["epoch"]) + 1
            break
    assert len(rows(run / "results.csv")) == epochs == expected and got["stopped_early"] == (epochs < 4)
    assert got["best_epoch"] == stopper.best_epoch


def test_torchrun_trains_with_two_cpu_processes_over_gloo(demo_store, tmp_path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "fastload",
           "train", "--data", demo_store, "--project", str(tmp_path), "--name", "ddp", "--epochs", "2", "--imgsz",
           "64", "--batch", "8", "--workers", "1", "--device", "cpu", "--image-weights", "--json"]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    reports = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    assert len(reports) == 1 and reports[0]["rank"] == 0 and reports[0]["epochs"] == 2  # rank 0 alone reports
    assert len(rows(tmp_path / "ddp" / "results.csv")) == 2  # --image-weights: rank 0's maps reached rank 1
    assert (tmp_path / "ddp" / "weights" / "last.pt").exists()


def test_sync_bn_keeps_the_checkpoints_names_and_the_eval_output():
    """--sync-bn's SyncBatchNorm (CUDA ranks only) holds the same tensors under the same names: its checkpoints load
    into the plain model that `fastload val`, `detect` and `export` build."""
    model = YOLOv5("n", nc=3).eval()
    x = torch.rand(1, 3, 64, 64)
    plain = [t.clone() for t in model(x)[1]]
    synced = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    assert any(isinstance(m, torch.nn.SyncBatchNorm) for m in synced.modules())
    fresh = YOLOv5("n", nc=3).eval()
    fresh.load_state_dict(synced.state_dict())  # strict: every name matches
    assert all(torch.equal(a, b) for a, b in zip(plain, fresh(x)[1], strict=True))


def test_overfits_16_images(overfit):
    """16 demo images, trained and validated on themselves (letterbox only): the model must learn them, and its
    validation losses (YOLOv5's val/*_loss, the same images) end far below the first epoch's training losses."""
    assert overfit["map50"] >= 0.8, overfit
    table = rows(overfit["results"])
    first, last = table[0], table[-1]
    for term in ("box", "obj", "cls"):
        assert 0 < float(last[f"val_{term}_loss"]) < 0.5 * float(first[f"{term}_loss"]), (term, first, last)
    assert float(table[-2]["val_box_loss"]) == 0  # none before the first validation (as the mAP columns)


def test_a_dataset_without_a_val_split_is_refused_with_how_to_give_it_one(demo_dataset, tmp_path):
    """A YOLO folder of train images only: YOLOv5 will not start without a val set either; train says so in one line
    naming the dataset and the store it packed, before a run folder."""
    for part in ("images", "labels"):
        shutil.copytree(os.path.join(demo_dataset, part, "train"), tmp_path / "only" / part / "train")
    project = tmp_path / "runs" / "train"
    result = CliRunner().invoke(main, ["train", "--data", str(tmp_path / "only"), "--project", str(project)])
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    (store,) = os.listdir(tmp_path / "runs" / "stores")
    assert result.stderr.strip().splitlines()[-1] == (
        f"Error: {tmp_path / 'only'} (packed as {tmp_path / 'runs' / 'stores' / store}): no 'val' split (has train); "
        "train needs both: --autosplit 0.9,0.1 (90% of the images to train, 10% to val), or a data.yaml whose `val:` "
        "names the val images (or the train images, as YOLOv5's coco128.yaml does)"
    )
    assert not project.exists()
