"""Live sources for `fastload detect`, as YOLOv5's LoadStreams reads them: webcams (`0`: /dev/video0 on Linux,
AVFoundation's camera 0 on macOS), network streams (rtsp://, rtmp://, udp://, tcp://, srt://, and http(s):// URLs
that are no image or video file) and `.streams` files listing those, one a line. FFmpeg (PyAV) decodes each in a
thread of its own that keeps only the newest frame (every Nth with `every`, YOLOv5's --vid-stride): when the model
is slower than the source, frames in between are dropped (counted in `dropped`), so what is shown stays live.

    stream = StreamFrames("rtsp://camera/live", imgsz=640, stride=32, device="cuda")
    for b in stream:                    # one frame a batch, the newest, each frame once; ends with the stream
        frame = stream.frames_of(b)[0]  # H0 x W0 x 3 uint8 RGB, upright (a display matrix's rotation applied)
    stream.stop.set()                   # from any thread: the iteration ends after the frame in hand

It has VideoFrames' interface (path, fps, size, frames: 0, decoded, error, frames_of), so detect writes a stream as
it writes a video: an annotated .mp4 (at the stream's frame rate, or 30 when it says none, as YOLOv5), a label file
per frame taken, crops.
"""

from __future__ import annotations

import os
import sys
import threading
import urllib.parse
from collections.abc import Iterator
from fractions import Fraction

import numpy as np

from fastload.errors import BadInput, FastloadError
from fastload.loader.arrays import batch_shape, frames_batch, letterbox_arrays
from fastload.loader.batch import Batch
from fastload.loader.video import need_av, upright

SCHEMES = ("rtsp://", "rtmp://", "udp://", "tcp://", "srt://", "http://", "https://")  # http(s): when no media file
YOUTUBE = ("youtube.com/", "youtu.be/", "www.youtube.com/")
TIMEOUT_S = 15.0  # opening a source, and waiting for its next packet, before it counts as gone


def is_stream(source: str) -> bool:
    """Whether a detect source is live (YOLOv5's `webcam`): a camera number, a `.streams` list, a stream URL. An
    http(s) URL is one unless the caller found an image or video file name in it first."""
    s = source.lower()
    return source.isdigit() or s.endswith(".streams") or s.startswith(SCHEMES) or s.startswith(YOUTUBE)


def stream_sources(source: str) -> list[str]:
    """The live sources `source` names: the lines of a `.streams` file, or itself; FastloadError for what fastload
    cannot read (YouTube pages: YOLOv5 resolves them with pafy; a camera number off Linux and macOS)."""
    if source.lower().endswith(".streams"):
        try:
            with open(source, encoding="utf-8") as f:
                lines = [line.strip() for line in f if line.strip() and not line.lstrip().startswith("#")]
        except (OSError, UnicodeDecodeError) as e:
            raise FastloadError(
                f"{source}: not a readable list of streams ({getattr(e, 'strerror', None) or e})"
            ) from None
        if not lines:
            raise FastloadError(f"{source}: an empty list of streams")
        return [s for line in lines for s in stream_sources(line)]
    if source.lower().split("://")[-1].startswith(YOUTUBE):
        raise FastloadError(f"{source}: a YouTube page, not a stream; give the stream's own URL")
    if source.isdigit() and not sys.platform.startswith(("linux", "darwin")):
        raise FastloadError(f"{source}: webcams by number are read on Linux and macOS; give FFmpeg's device URL")
    return [source]


def stream_name(source: str) -> str:
    """The name a stream's results take (before .mp4): YOLOv5's `Path(source).name`, the URL's last path part or
    its host, or the camera number."""
    if source.isdigit():
        return source
    url = urllib.parse.urlparse(source)
    name = os.path.basename(url.path.rstrip("/")) or url.hostname or "stream"
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def _open(source: str):
    import av

    if source.isdigit():  # a camera: FFmpeg's capture device
        if sys.platform.startswith("linux"):
            return av.open(f"/dev/video{source}", format="v4l2", timeout=TIMEOUT_S)
        return av.open(source, format="avfoundation", timeout=TIMEOUT_S)
    options = {"rtsp_transport": "tcp"} if source.lower().startswith("rtsp://") else {}
    return av.open(source, options=options, timeout=TIMEOUT_S)


