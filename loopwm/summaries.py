"""TensorBoard logging: scalars, histograms and animated GIF "videos".

``torch.utils.tensorboard``'s ``add_video`` needs ``moviepy<2`` and silently writes nothing
without it, so videos are written here as GIF-encoded image summaries, which TensorBoard's
image tab plays as animations.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping

import numpy as np


class TensorBoardLogger:
    """A thin wrapper over ``SummaryWriter`` for loopwm's namespaced metrics."""

    def __init__(self, logdir: str | os.PathLike) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(logdir))

    def scalars(self, metrics: Mapping[str, float], step: int) -> None:
        for key, value in metrics.items():
            if isinstance(value, (int, float)) and np.isfinite(value):
                self.writer.add_scalar(key, value, step)

    def histogram(self, tag: str, values: np.ndarray, step: int) -> None:
        self.writer.add_histogram(tag, np.asarray(values, dtype=np.float64), step)

    def video(self, tag: str, frames: np.ndarray, step: int, fps: int = 10) -> None:
        """Frames (T, H, W, 3) uint8 as an animated GIF image summary."""
        import imageio.v3 as iio
        from tensorboard.compat.proto.summary_pb2 import Summary

        frames = np.asarray(frames, dtype=np.uint8)
        buffer = io.BytesIO()
        iio.imwrite(buffer, frames, extension=".gif", duration=1000 / fps, loop=0)
        image = Summary.Image(
            height=frames.shape[1],
            width=frames.shape[2],
            colorspace=3,
            encoded_image_string=buffer.getvalue(),
        )
        summary = Summary(value=[Summary.Value(tag=tag, image=image)])
        self.writer._get_file_writer().add_summary(summary, step)

    def close(self) -> None:
        self.writer.close()
