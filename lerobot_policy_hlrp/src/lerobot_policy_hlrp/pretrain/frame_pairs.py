"""Frame pairs (t, t+k) of one camera from any LeRobotDataset, for LAQ (stage 1).

k is given in seconds and turned into frames with the dataset's fps. Pairs stay inside episodes: t runs only over
frames whose t+k is in the same episode. (LeRobot's `delta_timestamps` would clamp t+k at the episode end and hand
back copies of the last frame, pairs that teach "no motion".) Every check runs in the constructor, before a
training step.

Only the chosen camera is decoded: a LeRobotDataset item decodes every video stream of the dataset (six in the
twin's ground-truth recordings: two RGB cameras, their depth and segmentation), so the frames are read here with
LeRobot's own `decode_video_frames` at the rows' timestamps, exactly as its reader does for one key.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from .perception_sources import PERCEPTION_SOURCES


def gap_frames(fps: float, gap_s: float) -> int:
    """The frame gap k for a gap of `gap_s` seconds at `fps`: rounded, at least 1."""
    if not gap_s > 0:
        raise ValueError(f"the frame gap must be positive, got gap_s={gap_s}")
    if not fps > 0:
        raise ValueError(f"the dataset fps must be positive, got {fps}")
    return max(1, round(gap_s * fps))


def info_file(meta) -> Path:
    """The metadata file a dataset's cameras, fps and features come from: what an error about them names."""
    return Path(meta.root) / "meta" / "info.json"


def check_whole_gap(meta, gap_s: float, tolerance: float = 0.05) -> int:
    """The gap in frames, refusing a gap_s the dataset cannot give: one that falls between its frames (0.3 s at
    15 fps would silently become 4 or 5 frames, another motion than the LAQ learned)."""
    frames = gap_s * float(meta.fps)
    if abs(frames - round(frames)) > tolerance or round(frames) < 1:
        whole = [round(k / float(meta.fps), 4) for k in (max(1, int(frames)), int(frames) + 1)]
        raise ValueError(
            f"{info_file(meta)}: gap_s={gap_s} is {frames:.3g} frames at the dataset's fps={meta.fps:g}, not a whole "
            f"number of frames; the nearest gaps it has are {whole} s"
        )
    return round(frames)


def episode_bounds(meta, episodes: list[int] | None) -> list[tuple[int, int, int]]:
    """(episode, first frame index, end frame index) of each chosen episode (all: None), from LeRobot's metadata."""
    eps = meta.episodes
    chosen = range(meta.total_episodes) if episodes is None else episodes
    return [(e, int(eps["dataset_from_index"][e]), int(eps["dataset_to_index"][e])) for e in chosen]


def pair_starts(bounds: list[tuple[int, int, int]], gap: int, fps: float | None = None) -> np.ndarray:
    """Absolute frame indices t with t + gap in the same episode.

    bounds: (episode index, first frame index, end frame index (exclusive)) per episode. Raises naming the episode
    that is empty, has a single frame, or is too short for the gap.
    """
    if not bounds:
        raise ValueError("no episodes to build frame pairs from")
    starts = []
    for ep, lo, hi in bounds:
        length = hi - lo
        if length < 2:
            what = "is empty" if length <= 0 else "has a single frame"
            raise ValueError(f"episode {ep} {what}: a frame pair needs at least 2 frames")
        if gap >= length:
            at = f" ({gap / fps:.3g} s at {fps:g} fps)" if fps else ""
            raise ValueError(
                f"episode {ep} has {length} frames, the frame gap is {gap} frames{at}: no pair (t, t+{gap}) fits in "
                "it; lower gap_s or drop the episode"
            )
        starts.append(np.arange(lo, hi - gap, dtype=np.int64))
    return np.concatenate(starts)


