"""Encode uint8 RGB frame streams to mp4 and decode time spans back, through PyAV.

Frame k of a stream is stamped at k / fps seconds, so an episode that starts at frame s of a file spans
[s / fps, (s + T) / fps): the ``from_timestamp``/``to_timestamp`` a LeRobot v3 episode row stores.

Example::

    with VideoEncoder(path, fps=10, height=96, width=96) as encoder:
        encoder.write(frames_a)  # (T1, 96, 96, 3) uint8, frames 0 .. T1-1
        encoder.write(frames_b)  # continues at frame T1
    frames_b_again = decode_video_span(path, fps=10, start_s=len(frames_a) / 10, num_frames=len(frames_b))
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from c2c.errors import DatasetError

if TYPE_CHECKING:
    import av

# Encoders tried in order; PyAV's wheels ship libx264, the others are fallbacks for unusual builds.
PREFERRED_CODECS = ("libx264", "h264", "libopenh264", "mpeg4")
PIXEL_FORMAT = "yuv420p"  # what every player and LeRobot's decoders read
DEFAULT_CRF = 18  # visually lossless for h264; a lower value is larger and closer
DEFAULT_GOP = 2  # a keyframe every 2 frames: random access decodes at most one extra frame (LeRobot's default)


def import_pyav():
    """PyAV, imported on first use: datasets that store images only never need it."""
    try:
        import av
    except ImportError:
        raise DatasetError("video features need PyAV (pip install av); datasets of images do not") from None
    return av


class RGBConverter:
    """``frame.to_ndarray(format="rgb24")`` through one kept reformatter: a fresh one per frame (what
    ``to_ndarray`` builds) costs about 5 ms per 256-px frame, a kept one about 0.03 ms; the pixels are the same."""

    def __init__(self) -> None:
        self._reformatter = import_pyav().video.reformatter.VideoReformatter()

    def __call__(self, frame: Any) -> np.ndarray:
        try:
            return self._reformatter.reformat(frame, format="rgb24", threads=1).to_ndarray()
        except TypeError:  # an older PyAV without the threads argument
            return self._reformatter.reformat(frame, format="rgb24").to_ndarray()


def pick_codec() -> str:
    """The first of :data:`PREFERRED_CODECS` that this PyAV build can encode."""
    av = import_pyav()
    for codec in PREFERRED_CODECS:
        if codec in av.codecs_available:
            return codec
    raise DatasetError(f"PyAV {av.__version__} offers none of the video encoders {list(PREFERRED_CODECS)}")


def _encoder_options(codec: str, crf: int, gop: int) -> dict[str, str]:
    options = {"g": str(gop)}
    if codec in ("libx264", "h264"):
        # zerolatency turns off lookahead and B-frames: packets come out as frames go in, so the bytes
        # written so far are known while an episode is encoded (the writer's file rollover needs them),
        # and decode order equals presentation order.
        options.update(crf=str(crf), preset="veryfast", tune="zerolatency")
    return options


class VideoEncoder:
    """Appends (T, H, W, 3) uint8 frames to one mp4 video stream; frame k is stamped k / fps."""

    def __init__(
        self, path: Path, *, fps: int, height: int, width: int, codec: str | None = None,
        crf: int = DEFAULT_CRF, gop: int = DEFAULT_GOP,
    ) -> None:
        if height % 2 or width % 2:
            raise DatasetError(
                f"{path}: {PIXEL_FORMAT} video needs an even height and width, got {height}x{width} "
                "(store this camera as images instead)"
            )
        self.path = Path(path)
        self.height, self.width = height, width
        self.codec = codec or pick_codec()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._container = import_pyav().open(str(self.path), mode="w")
        self._stream = self._container.add_stream(self.codec, rate=fps, options=_encoder_options(self.codec, crf, gop))
        self._stream.width, self._stream.height = width, height
        self._stream.pix_fmt = PIXEL_FORMAT
        self._stream.codec_context.time_base = Fraction(1, fps)  # pts counts frames
        self.num_frames = 0  # frames handed to the encoder
        self.bytes_written = 0  # compressed bytes the encoder has produced so far

    def write(self, frames: np.ndarray) -> None:
        if frames.dtype != np.uint8 or frames.shape[1:] != (self.height, self.width, 3):
            raise DatasetError(
                f"{self.path}: frames must be uint8 (T, {self.height}, {self.width}, 3), "
                f"got {frames.dtype} {tuple(frames.shape)}"
            )
        av = import_pyav()
        for image in frames:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            frame.pts = self.num_frames
            self._mux(self._stream.encode(frame))
            self.num_frames += 1

    def close(self) -> None:
        if self._container is None:
            return
        self._mux(self._stream.encode())  # flush delayed packets
        self._container.close()
        self._container = None

    def _mux(self, packets: list[av.Packet]) -> None:
        for packet in packets:
            self.bytes_written += packet.size
            self._container.mux(packet)

    def __enter__(self) -> "VideoEncoder":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def encode_video(frames: np.ndarray, path: Path, *, fps: int, codec: str | None = None, crf: int = DEFAULT_CRF) -> None:
    """Write (T, H, W, 3) uint8 frames to ``path`` as one mp4."""
    with VideoEncoder(path, fps=fps, height=frames.shape[1], width=frames.shape[2], codec=codec, crf=crf) as encoder:
        encoder.write(frames)


def decode_video_span(path: Path, *, fps: int, start_s: float, num_frames: int, what: str = "") -> np.ndarray:
    """Frames stamped ``start_s``, ``start_s + 1/fps``, ... (``num_frames`` of them) as (T, H, W, 3) uint8.

    Seeks to the keyframe before ``start_s``; a DatasetError names the file, ``what`` the span is (e.g. "episode 3
    'observation.images.image'") and the first frame that cannot be decoded or is missing.
    """
    path = Path(path)
    where = f"{path} ({what})" if what else str(path)
    if not path.exists():
        raise DatasetError(f"{where}: video file is missing")
    first = round(start_s * fps)
    wanted = range(first, first + num_frames)
    av = import_pyav()
    frames: dict[int, np.ndarray] = {}
    try:
        frames = _decode_frame_indices(path, fps, wanted, seek_s=start_s, into=frames)
        if len(frames) < num_frames:  # an unusual keyframe layout: decode from the start instead
            frames = _decode_frame_indices(path, fps, wanted, seek_s=None, into=frames)
    except (av.error.FFmpegError, OSError) as error:
        after = max(frames, default=first - 1) + 1  # the first frame not decoded
        raise DatasetError(f"{where}: cannot decode video frame {after - first} of the episode (frame {after} of the "
                           f"file, {after / fps:.4f}s): {error}; the file is damaged: write the dataset again (or "
                           "download it again)") from None
    missing = [index for index in wanted if index not in frames]
    if missing:
        raise DatasetError(
            f"{where}: frames {missing[0] - first}..{missing[-1] - first} of the episode (file frames "
            f"{missing[0]}..{missing[-1]}, {missing[0] / fps:.4f}s..{missing[-1] / fps:.4f}s) are missing "
            f"({len(missing)} of {num_frames} asked for from {start_s:.4f}s); the file is damaged or shorter than "
            "the episode rows say"
        )
    return np.stack([frames[index] for index in wanted])  # (T, H, W, 3)


def _decode_frame_indices(path: Path, fps: int, wanted: range, seek_s: float | None,
                          into: dict[int, np.ndarray] | None = None) -> dict[int, np.ndarray]:
    """Frames of ``wanted`` decoded from ``seek_s`` on, added to ``into`` (kept when decoding fails half way)."""
    frames: dict[int, np.ndarray] = {} if into is None else into
    to_rgb = RGBConverter()
    with import_pyav().open(str(path)) as container:
        stream = container.streams.video[0]
        if seek_s is not None and seek_s > 0:
            container.seek(int(seek_s / stream.time_base), stream=stream, backward=True, any_frame=False)
        for frame in container.decode(stream):
            index = round(float(frame.pts * stream.time_base) * fps)
            if index >= wanted.stop:
                break
            if index >= wanted.start:
                frames[index] = to_rgb(frame)
    return frames


def decode_video(path: Path) -> np.ndarray:
    """Every frame of an mp4 as (T, H, W, 3) uint8."""
    to_rgb = RGBConverter()
    with import_pyav().open(str(path)) as container:
        return np.stack([to_rgb(frame) for frame in container.decode(video=0)])


def video_stream_info(path: Path) -> dict[str, Any]:
    """The ``info`` entry LeRobot keeps for a video feature in meta/info.json."""
    with import_pyav().open(str(path)) as container:
        stream = container.streams.video[0]
        return {
            "video.height": stream.height,
            "video.width": stream.width,
            "video.codec": stream.codec_context.name,
            "video.pix_fmt": stream.pix_fmt,
            "video.is_depth_map": False,
            "video.fps": int(stream.base_rate or stream.average_rate),
            "video.channels": 3,
            "has_audio": len(container.streams.audio) > 0,
        }
