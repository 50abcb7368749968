"""Twin recording speed: simulated frames per wall second, video encoding and dataset writing included.

Rows: `so101-twin-record` with 1 and 2 worker processes, for the demo's settings (wrist camera 160x120 with
ground-truth depth and segmentation) and for two 640x480 RGB cameras; the peer is the stock `lerobot-record` on the
same settings, which paces the twin at the real arm's 30 fps. The rate is episodes x frames over the wall time of
the whole command (worker start-up and merging included), and while recording (start-up in, the final merge out);
medians of `--repeats` runs. The demo-camera rows differ only in the x265 preset of the lossless depth streams.

    MUJOCO_GL=egl python benchmarks/record_speed.py --episodes 8 --repeats 3
"""

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lerobot.configs.video import DepthEncoderConfig

from lerobot_env_so101_twin.config_so101_twin import SO101TwinConfig
from lerobot_env_so101_twin.record import TwinDatasetConfig, TwinRecordConfig, record

DEMO_ROBOT = {"cameras": ["wrist"], "camera_height": 120, "camera_width": 160, "depth": True, "segmentation": True}
# (robot settings, dataset encoder settings): LeRobot's default encoders, and configs/demo.yaml's (x265's fastest
# preset for the lossless depth streams: the same decoded values)
SETTINGS = {
    "demo camera, LeRobot's default encoders": (DEMO_ROBOT, {}),
    "demo camera, configs/demo.yaml encoders": (DEMO_ROBOT, {"depth_encoder": DepthEncoderConfig(preset="ultrafast")}),
    "front + wrist 640x480 RGB": ({"cameras": ["front", "wrist"], "camera_height": 480, "camera_width": 640}, {}),
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
        f"--robot.camera_height={robot['camera_height']}",
        f"--robot.camera_width={robot['camera_width']}",
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--episodes", type=int, default=8, help="episodes of 5 s per run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--stock-episodes", type=int, default=2, help="episodes for the lerobot-record peer")
    parser.add_argument("--settings", nargs="*", default=list(SETTINGS), help="rows to run (default: all)")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.settings:
            settings = SETTINGS[name]
            runs = [("lerobot-record (paced at 30 fps)", lambda root, s=settings: stock(s, root, args.stock_episodes))]
            runs += [
                (
                    f"so101-twin-record, {w} worker{'s' * (w > 1)}",
                    lambda root, s=settings, w=w: fast(s, root, args.episodes, w),
                )
                for w in (1, 2)
            ]
            for label, fn in runs:
                rates = []
                for i in range(args.repeats if "twin-record" in label else 1):
                    root = Path(tmp) / f"run{i}"
                    rates.append(fn(root))
                    shutil.rmtree(root)
                    shutil.rmtree(root.with_name(f".{root.name}.partial"), ignore_errors=True)
                whole = statistics.median(r[0] for r in rates)
                recording = None if rates[0][1] is None else statistics.median(r[1] for r in rates)
                rows.append((name, label, whole, recording, len(rates)))
                print(f"{name} | {label}: {whole:.1f} frames/s (recording {recording})", file=sys.stderr, flush=True)
    print(
        f"\n{args.episodes} episodes of {SECONDS:.0f} s per so101-twin-record run, "
        f"{args.stock_episodes} for lerobot-record"
    )
    print("| settings | recorder | frames/s, whole command | x real time | frames/s recording | x real time | runs |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for name, label, whole, recording, n in rows:
        paced = recording is None
        rec = "paced" if paced else f"{recording:.1f}"
        rec_x = "-" if paced else f"{recording / FPS:.2f}"
        print(f"| {name} | {label} | {whole:.1f} | {whole / FPS:.2f} | {rec} | {rec_x} | {n} |")


if __name__ == "__main__":
    main()
