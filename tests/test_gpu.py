"""What only a CUDA device can show (skipped without one; CI has none, the GPU machine runs them): the GPU graph
gives the CPU graph's batches, AutoBatch's batch trains at the largest multi-scale size without running out of
memory, the step clock counts the GPU's idle time, not the host's, and segmentation masks come out as on the CPU.
(The fused kernels' tests, the loss with them included, are in test_kernels.py: compiled here, in Triton's
interpreter on a CPU.)

    python -m pytest -q tests/test_gpu.py tests/test_kernels.py tests/test_ema.py   # on the GPU machine
"""

import os
import time

import numpy as np
import pytest
import torch
from conftest import same_assignment

from fastload.loader.augment import Hyp
from fastload.loader.pictures import PictureLoader
from fastload.loader.train_loader import TrainLoader
from fastload.loader.val_loader import ValLoader
from fastload.store import open_store
from yolo.autobatch import autobatch, largest_size
from yolo.loss import ComputeLoss
from yolo.model import YOLOv5
from yolo.stepclock import StepClock

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture(scope="module")
def store(demo_store):
    return open_store(demo_store, "train")


LOADERS = {
    "letterbox": lambda s, d: ValLoader(s, 160, 4, rect=True, device=d, workers=1, start_method="spawn"),
    "augment": lambda s, d: TrainLoader(s, 160, 4, hyp=Hyp(), seed=3, device=d, workers=1, start_method="spawn"),
    "affine_mixup_multi_scale": lambda s, d: TrainLoader(
        s, 160, 4, hyp=Hyp(mixup=0.5, degrees=10), seed=4, multi_scale=True, device=d, workers=1, start_method="spawn"
    ),
}


@pytest.fixture(scope="module")
def polygon_store(polygon_data):
    return open_store(polygon_data["polygons"], "train")


@pytest.mark.parametrize("name", LOADERS)
def test_the_gpu_graph_gives_the_cpu_graphs_batches(store, name):
    """Same seeds: identical shapes and targets; pixels within nvJPEG's and the GPU resampling's rounding."""
    same_batches(store, LOADERS[name])


def test_whole_pictures_decoded_on_the_gpu_are_the_cpus(store):
    """What sliced inference cuts into tiles: nvJPEG's decode of each picture against the CPU decoder's."""
    records = [0, 3, 5]
    gpu = list(PictureLoader(store, records, "cuda", workers=1, start_method="spawn"))
    cpu = list(PictureLoader(store, records, "cpu", workers=1, start_method="spawn"))
    assert [i for i, _ in gpu] == [i for i, _ in cpu] == records
    for (_, a), (_, b) in zip(gpu, cpu, strict=True):
        assert a.is_cuda and a.shape == b.shape and (a.cpu().int() - b.int()).abs().float().mean() < 2.0


def test_the_gpu_graph_pastes_as_the_cpu_graph(polygon_store):
    """copy_paste (the masks to the GPU, the mirror assembled by concatenation there) with mixup and a rotation."""
    hyp = Hyp(copy_paste=0.5, mixup=0.5, degrees=10)
    same_batches(polygon_store, lambda s, d: TrainLoader(s, 160, 4, hyp=hyp, seed=4, device=d, workers=1,
                                                         start_method="spawn"))  # fmt: skip


def test_the_gpu_graph_gives_the_cpu_graphs_masks(polygon_store):
    """Segmentation: the overlap masks (made by the source workers) reach the GPU with the CPU graph's values."""
    hyp = Hyp(copy_paste=0.5, mixup=0.5, degrees=10, flipud=0.5)
    same_batches(polygon_store, lambda s, d: TrainLoader(s, 160, 4, hyp=hyp, seed=6, device=d, workers=1,
                                                         start_method="spawn", mask_ratio=4))  # fmt: skip


def test_the_gpu_graph_gives_the_cpu_graphs_whole_masks(polygon_store):
    """--no-overlap: the bit planes reach the GPU packed and are taken apart there, to the CPU's masks."""
    hyp = Hyp(copy_paste=0.5, mixup=0.5, degrees=10, flipud=0.5, fliplr=0.5)
    options = dict(hyp=hyp, seed=6, workers=1, start_method="spawn", mask_ratio=4, overlap=False)
    same_batches(polygon_store, lambda s, d: TrainLoader(s, 160, 4, device=d, **options))


def same_batches(store, make):
    cpu = [(b.images.clone(), b.targets.clone(), b.masks) for _, b in zip(range(3), make(store, "cpu"), strict=False)]
    gpu = list(zip(range(3), make(store, "cuda"), strict=False))
    assert len(gpu) == len(cpu) == 3
    for (images, targets, masks), (_, b) in zip(cpu, gpu, strict=True):
        assert b.images.is_cuda and b.images.shape == images.shape and b.images.dtype == torch.uint8
        assert torch.equal(b.targets.cpu(), targets)
        assert (b.images.cpu().float() - images.float()).abs().mean() < 2.0
        assert (masks is None) == (b.masks is None)
        assert masks is None or (b.masks.is_cuda and torch.equal(b.masks.cpu(), masks))


