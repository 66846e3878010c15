"""Checkpoints: written atomically (a temporary name, then a rename), read back with a clear error for a file that
is not one, and the RNG states that let a resumed run continue exactly where it stopped."""

from __future__ import annotations

import os
import random
from contextlib import contextmanager

import numpy as np
import torch

from fastload.errors import BadRecord, FastloadError, JobFailed, os_error_line
from fastload.interrupt import Interrupted
from yolo.diverge import Diverged

WEIGHT_KEYS = ("ema", "epoch", "config", "names")  # what every fastload checkpoint holds (best.pt: only these)
KEYS = ("model", *WEIGHT_KEYS, "optimizer")  # what a checkpoint a run resumes from holds (last.pt, epochN.pt)


def weights_only(state: dict) -> dict:
    """A checkpoint's weights file, as best.pt is written: the EMA weights, their epoch, config, class names and
    metrics, without the training model, optimizer and RNG states (a third of the file for SGD; YOLOv5 strips
    best.pt the same way at the end of a run)."""
    return {k: v for k, v in state.items() if k in (*WEIGHT_KEYS, "metrics", "best_fitness", "best_epoch", "maps")}


def save_atomic(obj, path: str) -> None:
    """Write `path` completely or not at all: the previous file stays until the new one is whole."""
    tmp = f"{path}.partial-{os.getpid()}"
    try:
        with open(tmp, "wb") as f:  # through a Python file a full disk is an OSError (torch's writer: RuntimeError)
            torch.save(obj, f)
        os.replace(tmp, path)
    except BaseException as e:  # disk full, interrupted: no half-written file left beside the checkpoint
        if os.path.lexists(tmp):
            os.remove(tmp)
        if isinstance(e, OSError) and e.filename is None:
            raise OSError(e.errno, e.strerror, path) from None  # name the file
        raise


def load_checkpoint(path: str) -> dict:
    """A checkpoint written by `fastload train`, or a FastloadError naming the file and the reason."""
    if not os.path.isfile(path):
        raise FastloadError(f"{path}: no such checkpoint")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:
        raise FastloadError(f"{path}: not a fastload checkpoint ({type(e).__name__})") from None
    if isinstance(checkpoint, dict) and "optimizer" not in checkpoint and all(k in checkpoint for k in WEIGHT_KEYS):
        raise FastloadError(f"{path}: holds the weights only, as best.pt does; resume from last.pt")
    missing = [k for k in KEYS if not isinstance(checkpoint, dict) or k not in checkpoint]
    if missing:
        raise FastloadError(f"{path}: not a fastload checkpoint (no {', '.join(missing)})")
    return checkpoint


def kept_epochs(path: str, then: str = "--resume it") -> str:
    """What a run stopped early keeps: how many epochs its last.pt at `path` holds, and what to do `then`."""
    if not os.path.isfile(path):
        return "no epoch was checkpointed"
    try:
        epochs = torch.load(path, map_location="cpu", weights_only=False)["epoch"] + 1
    except Exception:  # the disk that stopped the run may hold it back too
        return f"{path} could not be read"
    return f"{path} keeps {epochs} trained epoch{'s' * (epochs > 1)} ({then})"


@contextmanager
def noting_kept_checkpoint(path: str):
    """A run stopped by a damaged record (BadRecord), Ctrl-C, the machine (OSError: a full disk; a source worker
    killed for want of /dev/shm) or its own divergence ends with one line saying how far its last.pt at `path`
    got, which --resume continues (a diverged run: a new run started from it)."""
    try:
        yield
    except Diverged as e:
        e.message += f"; {kept_epochs(path, Diverged.then)}"
        raise
    except (BadRecord, JobFailed) as e:
        e.message += f"; {kept_epochs(path)}"
        raise
    except KeyboardInterrupt:
        raise Interrupted(f"interrupted; {kept_epochs(path)}") from None
    except OSError as e:
        raise JobFailed(f"{os_error_line(e)}; {kept_epochs(path)}") from None


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
