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


def gap_frames(fps: float, gap_s: float) -> int:
    """The frame gap k for a gap of `gap_s` seconds at `fps`: rounded, at least 1."""
    if not gap_s > 0:
        raise ValueError(f"the frame gap must be positive, got gap_s={gap_s}")
    if not fps > 0:
        raise ValueError(f"the dataset fps must be positive, got {fps}")
    return max(1, round(gap_s * fps))


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
    ):
        from lerobot.datasets import LeRobotDataset, LeRobotDatasetMetadata

        if isinstance(dataset, LeRobotDataset):
            meta = dataset.meta
            if episodes is not None and dataset.episodes is not None and set(episodes) - set(dataset.episodes):
                raise ValueError(
                    f"episodes {sorted(set(episodes) - set(dataset.episodes))} are not among the loaded dataset's "
                    f"episodes {dataset.episodes}"
                )
        else:
            repo_id = str(dataset)
            if root is None and (Path(repo_id) / "meta" / "info.json").is_file():
                root, repo_id = Path(repo_id), f"local/{Path(repo_id).name}"
            meta = LeRobotDatasetMetadata(repo_id, root=root)
        name = meta.repo_id
        self.camera_key = self._check_camera(meta, camera_key, name)
        self.fps = float(meta.fps)
        self.gap = gap_frames(self.fps, gap_s)

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
            raise ValueError(f"dataset '{name}', camera {self.camera_key}, gap_s={gap_s}: {err}") from None
        self.episodes = chosen

        if isinstance(dataset, LeRobotDataset):
            self.ds = dataset
        else:
            self.ds = LeRobotDataset(
                repo_id, root=root, episodes=episodes, video_backend=video_backend, tolerance_s=tolerance_s
            )
        self.meta = self.ds.meta
        self.is_video = self.camera_key in self.meta.video_keys
        hf = self.ds.hf_dataset
        # absolute frame index -> row of the (possibly episode-filtered) table, and each row's time and episode
        index = hf.data.column("index").to_numpy()
        self._row = {int(i): r for r, i in enumerate(index)}
        self._timestamp = hf.data.column("timestamp").to_numpy().astype(np.float64)
        self._episode = hf.data.column("episode_index").to_numpy()
        ends = {lo for _, lo, _ in bounds} | {hi - 1 for _, _, hi in bounds}
        absent = sorted(ends - set(self._row))
        if absent:
            raise ValueError(f"dataset '{name}' has no rows for frame indices {absent[:10]} of episodes {chosen}")
        self._backend = video_backend or getattr(self.ds, "_video_backend", None)
        self._cache: torch.Tensor | None = None
        self._cache_pos: dict[int, int] = {}
        if cache_frames:
            parts = []
            for _, lo, hi in bounds:
                rows = [self._row[t] for t in range(lo, hi)]
                for r in rows:
                    self._cache_pos[r] = len(self._cache_pos)
                parts.append(self._frames(rows, uint8=True))
            self._cache = torch.cat(parts)

    @staticmethod
    def _check_camera(meta, camera_key: str, name: str) -> str:
        rgb = [k for k in meta.camera_keys if k not in meta.depth_keys]
        if camera_key not in rgb and f"observation.images.{camera_key}" in rgb:
            camera_key = f"observation.images.{camera_key}"
        if camera_key not in rgb:
            raise ValueError(f"dataset '{name}' has no RGB camera '{camera_key}'; its RGB cameras are {rgb}")
        return camera_key

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
        return {"pair": frames, "index": t, "episode_index": int(self._episode[self._row[t]])}
