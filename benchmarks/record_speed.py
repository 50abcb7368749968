"""Twin recording speed: simulated frames per wall second, video encoding and dataset writing included.

Rows: `so101-twin-record` with 1 and 2 worker processes, for the demo's settings (wrist camera 160x120 with
ground-truth depth and segmentation) and for two 640x480 RGB cameras; the peer is the stock `lerobot-record` on the
same settings, which paces the twin at the real arm's 30 fps. The rate is episodes x frames over the wall time of
the whole command (worker start-up and merging included), and while recording (start-up in, the final merge out);
medians of `--repeats` runs. The demo-camera rows differ only in the x265 preset of the lossless depth streams.

    MUJOCO_GL=egl python benchmarks/record_speed.py --episodes=8 --repeats=3
    MUJOCO_GL=egl python benchmarks/record_speed.py --settings='[demo_ultrafast,rgb_640x480]'
"""

import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from lerobot.configs import parser
from lerobot.configs.video import DepthEncoderConfig

from lerobot_env_so101_twin.commands.record import TwinDatasetConfig, TwinRecordConfig, record
from lerobot_env_so101_twin.config_robot import SO101TwinConfig
from so101_run_infra.cli import prepare_command_line

DEMO_ROBOT = {
    "cameras": ["wrist"],
    "observation_height": 120,
    "observation_width": 160,
    "depth": True,
    "segmentation": True,
}
# --settings name: (the table's label, robot settings, dataset encoder settings). LeRobot's default encoders, and
# configs/demo.yaml's (x265's fastest preset for the lossless depth streams: the same decoded values)
SETTINGS = {
    "demo_default": ("demo camera, LeRobot's default encoders", DEMO_ROBOT, {}),
    "demo_ultrafast": (
        "demo camera, configs/demo.yaml encoders",
        DEMO_ROBOT,
        {"depth_encoder": DepthEncoderConfig(preset="ultrafast")},
    ),
    "rgb_640x480": (
        "front + wrist 640x480 RGB",
        {"cameras": ["front", "wrist"], "observation_height": 480, "observation_width": 640},
        {},
    ),
}
SECONDS = 5.0
FPS = 30


def fast(settings: tuple, root: Path, episodes: int, workers: int) -> tuple[float, float]:
    """(rate over the whole call, the recorder's rate while recording: worker start-up in, merging out)."""
    robot, encoders = settings
    cfg = TwinRecordConfig(
        robot=SO101TwinConfig(**robot, action_noise_std=1.0),
        dataset=TwinDatasetConfig(
            repo_id="local/bench", root=str(root), num_episodes=episodes, episode_time_s=SECONDS, **encoders
        ),
        num_workers=workers,
        episodes_per_shard=max(1, episodes // (2 * workers)),
        fail_fast_episodes=0,
    )
    start = time.perf_counter()
    summary = record(cfg)
    return episodes * SECONDS * FPS / (time.perf_counter() - start), summary["simulated_frames_per_second"]


def stock(settings: tuple, root: Path, episodes: int) -> tuple[float, None]:
    """(rate over the whole call, None: the paced loop has no separate recording rate, it is 30 frames/s)."""
    robot, _ = settings
    bool_flag = {True: "true", False: "false"}
    args = [
        str(Path(sys.executable).parent / "lerobot-record"),
        "--robot.type=so101_twin",
        f"--robot.cameras=[{','.join(robot['cameras'])}]",
        f"--robot.observation_height={robot['observation_height']}",
        f"--robot.observation_width={robot['observation_width']}",
        f"--robot.depth={bool_flag[robot.get('depth', False)]}",
        f"--robot.segmentation={bool_flag[robot.get('segmentation', False)]}",
        "--robot.action_noise_std=1.0",
        "--teleop.type=so101_twin_expert",
        "--dataset.repo_id=local/bench",
        f"--dataset.root={root}",
        f"--dataset.num_episodes={episodes}",
        f"--dataset.episode_time_s={SECONDS}",
        "--dataset.reset_time_s=0",
        "--dataset.single_task=Pick up the red cube and lift it.",
        "--dataset.push_to_hub=false",
        "--play_sounds=false",
    ]
    start = time.perf_counter()
    subprocess.run(args, check=True, capture_output=True)
    wall = time.perf_counter() - start
    info = (root / "meta" / "info.json").read_text()
    frames = int(info.split('"total_frames":')[1].split(",")[0])
    return frames / wall, None


@dataclass
class RecordSpeedConfig:
    # episodes of 5 s per so101-twin-record run
    episodes: int = 8
    # so101-twin-record runs per row (the table shows their median); lerobot-record runs once
    repeats: int = 3
    # episodes for the lerobot-record peer
    stock_episodes: int = 2
    # the rows to run: demo_default (the demo camera, LeRobot's default encoders), demo_ultrafast (configs/demo.yaml's
    # encoders), rgb_640x480 (front + wrist 640x480 RGB)
    settings: list[str] = field(default_factory=lambda: list(SETTINGS))

    def __post_init__(self) -> None:
        unknown = [name for name in self.settings if name not in SETTINGS]
        if unknown:
            raise ValueError(f"--settings has unknown row(s) {unknown}; the rows are {list(SETTINGS)}")


@parser.wrap()
def benchmark(cfg: RecordSpeedConfig) -> None:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for key in cfg.settings:
            name, settings = SETTINGS[key][0], SETTINGS[key][1:]
            runs = [("lerobot-record (paced at 30 fps)", lambda root, s=settings: stock(s, root, cfg.stock_episodes))]
            runs += [
                (
                    f"so101-twin-record, {w} worker{'s' * (w > 1)}",
                    lambda root, s=settings, w=w: fast(s, root, cfg.episodes, w),
                )
                for w in (1, 2)
            ]
            for label, fn in runs:
                rates = []
                for i in range(cfg.repeats if "twin-record" in label else 1):
                    root = Path(tmp) / f"run{i}"
                    rates.append(fn(root))
                    shutil.rmtree(root)
                    shutil.rmtree(root.with_name(f".{root.name}.partial"), ignore_errors=True)
                whole = statistics.median(r[0] for r in rates)
                recording = None if rates[0][1] is None else statistics.median(r[1] for r in rates)
                rows.append((name, label, whole, recording, len(rates)))
                print(f"{name} | {label}: {whole:.1f} frames/s (recording {recording})", file=sys.stderr, flush=True)
    print(
        f"\n{cfg.episodes} episodes of {SECONDS:.0f} s per so101-twin-record run, "
        f"{cfg.stock_episodes} for lerobot-record"
    )
    print("| settings | recorder | frames/s, whole command | x real time | frames/s recording | x real time | runs |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for name, label, whole, recording, n in rows:
        paced = recording is None
        rec = "paced" if paced else f"{recording:.1f}"
        rec_x = "-" if paced else f"{recording / FPS:.2f}"
        print(f"| {name} | {label} | {whole:.1f} | {whole / FPS:.2f} | {rec} | {rec_x} | {n} |")


def main() -> None:
    prepare_command_line()
    benchmark()


if __name__ == "__main__":
    main()