def test_the_segmentation_loss_on_the_gpu_is_the_cpus():
    """SegmentLoss (the fused box loss on CUDA, the mask term per image) gives the CPU's terms and gradients."""
    from yolo.loss import SegmentLoss

    torch.manual_seed(0)
    model = YOLOv5("n-seg", nc=3)
    x = torch.rand(2, 3, 128, 128)
    targets = torch.tensor([[0, 1, 0.3, 0.3, 0.3, 0.2], [0, 2, 0.6, 0.6, 0.4, 0.5], [1, 0, 0.5, 0.5, 0.5, 0.5]])
    masks = torch.zeros(2, 32, 32, dtype=torch.uint8)
    masks[0, 3:16, 4:15], masks[0, 11:28, 12:26], masks[1, 8:24, 8:24] = 1, 2, 1
    results = []
    for device in ("cpu", "cuda"):
        m = model.to(device)
        m.zero_grad()
        loss, items = SegmentLoss(m.detect, 128)(m(x.to(device)), targets.to(device), masks=masks.to(device))
        loss.backward()
        results.append((items.cpu(), m.detect.proto.cv3[0].weight.grad.cpu().clone()))
    (items_cpu, grad_cpu), (items_gpu, grad_gpu) = results
    assert torch.allclose(items_gpu, items_cpu, rtol=1e-4, atol=1e-6)
    assert torch.allclose(grad_gpu, grad_cpu, rtol=1e-3, atol=1e-6)


def test_autobatch_batch_trains_at_the_largest_size_without_running_out_of_memory():
    model = YOLOv5("s", nc=3).cuda().to(memory_format=torch.channels_last)
    batch, message = autobatch(model, 320, multi_scale=True)
    size = largest_size(320, True)
    assert batch > 16 and f"at {size} px" in message
    x = torch.rand(batch, 3, size, size, device="cuda").contiguous(memory_format=torch.channels_last)
    targets = torch.tensor([[i, 0, 0.5, 0.5, 0.2, 0.2] for i in range(batch)], device="cuda")
    with torch.autocast("cuda"):
        loss, _ = ComputeLoss(model.detect, 320)(model(x), targets)
    loss.backward()  # an OutOfMemoryError here fails the test
    assert torch.cuda.max_memory_allocated() < torch.cuda.get_device_properties(0).total_memory


def test_the_step_clock_counts_the_gpus_idle_time_not_the_hosts():
    begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    begin.record()
    torch.cuda._sleep(10**7)  # one kernel spinning for clock cycles: how many make a millisecond
    end.record()
    end.synchronize()
    cycles_per_ms = 10**7 / begin.elapsed_time(end)

    def spin(ms: float) -> None:  # keep the GPU busy about `ms`
        torch.cuda._sleep(int(ms * cycles_per_ms))

    clock = StepClock(torch.device("cuda"))
    clock.start()
    for _ in range(6):  # the host waits 20 ms per batch while the GPU still runs 60 ms of the last step
        time.sleep(0.02)
        clock.batch_ready()
        spin(60)
        clock.step_done()
    wait, compute = clock.stop()
    assert clock.host_wait >= 0.12 and wait < 0.03  # only the first batch found the GPU idle
    assert compute > 0.25
    clock.start()
    for _ in range(6):  # the GPU's step takes 1 ms and the host waits 40 ms per batch: the GPU idles
        time.sleep(0.04)
        clock.batch_ready()
        spin(1)
        clock.step_done()
    wait, compute = clock.stop()
    assert wait > 0.2 and wait / (wait + compute) > 0.8


