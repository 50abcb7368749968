"""Wall time of the whole own-scene flow on this CPU, as docs/real-so101.md gives it: two rounds of
`so101-seg-autolabel` of N recorded demonstrations, then `so101-seg-train
--config_path=configs/own_scene/segmenter_adapt.yaml` on its labels (with the replayed randomised frames, made once
beforehand and not timed), the second round's cameras fitted to the first round's segmenter; each the stock command
in its own process, as a user runs them (the recording is the user's own time and is not counted).

Run from the repository root, on a recording (examples/own_scene.py records configs/own_scene/record_look.yaml):

    .venv/bin/python benchmarks/own_scene_flow.py --dataset_root=outputs/own_scene/data/look --demos=25

Rows: each stage's wall seconds over --repeats runs (median, min-max), each run in a fresh folder; the per-frame
labelling cost and the frames labelled come from the labelling report. Machine load is printed beside the table:
a figure measured beside other jobs is not a speed figure.
"""

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from lerobot.configs import parser

from so101_run_infra.cli import prepare_command_line

VENV_BIN = Path(sys.executable).parent


@dataclass
class FlowBenchConfig:
    # the recording (a LeRobot dataset of an SO-101 with front and wrist cameras); required
    dataset_root: Path | None = None
    # its repo id
    dataset_repo_id: str = "local/own_scene_look"
    # demonstrations labelled: the recording's first episodes
    demos: int = 25
    # runs of the whole flow, each in a fresh folder
    repeats: int = 1
    # so101-seg-train's config
    adapt_config: Path = Path("configs/own_scene/segmenter_adapt.yaml")
    # randomised frames replayed beside the labels (so101-seg-render, made once and not timed here); null: none
    replay_path: Path | None = Path("outputs/own_scene/frames/replay")

    def __post_init__(self):
        if self.dataset_root is None or not (self.dataset_root / "meta" / "info.json").is_file():
            raise ValueError(f"--dataset_root={self.dataset_root} is not a LeRobot dataset (meta/info.json)")


def timed(args: list[str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(args, capture_output=True, text=True, env={**os.environ, "MUJOCO_GL": "egl"})
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} exited {proc.returncode}:\n{(proc.stdout + proc.stderr)[-3000:]}")
    return time.perf_counter() - start


@parser.wrap()
def bench(cfg: FlowBenchConfig) -> None:
    names = [f"round {r}: {stage}" for r in (1, 2) for stage in ("so101-seg-autolabel", "so101-seg-train")]
    rows: dict[str, list[float]] = {name: [] for name in [*names, "whole flow"]}
    report = {}
    for _ in range(cfg.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            seconds, segmenter = [], []
            for r in (1, 2):
                labels, run = Path(tmp) / f"labels_{r}", Path(tmp) / f"segmenter_{r}"
                episodes = f"--dataset.episodes=[{','.join(map(str, range(cfg.demos)))}]"
                seconds.append(timed([str(VENV_BIN / "so101-seg-autolabel"), f"--dataset.repo_id={cfg.dataset_repo_id}",
                                      f"--dataset.root={cfg.dataset_root}", episodes, f"--output_dir={labels}",
                                      *segmenter]))  # fmt: skip
                report = json.loads((labels / "autolabel_report.json").read_text())
                replay = [f"--data.replay_path={cfg.replay_path}"] if cfg.replay_path else []
                seconds.append(timed([str(VENV_BIN / "so101-seg-train"), f"--config_path={cfg.adapt_config}",
                                      f"--data.path={labels}", f"--output_dir={run}", *replay]))  # fmt: skip
                segmenter = [f"--segmenter_path={run / 'best'}"]
        for name, value in zip(rows, [*seconds, sum(seconds)], strict=True):
            rows[name].append(value)
    load = os.getloadavg()[0]
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, load {load:.1f}; N = {cfg.demos}, "
          f"{report['frames_labelled']} frames labelled in round 2 ({report['images_labelled']} images), "
          f"{report['ms_per_frame']:.1f} ms an image to label")  # fmt: skip
    print("| stage | minutes, median | min-max |\n|---|---:|---:|")
    for name, values in rows.items():
        print(f"| {name} | {statistics.median(values) / 60:.1f} | {min(values) / 60:.1f}-{max(values) / 60:.1f} |")


def main() -> None:
    prepare_command_line()
    bench()


if __name__ == "__main__":
    main()
