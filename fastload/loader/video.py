"""Video files for `fastload detect`, as YOLOv5's detect.py reads and writes them: frames decoded by FFmpeg (PyAV),
letterboxed as an image of that size is (the smallest multiple of the stride around it), in batches shaped like the
validation loader's, and the annotated frames written to an H.264 .mp4 at the source's frame rate.

    video = VideoFrames("clip.mp4", imgsz=640, batch=16, stride=32, device="cuda")
    for b in video:                        # Batch: images N x 3 x H x W uint8 on the device, orig_size, ratio, pad
        frames = video.frames_of(b)        # the decoded frames (H0 x W0 x 3 uint8 RGB) of that batch
    with VideoWriter("out/clip.mp4", video.fps, video.size) as out:
        out.write(frame)

A video with a rotation in its display matrix (a phone's portrait video is stored landscape) is turned upright,
as OpenCV turns it for YOLOv5: its frames, sizes, labels and annotated copy are the upright picture's.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from fractions import Fraction

import numpy as np

from fastload.errors import BadInput, FastloadError
from fastload.loader.arrays import batch_shape, frames_batch, letterbox_arrays
from fastload.loader.batch import Batch
from fastload.store.tempfiles import partial_path


def need_av() -> None:
    if importlib.util.find_spec("av") is None:
        raise FastloadError("videos need PyAV (FFmpeg): pip install 'fastload[video]'")


def probe(path: str) -> tuple[int, int, Fraction, int, int]:
    """A video file's (height, width, frame rate, frames by its header (0 when it does not say), rotation) from its
    first video stream, upright: the height and width once turned by `rotation` (0, 90, 180 or 270 degrees
    counter-clockwise, from the display matrix of its first frame, which is decoded); BadInput when it is no video
    FFmpeg can decode."""
    need_av()
    import av

    try:
        with av.open(path) as container:
            if not container.streams.video:
                raise BadInput("no video stream")
            stream = container.streams.video[0]
            h, w = stream.codec_context.height, stream.codec_context.width
            rate = stream.average_rate or stream.guessed_rate or Fraction(30)
            frames = stream.frames or 0
            first = next(container.decode(stream), None)
    except (av.FFmpegError, OSError) as e:
        raise BadInput(f"not a video FFmpeg decodes ({type(e).__name__}: {e.strerror or e})") from None
    if not (h and w):
        raise BadInput("a video stream without a frame size")
    rotation = quarter_turns(first) * 90
    return (w, h, rate, frames, rotation) if rotation % 180 else (h, w, rate, frames, rotation)


def quarter_turns(frame) -> int:
    """The counter-clockwise quarter turns (0..3) that show a decoded frame upright: its display matrix's rotation
    (PyAV's `VideoFrame.rotation`, which PyAV before 13 lacks: then none) rounded to a multiple of 90 degrees."""
    degrees = getattr(frame, "rotation", 0) if frame is not None else 0
    return round((degrees or 0) / 90) % 4


def upright(frame) -> np.ndarray:
    """A decoded frame as H x W x 3 uint8 RGB, turned as its display matrix says."""
    image, k = frame.to_ndarray(format="rgb24"), quarter_turns(frame)
    return np.ascontiguousarray(np.rot90(image, k)) if k else image


class VideoFrames:
    """The frames of one video file in batches of `batch` (the last one shorter), letterboxed on `device`; with
    `every` N, only every Nth (frames N, 2N, ... counting from 1: YOLOv5's --vid-stride). Opening reads the stream's
    header: BadInput when the file is no video FFmpeg can decode. With `square`, every frame is letterboxed to
    imgsz x imgsz (what a model exported for one shape takes)."""

    def __init__(
        self,
        path: str,
        imgsz: int,
        batch: int,
        stride: int = 32,
        device: str = "cpu",
        every: int = 1,
        square: bool = False,
        sliced: bool = False,
    ) -> None:
        self.path, self.imgsz, self.batch, self.device, self.every = path, imgsz, batch, device, every
        self.stride, self.square = stride, square  # the model's: how a part of a frame is letterboxed (--tile)
        self.sliced = sliced  # --tile: the batches hold no letterboxed frames (frames_of gives them, to cut)
        h, w, self.fps, frames, self.rotation = probe(path)
        self.size, self.frames = (h, w), frames // every  # those taken, by the header: 0 when it does not say
        self.shape = batch_shape([self.size], imgsz, stride, square)
        self._frames: dict[int, np.ndarray] = {}
        self.decoded = 0  # frames taken so far
        self.error = ""  # why decoding stopped before the end, if it did

    def __iter__(self) -> Iterator[Batch]:
        import av

        with av.open(self.path) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"  # FFmpeg's frame and slice threads
            pending: list[np.ndarray] = []
            frames, seen = container.decode(stream), 0
            while True:
                try:
                    frame = next(frames, None)
                except av.FFmpegError as e:  # a damaged stream: what was decoded is kept
                    self.error, frame = f"decoding stopped after frame {seen} ({e})", None
                seen += frame is not None
                if frame is not None and seen % self.every:
                    continue  # not one of every Nth
                if frame is not None:
                    pending.append(upright(frame))
                    self.decoded += 1
                if pending and (frame is None or len(pending) == self.batch):
                    yield self._batch(pending, self.decoded - len(pending))
                    pending = []
                if frame is None:
                    return

    def _batch(self, frames: list[np.ndarray], first: int) -> Batch:
        self._frames = dict(enumerate(frames, first))
        if self.sliced:
            return frames_batch(frames, self.device, first)
        return letterbox_arrays(frames, self.imgsz, self.shape, self.device, first)

    def frames_of(self, b: Batch) -> list[np.ndarray]:
        """The decoded frames of the batch just yielded, in its order."""
        return [self._frames[int(i)] for i in b.indices]


class VideoWriter:
    """An H.264 .mp4 (yuv420p; MPEG-4 part 2 where the FFmpeg build has no libx264) written under a temporary name
    and renamed into place on a clean exit; frames are H x W x 3 uint8 RGB of the size given."""

    def __init__(self, path: str, fps: Fraction, size: tuple[int, int]) -> None:
        need_av()
        import av

        self.path, self.tmp = path, partial_path(path)
        self.container = av.open(self.tmp, "w", format="mp4")
        codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
        self.stream = self.container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001000))
        self.h, self.w = size
        self.stream.height, self.stream.width = self.h + self.h % 2, self.w + self.w % 2  # yuv420p: even sides
        self.stream.pix_fmt = "yuv420p"
        self.stream.options = {"crf": "20"} if codec == "libx264" else {"qscale": "3"}

    def write(self, frame: np.ndarray) -> None:
        import av

        if frame.shape[:2] != (self.stream.height, self.stream.width):  # an odd side: its last row or column twice
            frame = np.pad(frame, ((0, self.stream.height - self.h), (0, self.stream.width - self.w), (0, 0)), "edge")
        for packet in self.stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
            self.container.mux(packet)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, kind, value, tb) -> None:
        try:
            if kind is None:
                for packet in self.stream.encode():  # flush the encoder
                    self.container.mux(packet)
        finally:
            self.container.close()
            if kind is None:
                os.replace(self.tmp, self.path)
            elif os.path.exists(self.tmp):
                os.remove(self.tmp)
