"""Pictures of what the twin and the policies see: colour-mapped segmentation and depth, MP4 writing."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np

# unlabeled black, background grey, table brown, cube red, static finger blue, moving finger green
SEGMENTATION_PALETTE = np.array(
    [[0, 0, 0], [110, 110, 110], [160, 120, 80], [230, 40, 30], [40, 100, 235], [40, 210, 80]], dtype=np.uint8
)


def colorize_segmentation(ids: np.ndarray) -> np.ndarray:
    """(H, W) class ids -> (H, W, 3) uint8; ids outside the 6-class map show as magenta."""
    ids = np.asarray(ids)
    out = np.full((*ids.shape, 3), (255, 0, 255), dtype=np.uint8)
    valid = (ids >= 0) & (ids < len(SEGMENTATION_PALETTE))
    out[valid] = SEGMENTATION_PALETTE[ids[valid].astype(np.int64)]
    return out


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
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".mp4")
    os.close(fd)
    try:
        with av.open(tmp, mode="w") as container:
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
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