class StreamFrames:
    """One live source, its newest frames one at a time, letterboxed on `device` (see the module). Opening connects
    and decodes the first frame (for the size and rotation): BadInput when it cannot. Frames of another size than
    the first are resized to it (a stream that changes resolution keeps one output video). `stop` (an Event, which
    may be shared by several streams) ends the iteration from any thread; the stream ends it when it ends, and a
    read error ends it with `error` set."""

    def __init__(
        self,
        source: str,
        imgsz: int,
        stride: int = 32,
        device: str = "cpu",
        every: int = 1,
        square: bool = False,
        stop: threading.Event | None = None,
        sliced: bool = False,
    ) -> None:
        need_av()
        import av

        self.path, self.imgsz, self.device, self.every = source, imgsz, device, every
        self.stride, self.square = stride, square  # the model's: how a part of a frame is letterboxed (--tile)
        self.sliced = sliced  # --tile: the batches hold no letterboxed frame (frames_of gives it, to cut)
        self.stop = stop or threading.Event()
        try:
            self.container = _open(source)
            if not self.container.streams.video:
                self.container.close()
                raise BadInput("no video stream")
            stream = self.container.streams.video[0]
            stream.thread_type = "SLICE"  # frame threads would hold frames back: live, each frame as it comes
            self.fps = stream.average_rate or stream.guessed_rate or Fraction(30)
            self._packets = self.container.decode(stream)
            first = next(self._packets, None)
        except (av.FFmpegError, OSError) as e:
            raise BadInput(
                f"cannot read this stream ({type(e).__name__}: {getattr(e, 'strerror', None) or e})"
            ) from None
        if first is None:
            self.container.close()
            raise BadInput("a stream that ended before its first frame")
        image = upright(first)
        self.size = image.shape[:2]
        self.shape = batch_shape([self.size], imgsz, stride, square)
        self.frames = 0  # not known ahead
        self.decoded = 0  # frames taken
        self.read = 1  # frames decoded (the first included)
        self.dropped = 0  # taken ones' newer frames arrived first
        self.error = ""
        self._latest: np.ndarray | None = image if every == 1 else None
        self._done = False
        self._quit = threading.Event()  # the iteration is over: this stream's reader ends
        self._changed = threading.Condition()
        self._frames: dict[int, np.ndarray] = {}
        self._reader = threading.Thread(target=self._read, name=f"stream {stream_name(source)}", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        import av

        try:
            while not (self.stop.is_set() or self._quit.is_set()):
                try:
                    frame = next(self._packets, None)
                except av.FFmpegError as e:
                    self.error = f"reading stopped after frame {self.read} ({e})"
                    break
                if frame is None:
                    break
                self.read += 1
                if self.read % self.every:
                    continue
                image = upright(frame)
                if image.shape[:2] != self.size:
                    from PIL import Image

                    image = np.asarray(Image.fromarray(image).resize(self.size[::-1], Image.BILINEAR))
                with self._changed:
                    self.dropped += self._latest is not None
                    self._latest = image
                    self._changed.notify_all()
        finally:
            self.container.close()
            with self._changed:
                self._done = True
                self._changed.notify_all()

    def __iter__(self) -> Iterator[Batch]:
        try:
            while True:
                with self._changed:
                    while self._latest is None and not self._done and not self.stop.is_set():
                        self._changed.wait(0.1)  # `stop` is an Event: looked at ten times a second
                    image, self._latest = self._latest, None
                if image is None or self.stop.is_set():
                    return
                self._frames = {self.decoded: image}
                self.decoded += 1
                if self.sliced:
                    yield frames_batch([image], self.device, self.decoded - 1)
                else:
                    yield letterbox_arrays([image], self.imgsz, self.shape, self.device, self.decoded - 1)
        finally:
            self._quit.set()  # this reader ends at its next frame (or when a read times out); others read on
            self._reader.join(TIMEOUT_S + 5)

    def frames_of(self, b: Batch) -> list[np.ndarray]:
        """The decoded frame of the batch just yielded."""
        return [self._frames[int(i)] for i in b.indices]
