"""Write a video and a still of a dataset recorded from the twin: RGB, segmentation and depth, side by side.

python examples/preview_twin_dataset.py --dataset.root=outputs/demo/dataset --output_dir=outputs/demo --episode=0
"""

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from lerobot.configs import parser
from PIL import Image
from tqdm import tqdm

from lerobot_env_so101_twin.visualize import colorize_depth, colorize_segmentation, write_video
from so101_core import segmentation_from_code
from so101_run_infra.cli import prepare_command_line


@dataclass
class PreviewDatasetConfig:
    # the dataset's repo id, as it was recorded
    repo_id: str = "local/so101_twin_demo"
    # the dataset's folder (written by so101-twin-record or lerobot-record); required
    root: Path | None = None


@dataclass
class PreviewTwinDatasetConfig:
    dataset: PreviewDatasetConfig = field(default_factory=PreviewDatasetConfig)
    # where episode_<N>.mp4 and the still go; required
    output_dir: Path | None = None
    # the episode to show
    episode: int = 0

    def __post_init__(self) -> None:
        if self.dataset.root is None or self.output_dir is None:
            raise ValueError("--dataset.root and --output_dir are required")


def frame_panel(item: dict, cameras: list[str]) -> np.ndarray:
    """One row per camera: RGB | segmentation | depth (near is bright), whichever the dataset holds."""
    rows = []
    for cam in cameras:
        tiles = [(item[f"observation.images.{cam}"].permute(1, 2, 0).numpy() * 255).astype(np.uint8)]
        seg_key, depth_key = f"observation.images.{cam}_segmentation", f"observation.images.{cam}_depth"
        if seg_key in item:
            tiles.append(colorize_segmentation(segmentation_from_code(item[seg_key][0].numpy(), unit="mm")))
        if depth_key in item:
            tiles.append(colorize_depth(item[depth_key][0].numpy()))
        rows.append(np.concatenate(tiles, axis=1))
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0))) for r in rows]
    return np.concatenate(rows, axis=0)


@parser.wrap()
def preview(cfg: PreviewTwinDatasetConfig) -> None:
    from lerobot.datasets import LeRobotDataset

    ds = LeRobotDataset(cfg.dataset.repo_id, root=cfg.dataset.root, episodes=[cfg.episode])
    cameras = [k.removeprefix("observation.images.") for k in ds.meta.camera_keys]
    cameras = [c for c in cameras if not c.endswith(("_depth", "_segmentation"))]
    panels = [frame_panel(ds[i], cameras) for i in tqdm(range(ds.num_frames), desc=f"episode {cfg.episode}")]
    video = write_video(panels, cfg.output_dir / f"episode_{cfg.episode}.mp4", fps=ds.fps)
    still = cfg.output_dir / f"episode_{cfg.episode}_frame_{len(panels) // 2}.png"
    Image.fromarray(panels[len(panels) // 2]).save(still)
    print(f"wrote {video} ({len(panels)} frames) and {still}")


def main() -> None:
    prepare_command_line()
    preview()


if __name__ == "__main__":
    main()
