"""Stage-2 samples from any LeRobotDatasets: the trunk's frames at t, the LAQ camera's pair (t, t + gap), the action
chunk from t through the OXE adapter (unless the corpus is used as video only), and the instruction. Everything is
checked against each dataset's metadata before a step runs."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch.utils.data import ConcatDataset, Dataset

from so101_run_infra.dataset_ref import DatasetRef

from .action_adapter import ActionAdapter
from .frame_pairs import check_whole_gap, episode_bounds, gap_frames, info_file, pair_starts


@dataclass
class TrunkDatasetConfig(DatasetRef):
    repo_id: str  # every dataset of the corpus is named; root: its folder (None: by repo_id)
    # Cameras the trunk sees at t (observation.images.<name>), in order; every dataset gives the same number.
    cameras: list[str] = field(default_factory=lambda: ["front"])
    laq_camera: str = "front"  # the camera LAQ labels (t, t + gap) on
    gap_s: float = 0.3  # LAQ's frame gap in seconds, turned into frames with this dataset's fps
    episodes: list[int] | None = None


class TrunkSamples(Dataset):
    """One dataset's samples. `use_actions=False`: the dataset is video only (its actions, if any, are never
    read: no action chunk, stats or adapter entry needed), for stage 2's latent-only supervision."""

    def __init__(
        self,
        cfg: TrunkDatasetConfig,
        chunk_size: int,
        adapter: ActionAdapter,
        frame_size: tuple[int, int] | None,
        use_actions: bool = True,
    ):
        meta = cfg.metadata()
        self.name, self.use_actions = cfg.repo_id, use_actions
        keys = [f"observation.images.{c}" for c in cfg.cameras]
        self.laq_key = f"observation.images.{cfg.laq_camera}"
        cams = [k for k, ft in meta.features.items() if ft["dtype"] in ("video", "image")]
        missing = [k for k in [*keys, self.laq_key] if k not in cams]
        if missing:
            where = f"dataset '{cfg.repo_id}' ({info_file(meta)})"
            raise ValueError(f"{where} has no camera {missing}; its cameras are {cams}")
        self.keys, self.adapter = keys, adapter
        if use_actions:
            self._check_actions(meta, cfg.repo_id)
        self.frame_size = tuple(frame_size) if frame_size else None
        self.frame_shapes = {k: self.frame_size or tuple(meta.features[k]["shape"]) for k in [*keys, self.laq_key]}
        gap_frames(meta.fps, cfg.gap_s)  # positive
        self.gap = check_whole_gap(meta, cfg.gap_s)
        try:
            self.starts = pair_starts(episode_bounds(meta, cfg.episodes), self.gap, meta.fps)
        except ValueError as err:
            raise ValueError(f"dataset '{cfg.repo_id}' ({info_file(meta)}), gap_s={cfg.gap_s}: {err}") from None
        delta = {k: [0.0, self.gap / meta.fps] for k in {*keys, self.laq_key}}
        if use_actions:
            delta["action"] = [i / meta.fps for i in range(chunk_size)]
        # the dataset's own index is global; LeRobotDataset takes positions in its (possibly episode-filtered) rows
        self.ds = cfg.open(episodes=cfg.episodes, delta_timestamps=delta)
        self.offset = {int(i): pos for pos, i in enumerate(self.ds.hf_dataset["index"])} if cfg.episodes else None

    def _check_actions(self, meta, name: str) -> None:
        if "action" not in meta.features:
            raise ValueError(
                f"dataset '{name}' ({info_file(meta)}) has no 'action' feature: use it as video only "
                "(--use_actions=false) or drop it"
            )
        self.adapter.check(name, tuple(meta.features["action"]["shape"]))
        # Actions are standardised per dataset (OXE datasets range from metres to degrees) with its own stats,
        # as LeRobot's MEAN_STD normaliser does in stage 3
        stats = (meta.stats or {}).get("action")
        if not stats or "mean" not in stats or "std" not in stats:
            raise ValueError(f"dataset '{name}' has no action mean/std in its stats: recompute its stats")
        self.action_mean = torch.as_tensor(stats["mean"], dtype=torch.float32)
        self.action_std = torch.as_tensor(stats["std"], dtype=torch.float32)

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, i: int) -> dict:
        t = int(self.starts[i])
        item = self.ds[self.offset[t] if self.offset else t]
        frames = {k: self.resized(item[k]) for k in {*self.keys, self.laq_key}}  # [2, 3, H, W] each: t, t + gap
        sample = {
            "images": torch.stack([frames[k][0] for k in self.keys]),  # [n_cam, 3, H, W]
            "laq_pair": frames[self.laq_key],
            "task": item["task"],
        }
        if self.use_actions:
            normalised = (item["action"] - self.action_mean) / (self.action_std + 1e-8)
            actions, mask = self.adapter(self.name, normalised)
            sample["actions"] = actions  # [chunk, target_dim]
            sample["action_mask"] = mask[None, :] & ~item["action_is_pad"][:, None]  # [chunk, target_dim]
        return sample

    def resized(self, frames: torch.Tensor) -> torch.Tensor:
        if self.frame_size is None or tuple(frames.shape[-2:]) == self.frame_size:
            return frames
        return torch.nn.functional.interpolate(frames, size=self.frame_size, mode="bilinear", antialias=True)


def trunk_dataset(
    configs: list[TrunkDatasetConfig],
    chunk_size: int,
    adapter: ActionAdapter,
    frame_size: tuple[int, int] | None = None,
    use_actions: bool = True,
) -> Dataset:
    """All datasets as one; `frame_size` (H, W) resizes every camera so that datasets of different sizes batch.
    `use_actions=False`: video only, no dataset's actions are read."""
    if not configs:
        raise ValueError("stage 2 needs at least one dataset (--datasets)")
    n_cams = {len(c.cameras) for c in configs}
    if len(n_cams) > 1:
        raise ValueError(f"every dataset must give the trunk the same number of cameras, got {sorted(n_cams)}")
    parts = [TrunkSamples(c, chunk_size, adapter, frame_size, use_actions) for c in configs]
    # Batches stack frames, so every dataset must give the same frame sizes (convert OXE subsets to one size)
    shapes = {p.name: [p.frame_shapes[k] for k in p.keys] + [p.frame_shapes[p.laq_key]] for p in parts}
    if len({tuple(v) for v in shapes.values()}) > 1:
        raise ValueError(
            f"datasets give different frame shapes (trunk cameras, then the LAQ camera): {shapes}; set --frame_size"
        )
    return ConcatDataset(parts)
