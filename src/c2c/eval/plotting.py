"""Pictures of closed-loop evaluations: episode videos with the coarse plan beside the cameras, success bar charts.

Example::

    with EpisodeVideo(Path("videos/reach-v3_ep0.mp4"), cameras=2, image_size=96, fps=40) as video:
        video.add(images=[corner2, gripper_pov], plan=plan, caption="reach-v3 ep0  step 0")   # plan (K, 4) or None
    success_chart({"reach-v3": 0.8, "push-v3": 0.4}, {"easy": 0.8, "hard": 0.4}, Path("success.png"))

A video frame (nearest-neighbour upscaled so that it is at least :data:`MIN_VIDEO_HEIGHT` pixels tall)::

    +-------------------------------------------------------------+
    | caption: task, episode, seed, step, success                 |
    +-------------------+-------------------+---------------------+
    | camera 1          | camera 2          | plan: cumulative    |
    |                   |                   | x/y/z (cm) per      |
    |                   |                   | coarse step; grip   |
    +-------------------+-------------------+---------------------+
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

MIN_VIDEO_HEIGHT = 256  # pixels of the camera row
CAPTION_HEIGHT = 20  # at least; padded so that the frame height is a multiple of MACRO_BLOCK
MACRO_BLOCK = 16  # H.264 encodes 16 x 16 blocks: frame sides are padded to multiples of it
BACKGROUND = (24, 24, 24)
TEXT = (235, 235, 235)
AXIS = (110, 110, 110)
XYZ_COLOURS = ((230, 80, 80), (90, 200, 90), (90, 140, 240))  # x red, y green, z blue
GRIP_CLOSED, GRIP_OPEN = (240, 200, 60), (70, 70, 70)


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def _font(size: int) -> Any:
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)  # scalable with FreeType (Pillow >= 10.1)
    except (TypeError, ValueError, OSError):
        return ImageFont.load_default()


class PlanPanel:
    """A square picture of one decoded coarse plan: cumulative xyz displacement per coarse step, gripper strip.

    The plan's rows are sums of consecutive actions (Meta-World: hand xyz deltas of 1 cm per unit, and gripper
    effort, +1 closing), so the running sum of the xyz columns is where the plan moves the hand, in cm.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.font = _font(max(10, size // 20))

    def draw(self, plan: np.ndarray | None) -> np.ndarray:
        """(size, size, 3) uint8; ``plan`` (K, A) with xyz in columns 0-2 and the gripper in column 3."""
        from PIL import Image, ImageDraw

        size, font = self.size, self.font
        image = Image.new("RGB", (size, size), BACKGROUND)
        draw = ImageDraw.Draw(image)
        line = max(10, size // 20) + 4
        draw.text((6, 4), "coarse plan (cumulative)", fill=TEXT, font=font)
        if plan is None:
            draw.text((6, 4 + line), "no plan", fill=TEXT, font=font)
            return np.asarray(image)
        plan = np.asarray(plan, dtype=np.float64)
        path = np.vstack([np.zeros((1, 3)), np.cumsum(plan[:, :3], axis=0)])  # (K+1, 3) from the current hand
        scale = max(1.0, math.ceil(float(np.abs(path).max())))  # cm at the top of the axes
        left, right = 8, size - 8
        top, bottom = 4 + 2 * line, size - 3 * line  # the curves' box; the gripper strip and legend below
        middle = (top + bottom) / 2
        draw.rectangle((left, top, right, bottom), outline=AXIS)
        draw.line((left, middle, right, middle), fill=AXIS)
        draw.text((left + 2, top - line + 2), f"+{scale:g} cm", fill=AXIS, font=font)
        draw.text((left + 2, bottom + 1), f"-{scale:g} cm", fill=AXIS, font=font)
        steps = len(path) - 1
        xs = [left + (right - left) * k / max(steps, 1) for k in range(steps + 1)]
        for column, colour in enumerate(XYZ_COLOURS):
            ys = [middle - (bottom - top) / 2 * value / scale for value in path[:, column]]
            draw.line(list(zip(xs, ys)), fill=colour, width=max(1, size // 128))
        if plan.shape[1] > 3:  # gripper: one cell per coarse step, lit when the plan closes it
            strip_top = bottom + line
            for k, effort in enumerate(plan[:, 3]):
                colour = GRIP_CLOSED if effort > 0 else GRIP_OPEN
                draw.rectangle((xs[k], strip_top, xs[k + 1] - 1, strip_top + line // 2), fill=colour)
        legend_y = size - line
        for column, (name, colour) in enumerate(zip(("x", "y", "z"), XYZ_COLOURS)):
            draw.text((left + column * size // 8, legend_y), name, fill=colour, font=font)
        draw.text((left + 3 * size // 8, legend_y), "grip", fill=GRIP_CLOSED, font=font)
        return np.asarray(image)


class EpisodeVideo:
    """Frames of one episode (camera images side by side, a plan panel, a caption) written to an .mp4.

    Frames stream to ffmpeg (imageio-ffmpeg), so memory does not grow with the episode; the file appears under its
    name only when :meth:`close` succeeds.
    """

    def __init__(self, path: Path, *, cameras: int, image_size: int, fps: int, plan_panel: bool) -> None:
        import imageio.v2 as imageio

        self.path = Path(path)
        self.zoom = max(1, math.ceil(MIN_VIDEO_HEIGHT / image_size))
        side = image_size * self.zoom
        self.panel = PlanPanel(side) if plan_panel else None
        content_width = side * cameras + (side if plan_panel else 0)
        self.width = _round_up(content_width, MACRO_BLOCK)
        self.height = _round_up(side + CAPTION_HEIGHT, MACRO_BLOCK)
        self.caption_height = self.height - side
        self.font = _font(min(16, self.caption_height - 6))
        self._panel_plan: np.ndarray | None = None
        self._panel_image: np.ndarray | None = None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._temporary = self.path.with_name(f".{self.path.stem}.tmp-{os.getpid()}{self.path.suffix}")
        self._writer = imageio.get_writer(
            self._temporary, fps=fps, codec="libx264", pixelformat="yuv420p", macro_block_size=MACRO_BLOCK,
            ffmpeg_log_level="error",
        )

    def frame(self, images: Sequence[np.ndarray], plan: np.ndarray | None, caption: str) -> np.ndarray:
        """The (height, width, 3) uint8 frame of camera ``images`` (each (H, W, 3) uint8) and ``plan``."""
        from PIL import Image, ImageDraw

        canvas = np.empty((self.height, self.width, 3), np.uint8)
        canvas[:] = BACKGROUND
        x = 0
        for image in images:
            big = np.repeat(np.repeat(np.asarray(image, np.uint8), self.zoom, axis=0), self.zoom, axis=1)
            canvas[self.caption_height :, x : x + big.shape[1]] = big
            x += big.shape[1]
        if self.panel is not None:
            if self._panel_image is None or plan is not self._panel_plan:  # one drawing per decoded plan
                self._panel_plan, self._panel_image = plan, self.panel.draw(plan)
            canvas[self.caption_height :, x : x + self.panel.size] = self._panel_image
        header = Image.fromarray(canvas[: self.caption_height])
        ImageDraw.Draw(header).text((6, 3), caption, fill=TEXT, font=self.font)
        canvas[: self.caption_height] = np.asarray(header)
        return canvas

    def add(self, images: Sequence[np.ndarray], plan: np.ndarray | None, caption: str) -> None:
        self._writer.append_data(self.frame(images, plan, caption))

    def close(self) -> None:
        """Finish the file and move it into place."""
        self._writer.close()
        os.replace(self._temporary, self.path)

    def discard(self) -> None:
        """Stop writing and delete the partial file (after an error)."""
        try:
            self._writer.close()
        finally:
            self._temporary.unlink(missing_ok=True)

    def __enter__(self) -> "EpisodeVideo":
        return self

    def __exit__(self, exc_type: object, *exc_info: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.discard()


def success_chart(tasks: dict[str, float], groups: dict[str, float], path: Path, title: str = "") -> None:
    """Horizontal bars of success rates per task and, when ``groups`` is not empty, per group, saved as a PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    panels = [("task", tasks, "#4c72b0")] + ([("difficulty group", groups, "#dd8452")] if groups else [])
    rows = [len(values) + 1 for _, values, _ in panels]
    figure = Figure(figsize=(7.0, 1.2 + 0.26 * sum(rows)), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(panels), 1, squeeze=False, height_ratios=rows)[:, 0]
    for ax, (label, values, colour) in zip(axes, panels):
        names = list(values)
        rates = [100 * values[name] for name in names]
        bars = ax.barh(range(len(names)), rates, color=colour, height=0.7)
        ax.bar_label(bars, labels=[f"{rate:.0f}%" for rate in rates], padding=2, fontsize=8)
        ax.set_yticks(range(len(names)), names, fontsize=8)
        ax.set_ylim(len(names) - 0.5, -0.5)  # first task on top, no empty rows
        ax.set_xlim(0, 112)
        ax.set_xlabel("success rate (%)", fontsize=8)
        ax.set_title(f"per {label}", fontsize=9)
        ax.grid(axis="x", alpha=0.3)
    if title:
        figure.suptitle(title, fontsize=10)
    path = Path(path)
    temporary = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
    figure.savefig(temporary, dpi=110)
    os.replace(temporary, path)
