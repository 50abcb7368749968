"""Pictures of what the twin and the policies see: colour-mapped segmentation and depth, MP4 writing."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

# The class colours are shared with the segmenter and the policies through so101_core; re-exported here.
from so101_core.palette import SEGMENTATION_PALETTE as SEGMENTATION_PALETTE
from so101_core.palette import colorize_segmentation as colorize_segmentation
from so101_run_infra.atomic import atomic_path


def colorize_depth(values: np.ndarray, near_is_bright: bool = True) -> np.ndarray:
    """(H, W) depth -> (H, W, 3) uint8 grey, normalised per image between the nearest value and the 90th
    percentile, so a far background (the sky is 50 m away) does not wash out the table and the arm."""
    v = np.asarray(values, dtype=np.float64)
    lo, hi = float(np.min(v)), float(np.percentile(v, 90))
    v = np.minimum(v, hi)
    x = (v - lo) / (hi - lo) if hi > lo else np.zeros_like(v)
    if near_is_bright:
        x = 1.0 - x
    return np.repeat((x * 255).astype(np.uint8)[..., None], 3, axis=-1)


def write_video(frames: Iterable[np.ndarray], path: str | Path, fps: int = 30) -> Path:
    """Write (H, W, 3) uint8 frames to an H.264 MP4, atomically (a temp file renamed into place)."""
    import av

    path = Path(path)
    with atomic_path(path) as tmp, av.open(str(tmp), mode="w") as container:
        stream = None
        for frame in frames:
            frame = np.ascontiguousarray(frame[: frame.shape[0] // 2 * 2, : frame.shape[1] // 2 * 2])
            if stream is None:
                stream = container.add_stream("libx264", rate=fps)
                stream.height, stream.width = frame.shape[:2]
                stream.pix_fmt = "yuv420p"
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        if stream is None:
            raise ValueError(f"no frames to write to {path}")
        container.mux(stream.encode())
    return path