def test_the_assignment_made_on_the_cpu_is_the_one_the_gpu_makes_and_the_step_does_not_wait(store):
    """The trainer's loader assigns targets on the CPU (prefetch thread): the same tensors as the CUDA assignment
    of the batch's targets, delivered on the device; with them the loss queues without waiting for the GPU, where
    the step's own assignment waits for it."""
    model = YOLOv5("n", nc=len(store.names)).cuda()
    loss = ComputeLoss(model.detect, 160)
    loader = TrainLoader(store, 160, 4, hyp=Hyp(), seed=3, device="cuda", workers=1, start_method="spawn",
                         prepare_targets=loss.assigner())  # fmt: skip

    def queue_step(b, assigned) -> float:
        """Seconds the host takes to queue forward, loss and backward while the GPU is busy for ~0.5 s."""
        torch.cuda.synchronize()
        torch.cuda._sleep(10**9)
        t0 = time.perf_counter()
        with torch.autocast("cuda"):
            total, _ = loss(model(b.images.float() / 255), b.targets, assigned)
        total.backward()
        queued = time.perf_counter() - t0
        torch.cuda.synchronize()
        return queued

    no = 5 + len(store.names)
    for k, b in zip(range(4), loader, strict=False):
        preds = [torch.zeros(len(b.images), 3, 160 // s, 160 // s, no, device="cuda") for s in (8, 16, 32)]
        assert b.assigned[0][0].is_cuda and same_assignment(b.assigned, loss.build_targets(preds, b.targets))
        ahead, own = queue_step(b, b.assigned), queue_step(b, None)
        if k:  # the first step compiles and loads kernels
            assert ahead < 0.15 and own > 0.25, f"queued in {ahead:.3f} s with the assignment ahead, {own:.3f} without"


def test_detect_on_the_gpu_finds_the_cpus_boxes(overfit, tmp_path):
    """`fastload detect` on CUDA (nvJPEG decode, fp16 model) finds the boxes it finds on the CPU."""
    from yolo.detect import DetectOptions, detect

    labels = {}
    for device in ("cpu", "cuda"):
        opts = DetectOptions(out=str(tmp_path / device), device=device, save_txt=True, save_conf=True, batch=4)
        got = detect(overfit["weights"], [overfit["images"]], opts, progress=False)
        assert got["images"] == 16 and got["imgsz"] == 160 and got["skipped"] == []
        labels[device] = got["labels"]
    found = 0
    for name in sorted(os.listdir(labels["cpu"])):
        cpu, gpu = (np.loadtxt(os.path.join(labels[d], name), ndmin=2).reshape(-1, 6) for d in ("cpu", "cuda"))
        for row in cpu[cpu[:, 5] > 0.5]:
            same = gpu[(gpu[:, 0] == row[0]) & (np.abs(gpu[:, 1:5] - row[1:5]).max(axis=1) < 0.01)]
            assert len(same) == 1 and abs(same[0, 5] - row[5]) < 0.02, (name, row, gpu)
            found += 1
    assert found >= 16


def test_native_masks_and_drawn_overlaps_on_the_gpu_are_the_cpus():
    """detect's masks at the original resolution (grid_sample on the device) and val's predicted-mask pictures."""
    import torch.nn.functional as F

    from yolo.segment import native_masks, prediction_overlap

    g = torch.Generator().manual_seed(0)
    proto = F.interpolate(torch.randn(1, 32, 8, 8, generator=g), (40, 40), mode="bilinear")[0]
    coefficients = torch.randn(5, 32, generator=g)
    boxes = np.array([[0, 0, 150, 97], [10.3, 5.7, 80.2, 60.9], [100, 50, 149.5, 96.2], [30, 30, 30, 40], [5, 5, 9, 9]])
    args = ((160, 160), (97, 150), (103 / 97, 160 / 150), (28, 0))
    cpu = native_masks(proto, coefficients, boxes, *args)
    gpu = native_masks(proto.cuda(), coefficients.cuda(), boxes, *args)
    for a, b in zip(cpu, gpu, strict=True):
        assert (a.x, a.y, a.pixels.shape) == (b.x, b.y, b.pixels.shape)
        assert (a.pixels != b.pixels).sum() <= max(1, a.pixels.size // 1000)
    det = torch.cat([torch.tensor(boxes[:, :4] * 160 / 150, dtype=torch.float32), torch.rand(5, 2, generator=g),
                     coefficients], 1)  # fmt: skip
    det[:, 4] += 0.3  # every one drawn
    want = prediction_overlap(proto[None], [det], (160, 160))
    got = prediction_overlap(proto[None].cuda(), [det.cuda()], (160, 160)).cpu()
    assert (want != got).float().mean() < 1e-3 and want.any()


def test_the_gpu_classification_graph_gives_the_cpu_graphs_crops(tmp_path):
    """The classification loader on the GPU (nvJPEG's region decode, resize, jitter, flips) against the CPU graph:
    the same records, labels and windows, pixels within the decoders' and resamplers' rounding; then a classifier's
    step there."""
    from fastload.demo_data import DemoConfig, generate
    from fastload.loader.classify_loader import ClassifyLoader, normalize
    from fastload.pack import PackOptions, pack
    from yolo.classify import Classifier

    generate(str(tmp_path / "cls"), DemoConfig(images=24, seed=2, scale=0.3, classify=True))
    pack(str(tmp_path / "cls"), str(tmp_path / "cls.lmdb"), PackOptions())
    store = open_store(str(tmp_path / "cls.lmdb"), "train")
    for augment in (True, False):
        kw = {} if augment else {"augment": None}
        cpu = list(ClassifyLoader(store, 96, 6, device="cpu", workers=1, start_method="spawn", **kw))
        gpu = list(ClassifyLoader(store, 96, 6, device="cuda", workers=1, start_method="spawn", **kw))
        assert len(cpu) == len(gpu) > 0
        for a, b in zip(cpu, gpu, strict=True):
            assert b.images.is_cuda and b.images.shape == a.images.shape and np.array_equal(a.indices, b.indices)
            assert torch.equal(a.labels, b.labels.cpu())
            assert (b.images.cpu().float() - a.images.float()).abs().mean() < 3.0
    model = Classifier("n-cls", len(store.names)).cuda()
    loss = torch.nn.functional.cross_entropy(model(normalize(gpu[0].images)), gpu[0].labels)
    loss.backward()
    assert torch.isfinite(loss) and all(p.grad is not None for p in model.parameters())