class FramePairs(Dataset):
    """{"pair": [2, 3, H, W] float [0, 1] (frames t and t+k), "index": t (the dataset's absolute frame
    index), "episode_index": its episode}.

    dataset: a LeRobotDataset, or a repo id / local dataset folder (with `root`, `episodes`, `video_backend` passed
    to LeRobotDataset). camera_key: e.g. "observation.images.front" ("front" is accepted for it).
    episodes: restrict to these episodes (a LeRobotDataset given already filtered keeps its own selection).
    cache_frames: decode the camera's frames of these episodes once, into memory as uint8 (small datasets such as
    twin recordings: decoding, not the model, is then no longer what a CPU run waits on).
    classes: also give each pair's class ids, "classes": [2, H, W] uint8 in the 6-class map of so101_core:
    "ground_truth" reads the camera's `<camera>_segmentation` key (the twin's exact labels), "segmenter" runs
    `segmenter` (so101_segmenter's model, at `segmenter_size`) on the RGB frames; None: no classes.
    """

    def __init__(
        self,
        dataset,
        camera_key: str,
        gap_s: float,
        *,
        root: str | Path | None = None,
        episodes: list[int] | None = None,
        video_backend: str | None = None,
        tolerance_s: float = 1e-4,
        cache_frames: bool = False,
        classes: str | None = None,
        segmenter: torch.nn.Module | None = None,
        segmenter_size: tuple[int, int] | None = None,
    ):
        from lerobot.datasets import LeRobotDataset

        meta, repo_id, root = self._open_metadata(dataset, root, episodes)
        name = meta.repo_id
        self.camera_key = self._check_camera(meta, camera_key, name)
        self.classes, self.segmenter, self.segmenter_size = classes, segmenter, segmenter_size
        self.seg_key = self._check_classes(meta, self.camera_key, classes, segmenter, name)
        self.source = None if classes is None else PERCEPTION_SOURCES[classes]
        self.fps = float(meta.fps)
        gap_frames(self.fps, gap_s)  # positive
        self.gap = check_whole_gap(meta, gap_s)

        available = list(range(meta.total_episodes))
        if isinstance(dataset, LeRobotDataset) and dataset.episodes is not None:
            available = list(dataset.episodes)
        chosen = available if episodes is None else list(episodes)
        bad = [e for e in chosen if e not in available]
        if bad:
            raise ValueError(f"dataset '{name}' has no episode(s) {bad}; it has {meta.total_episodes}")
        bounds = episode_bounds(meta, chosen)
        try:
            self.starts = pair_starts(bounds, self.gap, self.fps)
        except ValueError as err:
            raise ValueError(
                f"dataset '{name}' ({info_file(meta)}), camera {self.camera_key}, gap_s={gap_s}: {err}"
            ) from None
        self.episodes = chosen

        if isinstance(dataset, LeRobotDataset):
            self.ds = dataset
        else:
            self.ds = LeRobotDataset(
                repo_id, root=root, episodes=episodes, video_backend=video_backend, tolerance_s=tolerance_s
            )
        self.meta = self.ds.meta
        self.is_video = self.camera_key in self.meta.video_keys
        self._index_rows(bounds, name, chosen)
        self._backend = video_backend or getattr(self.ds, "_video_backend", None)
        self._cache: torch.Tensor | None = None
        self._class_cache: torch.Tensor | None = None
        self._cache_pos: dict[int, int] = {}
        if cache_frames:
            self._fill_cache(bounds)

    @staticmethod
    def _open_metadata(dataset, root: str | Path | None, episodes: list[int] | None) -> tuple:
        """(metadata, repo id, root) of `dataset`: a loaded LeRobotDataset (the chosen episodes must be among its
        own; repo id and root then unused), a repo id, or a dataset folder (named local/<folder name>)."""
        from lerobot.datasets import LeRobotDataset, LeRobotDatasetMetadata

        if isinstance(dataset, LeRobotDataset):
            if episodes is not None and dataset.episodes is not None and set(episodes) - set(dataset.episodes):
                raise ValueError(
                    f"episodes {sorted(set(episodes) - set(dataset.episodes))} are not among the loaded dataset's "
                    f"episodes {dataset.episodes}"
                )
            return dataset.meta, None, root
        repo_id = str(dataset)
        if root is None and (Path(repo_id) / "meta" / "info.json").is_file():
            root, repo_id = Path(repo_id), f"local/{Path(repo_id).name}"
        return LeRobotDatasetMetadata(repo_id, root=root), repo_id, root

    def _index_rows(self, bounds: list[tuple[int, int, int]], name: str, chosen: list[int]) -> None:
        """Absolute frame index -> row of the (possibly episode-filtered) table, and each row's time and episode;
        every chosen episode's first and last frame must have a row."""
        hf = self.ds.hf_dataset
        index = hf.data.column("index").to_numpy()
        self._row = {int(i): r for r, i in enumerate(index)}
        self._timestamp = hf.data.column("timestamp").to_numpy().astype(np.float64)
        self._episode = hf.data.column("episode_index").to_numpy()
        ends = {lo for _, lo, _ in bounds} | {hi - 1 for _, _, hi in bounds}
        absent = sorted(ends - set(self._row))
        if absent:
            raise ValueError(f"dataset '{name}' has no rows for frame indices {absent[:10]} of episodes {chosen}")

    def _fill_cache(self, bounds: list[tuple[int, int, int]]) -> None:
        """Decode the chosen episodes' frames once into memory (uint8), with their class maps when pairs carry them."""
        parts, class_parts = [], []
        for _, lo, hi in bounds:
            rows = [self._row[t] for t in range(lo, hi)]
            for r in rows:
                self._cache_pos[r] = len(self._cache_pos)
            parts.append(self._frames(rows, uint8=True))
            if self.classes is not None:
                class_parts.append(self._class_ids(rows, parts[-1]))
        self._cache = torch.cat(parts)
        self._class_cache = torch.cat(class_parts) if class_parts else None

    @staticmethod
    def _check_camera(meta, camera_key: str, name: str) -> str:
        rgb = [k for k in meta.camera_keys if k not in meta.depth_keys]
        if camera_key not in rgb and f"observation.images.{camera_key}" in rgb:
            camera_key = f"observation.images.{camera_key}"
        if camera_key not in rgb:
            raise ValueError(
                f"dataset '{name}' ({info_file(meta)}) has no RGB camera '{camera_key}'; its RGB cameras are {rgb}"
            )
        return camera_key

    @staticmethod
    def _check_classes(meta, camera_key: str, classes: str | None, segmenter, name: str) -> str | None:
        """The ground-truth segmentation key of the camera (for classes="ground_truth"), checked to exist."""
        # a dataset's own origin of classes: a source that reads one thing (`auto` chooses among them per dataset)
        origins = [name for name, s in PERCEPTION_SOURCES.items() if s.only_ground_truth or s.needs_segmenter]
        if classes is not None and classes not in origins:
            raise ValueError(f"classes must be None or one of {origins}, got {classes!r}")
        source = None if classes is None else PERCEPTION_SOURCES[classes]
        if source is not None and source.needs_segmenter and segmenter is None:
            raise ValueError(f"classes={classes!r} needs a segmenter model")
        if source is None or not source.only_ground_truth:
            return None
        key = f"{camera_key}_segmentation"
        if key not in meta.features:
            have = sorted(k for k in meta.features if k.endswith("_segmentation"))
            raise ValueError(
                f"dataset '{name}' ({info_file(meta)}) has no ground-truth segmentation '{key}' (its segmentation "
                f"keys: {have or 'none'}); record it with --robot.segmentation=true or use the segmenter"
            )
        return key

    def _class_ids(self, rows: list[int], frames_uint8: torch.Tensor | None = None) -> torch.Tensor:
        """[len(rows), H, W] uint8 class ids for rows of one episode, from the ground truth or the segmenter."""
        if self.source.needs_segmenter:
            frames = self._frames(rows, uint8=True) if frames_uint8 is None else frames_uint8
            return segment_frames(self.segmenter, frames, self.segmenter_size)
        return self._ground_truth(rows)

    def _ground_truth(self, rows: list[int]) -> torch.Tensor:
        from lerobot.configs.video import DepthEncoderConfig
        from lerobot.datasets.depth_utils import dequantize_depth
        from lerobot.datasets.video_utils import decode_video_frames

        from so101_core.segmentation import segmentation_from_code

        ep = int(self._episode[rows[0]])
        key = self.seg_key
        if key not in self.meta.video_keys:  # stored as images: LeRobot's table gives the code in metres
            code = torch.stack([self.ds.hf_dataset[r][key] for r in rows])
            return segmentation_from_code(code[:, 0], unit="m").to(torch.uint8)
        offset = float(self.meta.episodes[ep][f"videos/{key}/from_timestamp"])
        path = self.ds.root / self.meta.get_video_file_path(ep, key)
        raw = decode_video_frames(
            path, [offset + float(self._timestamp[r]) for r in rows], self.ds.tolerance_s, "pyav", is_depth=True
        )
        enc = DepthEncoderConfig.from_video_info(self.meta.features[key].get("info"))
        metres = dequantize_depth(
            raw, depth_min=enc.depth_min, depth_max=enc.depth_max, shift=enc.shift, use_log=enc.use_log,
            output_unit="m",
        )  # fmt: skip
        return segmentation_from_code(metres.reshape(len(rows), *metres.shape[-2:]), unit="m").to(torch.uint8)

    def __len__(self) -> int:
        return len(self.starts)

    def pair(self, i: int) -> tuple[int, int]:
        """(t, t+k) absolute frame indices of pair i."""
        t = int(self.starts[i])
        return t, t + self.gap

    def _frames(self, rows: list[int], uint8: bool = False) -> torch.Tensor:
        """[len(rows), 3, H, W] for rows of one episode: float in [0, 1], or uint8 in [0, 255] with `uint8`."""
        if not self.is_video:
            # image-stored cameras come out of LeRobot's table transform as float [0, 1] tensors already
            frames = torch.stack([self.ds.hf_dataset[r][self.camera_key] for r in rows]).float()
            return (frames * 255).round().to(torch.uint8) if uint8 else frames
        from lerobot.datasets.video_utils import decode_video_frames

        ep = int(self._episode[rows[0]])
        ep_meta = self.meta.episodes[ep]
        offset = float(ep_meta[f"videos/{self.camera_key}/from_timestamp"])
        path = self.ds.root / self.meta.get_video_file_path(ep, self.camera_key)
        frames = decode_video_frames(
            path, [offset + float(self._timestamp[r]) for r in rows], self.ds.tolerance_s, self._backend, uint8
        )
        return frames if uint8 else frames.float()

    def __getitem__(self, i: int) -> dict:
        t, tk = self.pair(i)
        rows = [self._row[t], self._row[tk]]
        if self._cache is not None:
            frames = self._cache[[self._cache_pos[r] for r in rows]].float() / 255
        else:
            frames = self._frames(rows)
        item = {"pair": frames, "index": t, "episode_index": int(self._episode[self._row[t]])}
        if self.classes is not None:
            if self._class_cache is not None:
                item["classes"] = self._class_cache[[self._cache_pos[r] for r in rows]]
            elif self.source.needs_segmenter:  # the pair's own frames, not decoded again
                item["classes"] = segment_frames(self.segmenter, (frames * 255).round().to(torch.uint8),
                                                 self.segmenter_size)  # fmt: skip
            else:
                item["classes"] = self._ground_truth(rows)
        return item


@torch.no_grad()
def segment_frames(model: torch.nn.Module, frames: torch.Tensor, size: tuple[int, int] | None, batch: int = 64):
    """uint8 RGB frames [N, 3, H, W] -> class ids [N, H, W] uint8 by so101_segmenter's model run at `size` (the
    size it was trained at; None: the frames' own), its logits resized back to (H, W), as so101-seg-infer does."""
    import torch.nn.functional as F

    out = []
    device = next(model.parameters()).device
    for lo in range(0, len(frames), batch):
        x = frames[lo : lo + batch].to(device).float() / 255
        h, w = x.shape[-2:]
        if size is not None and tuple(x.shape[-2:]) != tuple(size):
            x = F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False, antialias=True)
        logits = model(x)
        if tuple(logits.shape[-2:]) != (h, w):
            logits = F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False)
        out.append(logits.argmax(1).to(torch.uint8).cpu())
    return torch.cat(out)
