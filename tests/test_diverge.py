"""A loss that goes NaN or infinite: its step is skipped and left out of the logged losses, and a run that diverged
stops with one line before last.pt is written over, so last.pt keeps the last finite epoch."""

import csv

import pytest
import torch
from click.testing import CliRunner

from fastload.cli import main
from yolo.diverge import Diverged, LossGuard
from yolo.model import YOLOv5

CPU = torch.device("cpu")


def test_a_non_finite_step_is_skipped_counted_and_left_out_of_the_mean():
    model = YOLOv5("n", nc=3)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    guard = LossGuard(CPU)
    x = torch.rand(2, 3, 64, 64)
    model.train()
    loss = sum(p.sum() for p in model(x)) * float("nan")
    guard.add(loss.reshape(1), torch.tensor([1.0, 2.0, 3.0]))
    loss.backward()
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=10.0)
    assert not guard.may_step(norm)
    if guard.may_step(norm):  # as train.py steps: a skipped step leaves every weight as it was
        opt.step()
    parameters = {k for k, _ in model.named_parameters()}
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items() if k in parameters)
    guard.add(torch.tensor([0.5]), torch.tensor([0.1, 0.2, 0.3]))
    guard.add(torch.tensor([0.7]), torch.tensor([0.3, 0.4, 0.5]))
    assert guard.mean().tolist() == pytest.approx([0.2, 0.3, 0.4])  # the finite steps' mean
    assert guard.may_step(torch.tensor(3.0))
    assert guard.end(0, YOLOv5("n", nc=3)) == 1  # 1 of 3: skipped, and the run goes on


def test_half_the_steps_or_a_broken_weight_is_divergence():
    guard = LossGuard(CPU)
    guard.add(torch.tensor([float("inf")]), torch.zeros(3))
    guard.add(torch.tensor([1.0]), torch.ones(3))
    with pytest.raises(Diverged, match=r"^training diverged in epoch 4: 1 of 2 steps had a non-finite loss"):
        guard.end(3)
    model = YOLOv5("n", nc=3)
    guard.start()
    guard.add(torch.tensor([1.0]), torch.ones(3))
    assert guard.end(0, model) == 0
    model.detect.m[0].bias.data[0] = float("nan")
    with pytest.raises(Diverged, match=r"epoch 1: the weights are no longer finite \(0 of 1 steps"):
        guard.end(0, YOLOv5("n", nc=3), model)
    model = YOLOv5("n", nc=3)
    next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)).running_var[0] = float("inf")
    with pytest.raises(Diverged):  # buffers too: a forward through overflowing weights poisons BatchNorm's
        guard.end(0, model)


def test_a_run_that_diverges_stops_with_one_line_and_keeps_the_last_finite_epoch(demo_store, tmp_path):
    """lr0 1e6 without warmup: the losses go NaN within a few epochs; the run stops there (exit 1, one line saying
    how many epochs last.pt keeps and to lower lr0), and last.pt's weights are all finite."""
    hyp = tmp_path / "hyp.yaml"
    hyp.write_text("lr0: 1.0e+6\nwarmup_epochs: 0\n")
    args = ["train", "--data", demo_store, "--hyp", str(hyp), "--epochs", "10", "--imgsz", "64", "--batch", "8",
            "--workers", "1", "--seed", "3", "--project", str(tmp_path), "--name", "d"]  # fmt: skip
    result = CliRunner().invoke(main, args)
    last = tmp_path / "d" / "weights" / "last.pt"
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("Error: training diverged in epoch ") and "lower lr0 (--hyp FILE" in line, line
    assert last.exists(), line
    kept = torch.load(last, map_location="cpu", weights_only=False)
    epochs = kept["epoch"] + 1
    assert line.endswith(f"; {last} keeps {epochs} trained epoch{'s' * (epochs > 1)} (start from it with --weights)")
    assert int(line.split("epoch ")[1].split(":")[0]) == epochs + 1  # stopped in the epoch after last.pt's
    for state in (kept["model"], kept["ema"]):
        assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())
    with open(tmp_path / "d" / "results.csv") as f:
        table = list(csv.DictReader(f))
    assert len(table) == epochs and all(2 * int(r["skipped_steps"]) < 3 for r in table)  # 19 images: 3 steps
