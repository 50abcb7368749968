"""The on-disk layout every segmentation dataset here shares, whoever wrote it (COCO masks or the simulator).

<root>/index.json        {"version": 1, "frames": [{"image", "mask", "grasp", "episode", "camera"}, ...]}
<root>/images/...        RGB images (any format PIL reads); paths in index.json are relative to <root>
<root>/masks/<name>.png  single-channel uint8 class ids (0 unlabeled .. 5 moving_finger)
<root>/disparity/<name>.png  optional: uint16 relative disparity, min-max normalised per frame, near = 65535
                         (the twin's depth, or a teacher's prediction: so101-seg-disparity); the depth head's target
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from so101_run_infra.atomic import write_bytes, write_text

from .classes import NUM_CLASSES

INDEX_NAME = "index.json"
INDEX_VERSION = 1


@dataclass
class FrameRecord:
    image: str
    mask: str  # "" for a frame kept only for its disparity target (so101-seg-disparity on unlabelled frames)
    grasp: bool = False
    episode: int | None = None  # simulator seed; frames of one episode must land in the same split
    camera: str | None = None
    disparity: str | None = None  # relative disparity target (uint16 PNG), for the segmenter's depth head


DISPARITY_MAX = 65535  # the near end of a stored disparity frame


def disparity_png(disparity: np.ndarray) -> np.ndarray:
    """Relative disparity (H, W), larger is nearer -> uint16 min-max normalised per frame (all-equal: zeros)."""
    disparity = np.asarray(disparity, dtype=np.float64)
    if not np.isfinite(disparity).all():
        raise ValueError("disparity holds NaN or infinite values")
    lo, hi = float(disparity.min()), float(disparity.max())
    if hi <= lo:
        return np.zeros(disparity.shape, dtype=np.uint16)
    return np.round((disparity - lo) / (hi - lo) * DISPARITY_MAX).astype(np.uint16)


def atomic_save_png(path: Path, array: np.ndarray) -> None:
    import io

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buf, format="PNG")
    write_bytes(path, buf.getvalue())


class DatasetIndex:
    def __init__(self, root: str | os.PathLike, records: list[FrameRecord] | None = None) -> None:
        self.root = Path(root)
        self.records: list[FrameRecord] = list(records or [])

    @property
    def path(self) -> Path:
        return self.root / INDEX_NAME

    @classmethod
    def load(cls, root: str | os.PathLike) -> DatasetIndex:
        root = Path(root)
        path = root / INDEX_NAME
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} does not exist: a segmentation dataset needs an index.json "
                "(write one with so101-seg-masks or so101-seg-render)"
            )
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON ({e})") from e
        if not isinstance(data, dict) or not isinstance(data.get("frames"), list):
            raise ValueError(f"{path}: expected an object with a 'frames' list")
        records = []
        for i, item in enumerate(data["frames"]):
            if not isinstance(item, dict) or "image" not in item or "mask" not in item:
                raise ValueError(f"{path}: frame {i} needs 'image' and 'mask' paths ('' for none), got {item!r}")
            records.append(FrameRecord(**{k: item[k] for k in FrameRecord.__dataclass_fields__ if k in item}))
        return cls(root, records)

    @classmethod
    def open_or_create(cls, root: str | os.PathLike) -> DatasetIndex:
        root = Path(root)
        return cls.load(root) if (root / INDEX_NAME).is_file() else cls(root)

    def add(self, records: list[FrameRecord]) -> None:
        self.records.extend(records)

    def save(self) -> Path:
        # a frame without a disparity target is written as before the field existed
        frames = [{k: v for k, v in asdict(r).items() if v is not None or k != "disparity"} for r in self.records]
        payload = {"version": INDEX_VERSION, "frames": frames}
        write_text(self.path, json.dumps(payload, indent=1) + "\n")
        return self.path

    def write_png(self, relative: str, array: np.ndarray) -> None:
        atomic_save_png(self.root / relative, array)

    def class_pixel_counts(self) -> np.ndarray:
        counts = np.zeros(256, dtype=np.int64)
        for r in self.records:
            counts += np.bincount(np.asarray(Image.open(self.root / r.mask)).reshape(-1), minlength=256)[:256]
        return counts[: max(NUM_CLASSES, int(np.flatnonzero(counts).max(initial=0)) + 1)]
