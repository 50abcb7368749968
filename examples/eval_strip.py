"""A still of `lerobot-eval` rollouts: one row per (eval folder, episode), frames evenly spaced through the episode,
each row labelled with the policy, the episode's outcome and its best-step reward from the folder's eval_info.json.

    python examples/eval_strip.py --output_path=docs/images/imf_vs_diffusion_liftcube.png \
        --rows='[outputs/imf_twin/imf_cnn_s2.eval:0:imf seed 2,outputs/imf_twin/diffusion_s1.eval:0:diffusion seed 1]'
"""

import json
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np
from lerobot.configs import parser
from PIL import Image, ImageDraw

from so101_core.cli import prepare_command_line

RENAMED_FLAGS = {"--row": "--rows", "--out": "--output_path"}  # the argparse spellings, kept one release


@dataclass
class EvalStripConfig:
    # one row per entry, each EVAL_DIR:EPISODE:LABEL: a lerobot-eval output folder, an episode it rendered, a label
    rows: list[str] = field(default_factory=list)
    # frames per row, evenly spaced from the episode's first frame to its last
    frames: int = 6
    # the PNG to write (its folder is made); required
    output_path: Path | None = None

    def __post_init__(self) -> None:
        if not self.rows:
            raise ValueError("--rows is required: '[EVAL_DIR:EPISODE:LABEL,...]', one entry per row")
        if self.output_path is None:
            raise ValueError("--output_path is required: the PNG to write")
        for spec in self.rows:
            parts = spec.split(":", 2)
            if len(parts) != 3 or not parts[1].isdigit():
                raise ValueError(f"--rows entry {spec!r} is not EVAL_DIR:EPISODE:LABEL (EPISODE a whole number)")


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


@parser.wrap()
def eval_strip(cfg: EvalStripConfig) -> Path:
    rows = []
    for spec in cfg.rows:
        eval_dir, episode, label = spec.split(":", 2)
        rows.append(strip_row(Path(eval_dir), int(episode), label, cfg.frames))
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    cfg.output_path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate(rows, axis=0)).save(cfg.output_path)
    print(f"wrote {cfg.output_path}")
    return cfg.output_path


def main() -> None:
    prepare_command_line(RENAMED_FLAGS, lists=["--rows"])
    eval_strip()


if __name__ == "__main__":
    main()
