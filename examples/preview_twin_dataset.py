"""Write a video and a still of a dataset recorded from the twin: RGB, segmentation and depth, side by side.

python examples/preview_twin_dataset.py --root outputs/demo/dataset --out outputs/demo --episode 0
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from lerobot_env_so101_twin.visualize import colorize_depth, colorize_segmentation, write_video
from so101_core import segmentation_from_code


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, required=True, help="dataset root written by lerobot-record")
    parser.add_argument("--repo-id", default="local/so101_twin_demo")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--episode", type=int, default=0)
    args = parser.parse_args()

    from lerobot.datasets import LeRobotDataset

    ds = LeRobotDataset(args.repo_id, root=args.root, episodes=[args.episode])
    cameras = [k.removeprefix("observation.images.") for k in ds.meta.camera_keys]
    cameras = [c for c in cameras if not c.endswith(("_depth", "_segmentation"))]
    panels = [frame_panel(ds[i], cameras) for i in tqdm(range(ds.num_frames), desc=f"episode {args.episode}")]
    video = write_video(panels, args.out / f"episode_{args.episode}.mp4", fps=ds.fps)
    still = args.out / f"episode_{args.episode}_frame_{len(panels) // 2}.png"
    Image.fromarray(panels[len(panels) // 2]).save(still)
    print(f"wrote {video} ({len(panels)} frames) and {still}")


if __name__ == "__main__":
    main()
