"""A still of `lerobot-eval` rollouts: one row per (eval folder, episode), frames evenly spaced through the episode,
each row labelled with the policy, the episode's outcome and its best-step reward from the folder's eval_info.json.

python examples/eval_strip.py --out docs/images/imf_vs_diffusion_liftcube.png \
    --row outputs/imf_twin/imf_cnn_s2.eval:0:"imf seed 2" --row outputs/imf_twin/diffusion_s1.eval:0:"diffusion seed 1"
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import av
import numpy as np
from PIL import Image, ImageDraw


def episode_frames(video: Path, count: int) -> list[np.ndarray]:
    """`count` RGB frames spread evenly from the first to the last frame of one episode video."""
    if not video.is_file():
        raise FileNotFoundError(f"{video}: no such eval video (lerobot-eval renders the first max_episodes_rendered)")
    with av.open(str(video)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    picks = np.linspace(0, len(frames) - 1, count).round().astype(int)
    return [frames[i] for i in picks]


def episode_outcome(eval_dir: Path, episode: int) -> str:
    metrics = json.loads((eval_dir / "eval_info.json").read_text())["per_task"][0]["metrics"]
    if episode >= len(metrics["successes"]):
        raise IndexError(f"{eval_dir}: episode {episode} asked, eval_info.json holds {len(metrics['successes'])}")
    outcome = "success" if metrics["successes"][episode] else "failure"
    return f"episode {episode}: {outcome}, best reward {metrics['max_rewards'][episode]:.2f}"


def strip_row(eval_dir: Path, episode: int, label: str, count: int) -> np.ndarray:
    videos = sorted((eval_dir / "videos").glob(f"*/eval_episode_{episode}.mp4"))
    if not videos:
        raise FileNotFoundError(f"{eval_dir}/videos/*/eval_episode_{episode}.mp4 not found")
    tiles = np.concatenate(episode_frames(videos[0], count), axis=1)
    banner = Image.new("RGB", (tiles.shape[1], 18), "white")
    ImageDraw.Draw(banner).text((4, 3), f"{label} | {episode_outcome(eval_dir, episode)}", fill="black")
    return np.concatenate([np.asarray(banner), tiles], axis=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--row", action="append", required=True, help="EVAL_DIR:EPISODE:LABEL, one per row")
    parser.add_argument("--frames", type=int, default=6, help="frames per row")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    rows = []
    for spec in args.row:
        eval_dir, episode, label = spec.split(":", 2)
        rows.append(strip_row(Path(eval_dir), int(episode), label, args.frames))
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate(rows, axis=0)).save(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
