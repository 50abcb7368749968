"""A still of `lerobot-eval` rollouts: one row per (eval folder, episode), frames evenly spaced through the episode,
each row labelled with the policy, the episode's outcome, its best-step reward (from the folder's eval_info.json)
and its length; a title and a header naming each column's frame (and, with --cameras, what each frame shows) on top.

    python examples/eval_strip.py --output_path=docs/images/imf_vs_diffusion_liftcube.png \
        --rows='[outputs/imf_twin/imf_cnn_s2.eval:0:imf seed 2,outputs/imf_twin/diffusion_s1.eval:0:diffusion seed 1]' \
        --title="LiftCube in the twin, lerobot-eval --seed=1000" --cameras='[front,wrist]'
"""

import json
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np
from lerobot.configs import parser
from PIL import Image, ImageDraw, ImageFont

from so101_run_infra.cli import prepare_command_line

FONT = ImageFont.load_default(size=14)
LINE = sum(FONT.getmetrics()) + 4  # a banner's and a header line's height in pixels


@dataclass
class EvalStripConfig:
    # one row per entry, each EVAL_DIR:EPISODE:LABEL: a lerobot-eval output folder, an episode it rendered, a label
    rows: list[str] = field(default_factory=list)
    # frames per row, evenly spaced from the episode's first frame to its last
    frames: int = 6
    # the PNG to write (its folder is made); required
    output_path: Path | None = None
    # a title above the strip (default: "lerobot-eval rollouts")
    title: str | None = None
    # what each video frame shows left to right (the env's render cameras, e.g. '[front,wrist]'), named in the header
    cameras: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.rows:
            raise ValueError("--rows is required: '[EVAL_DIR:EPISODE:LABEL,...]', one entry per row")
        if self.output_path is None:
            raise ValueError("--output_path is required: the PNG to write")
        for spec in self.rows:
            parts = spec.split(":", 2)
            if len(parts) != 3 or not parts[1].isdigit():
                raise ValueError(f"--rows entry {spec!r} is not EVAL_DIR:EPISODE:LABEL (EPISODE a whole number)")


def episode_frames(video: Path, count: int) -> tuple[list[np.ndarray], float]:
    """`count` RGB frames spread evenly from the first to the last frame of one episode video, and its length in s."""
    if not video.is_file():
        raise FileNotFoundError(f"{video}: no such eval video (lerobot-eval renders the first max_episodes_rendered)")
    with av.open(str(video)) as container:
        rate = container.streams.video[0].average_rate
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    picks = np.linspace(0, len(frames) - 1, count).round().astype(int)
    return [frames[i] for i in picks], len(frames) / float(rate or 30)


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
    frames, seconds = episode_frames(videos[0], count)
    tiles = np.concatenate(frames, axis=1)
    banner = Image.new("RGB", (tiles.shape[1], LINE), "white")
    text = f"{label} | {episode_outcome(eval_dir, episode)} | {seconds:.1f} s"
    ImageDraw.Draw(banner).text((4, 2), text, fill="black", font=FONT)
    return np.concatenate([np.asarray(banner), tiles], axis=0)


def header(width: int, frame_width: int, count: int, title: str, cameras: list[str]) -> np.ndarray:
    """A white band: the title, then over each frame's column which frame of the episode it is (and its cameras)."""
    band = Image.new("RGB", (width, 2 * LINE + 4), "white")
    draw = ImageDraw.Draw(band)
    draw.text((4, 2), title, fill="black", font=FONT)
    for j in range(count):
        where = " (first)" if j == 0 else " (last)" if j == count - 1 else ""
        shows = f": {' | '.join(cameras)}" if cameras else ""
        draw.text((j * frame_width + 4, LINE + 2), f"frame {j + 1}/{count}{where}{shows}", fill="black", font=FONT)
    return np.asarray(band)


@parser.wrap()
def eval_strip(cfg: EvalStripConfig) -> Path:
    rows = []
    for spec in cfg.rows:
        eval_dir, episode, label = spec.split(":", 2)
        rows.append(strip_row(Path(eval_dir), int(episode), label, cfg.frames))
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    title = cfg.title or "lerobot-eval rollouts"
    title += f" - {cfg.frames} frames spread over each episode, first to last"
    rows.insert(0, header(width, width // cfg.frames, cfg.frames, title, cfg.cameras))
    cfg.output_path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate(rows, axis=0)).save(cfg.output_path)
    print(f"wrote {cfg.output_path}")
    return cfg.output_path


def main() -> None:
    prepare_command_line()
    eval_strip()


if __name__ == "__main__":
    main()
