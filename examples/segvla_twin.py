"""SegVLA's cue experiment in the twin, stage by stage, resuming where it stopped:

1. record the demonstrations (`so101-twin-record --config_path=configs/segvla_twin_record.yaml`)
2. make the twin-size random SmolVLM2-shaped backbone (`so101-make-random-vlm --size=twin`)
3. render randomised twin frames and train the 6-class segmenter (`so101-seg-render`, `so101-seg-train
   --config_path=configs/segmenter_twin.yaml`), only if an arm uses segmenter cues
4. for every arm and seed, `lerobot-train` (same recording, steps and seeds; the arms differ only in the cues)
5. every checkpoint through `lerobot-eval` on the same unseen cube poses (`--seed=1000`), in each appearance
6. the table: success per seed and appearance, each arm's pooled rate with its Wilson 95% interval, and each cue
   arm's difference from the no-cue arm with Newcombe's 95% interval

    .venv/bin/python examples/segvla_twin.py                        # three arms x three seeds, both appearances
    .venv/bin/python examples/segvla_twin.py --seeds='[1]' --arms='[cues_gt,no_cues]'

A finished stage is skipped when run again (its output is there); an interrupted lerobot-train resumes from its last
checkpoint. Every command's output goes to `<output_dir>/logs/`; `<output_dir>/results.json` holds the table's figures.
"""

import json
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

from lerobot.configs import parser

from so101_devtools.stages import run_logged
from so101_devtools.twin_eval import eval_args
from so101_devtools.twin_runs import archive, archived, inputs_stage, train_run
from so101_run_infra.atomic import write_json
from so101_run_infra.cli import prepare_command_line
from so101_run_infra.stats import newcombe, wilson

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
EVAL_ENV = [  # the recording's inputs (configs/segvla_twin_record.yaml)
    "--env.cameras=[front,wrist]",
    "--env.observation_height=96",
    "--env.observation_width=128",
    "--env.segmentation=true",
]
SEGMENTER_RENDERS = {  # so101-seg-render's train and test sets for configs/segmenter_twin.yaml
    "sim_train": ["--episodes=400", "--frames_per_episode=4", "--seed=0"],
    "sim_test": ["--episodes=60", "--frames_per_episode=4", "--seed=100000"],
}


@dataclass
class SegVLATwinConfig:
    # every stage's output, the logs and results.json; a finished stage found here is skipped
    output_dir: Path = Path("outputs/segvla_twin")
    # so101-twin-record's config for the demonstrations
    record_config: Path = Path("configs/segvla_twin_record.yaml")
    # lerobot-train's config for the cue arms (SegVLA)
    segvla_config: Path = Path("configs/segvla_twin.yaml")
    # lerobot-train's config for the no-cue arm (SmolVLA, otherwise the same)
    no_cue_config: Path = Path("configs/smolvla_twin.yaml")
    # so101-seg-train's config for the cues_segmenter arm's segmenter
    segmenter_config: Path = Path("configs/segmenter_twin.yaml")
    # the twin-size random SmolVLM2-shaped backbone (made by so101-make-random-vlm when missing)
    vlm_dir: Path = Path("outputs/models/smolvlm_twin")
    # cues_gt: the twin's exact segmentation; cues_segmenter: the suite's segmenter on the RGB frames; no_cues: SmolVLA
    arms: list[str] = field(default_factory=lambda: ["cues_gt", "cues_segmenter", "no_cues"])
    # training seeds, one lerobot-train run per arm and seed
    seeds: list[int] = field(default_factory=lambda: [1, 2, 3])
    # lerobot-train's --steps for every run
    steps: int = 2600
    # the twin appearances every checkpoint is evaluated in (--env.appearance)
    appearances: list[str] = field(default_factory=lambda: ["none", "shifted"])
    # lerobot-eval episodes per checkpoint and appearance
    eval_episodes: int = 20
    # lerobot-eval's --seed: cube poses none of the recording's seeds gave
    eval_seed: int = 1000
    # torch threads for lerobot-train; PASSIVE lets idle threads sleep so the loader workers get the cores
    torch_threads: int = 2
    # OMP_WAIT_POLICY for lerobot-train
    omp_wait_policy: str = "PASSIVE"
    # a folder keeping each finished run's evaluation files and training time (a few kB, small enough to commit):
    # a run found there is not trained again, so the experiment outlives its checkpoints and spans machines
    archive_dir: Path | None = None

    def __post_init__(self):
        unknown = sorted(set(self.arms) - {"cues_gt", "cues_segmenter", "no_cues"})
        if unknown:
            raise ValueError(f"--arms has unknown arm(s) {unknown}; the arms are cues_gt, cues_segmenter, no_cues")
        from lerobot_env_so101_twin.appearance import check_level

        for level in self.appearances:
            check_level(level, "appearances")


def segmenter_checkpoint(cfg: SegVLATwinConfig) -> Path:
    return cfg.output_dir / "segmenter" / "run" / "best"


def arm_args(cfg: SegVLATwinConfig, arm: str) -> list[str]:
    if arm == "no_cues":
        return [f"--config_path={cfg.no_cue_config}"]
    args = [f"--config_path={cfg.segvla_config}"]
    if arm == "cues_segmenter":
        args += [
            "--policy.perception_source=segmenter",
            f"--policy.segmentation_segmenter_path={segmenter_checkpoint(cfg)}",
        ]
    return args


def segmenter_stage(cfg: SegVLATwinConfig) -> Path:
    best = segmenter_checkpoint(cfg)
    if (best / "model.safetensors").is_file():
        return best
    data = cfg.output_dir / "segmenter"
    for name, args in SEGMENTER_RENDERS.items():
        height, width = 96, 128  # the recording's camera size (configs/segvla_twin_record.yaml)
        render = [str(VENV_BIN / "so101-seg-render"), f"--output_dir={data / name}", *args]
        render += [f"--height={height}", f"--width={width}"]
        run_logged(render, cfg.output_dir / "logs" / f"segmenter_{name}.log", f"segmenter frames ({name})")
    train = [
        str(VENV_BIN / "so101-seg-train"),
        f"--config_path={cfg.segmenter_config}",
        f"--data.path={data / 'sim_train'}",
        f"--data.test_path={data / 'sim_test'}",
        f"--output_dir={data / 'run'}",
    ]
    run_logged(train, cfg.output_dir / "logs" / "segmenter_train.log", "segmenter training")
    return best


def train_stage(cfg: SegVLATwinConfig, arm: str, seed: int, recording_root: Path) -> Path:
    """lerobot-train for one arm and seed; returns the final checkpoint. Resumes from the last saved checkpoint."""
    recipe = [*arm_args(cfg, arm), f"--steps={cfg.steps}", f"--policy.vlm_model_name={cfg.vlm_dir}"]
    return train_run(cfg, arm, seed, recording_root, cfg.steps, recipe)


def run_done(cfg: SegVLATwinConfig, arm: str, seed: int) -> bool:
    """Every evaluation of a run and its training time archived: its checkpoint is no longer needed."""
    names = [f"{arm}_s{seed}_{a}_{cfg.eval_episodes}.json" for a in cfg.appearances]
    return all(archived(cfg, n) for n in [f"{arm}_s{seed}_train_wall_s.json", *names])


def train_wall(cfg: SegVLATwinConfig, arm: str, seed: int) -> float:
    timing = cfg.output_dir / f"{arm}_s{seed}" / "train_wall_s.json"
    timing = archived(cfg, f"{arm}_s{seed}_train_wall_s.json") or timing
    archive(cfg, timing, f"{arm}_s{seed}_train_wall_s.json")
    return json.loads(timing.read_text())["seconds"]


def eval_stage(cfg: SegVLATwinConfig, checkpoint: Path | None, name: str, appearance: str, episodes: int) -> dict:
    out = cfg.output_dir / "eval" / f"{name}_{appearance}_{episodes}"
    info = archived(cfg, f"{name}_{appearance}_{episodes}.json") or out / "eval_info.json"
    if not info.is_file():
        if out.exists():
            shutil.rmtree(out)
        args = eval_args(checkpoint, EVAL_ENV, appearance, episodes, 1, cfg.eval_seed, out)
        log = cfg.output_dir / "logs" / f"eval_{name}_{appearance}_{episodes}.log"
        run_logged(
            args, log, f"eval {name} ({appearance})", episodes, r"Stepping through eval batches: .*?\| *(\d+)/\d+"
        )
    archive(cfg, info, f"{name}_{appearance}_{episodes}.json")
    overall = json.loads(info.read_text())["overall"]
    successes = round(overall["pc_success"] * overall["n_episodes"] / 100)
    return {"successes": successes, "episodes": overall["n_episodes"], "mean_return": overall["avg_sum_reward"]}


def table(cfg: SegVLATwinConfig, results: dict) -> str:
    lines = [
        "| arm | appearance | "
        + " | ".join(f"seed {s}" for s in cfg.seeds)
        + " | pooled, Wilson 95% | vs no_cues, Newcombe 95% |"
    ]
    lines.append("|---" * (4 + len(cfg.seeds)) + "|")
    for appearance in cfg.appearances:
        pooled = {}
        for arm in cfg.arms:
            runs = [results[arm][str(s)][appearance] for s in cfg.seeds]
            pooled[arm] = wilson(sum(r["successes"] for r in runs), sum(r["episodes"] for r in runs))
        for arm in cfg.arms:
            runs = [results[arm][str(s)][appearance] for s in cfg.seeds]
            cells = [f"{r['successes']}/{r['episodes']}" for r in runs]
            diff = str(newcombe(pooled[arm], pooled["no_cues"])) if arm != "no_cues" and "no_cues" in pooled else ""
            lines.append(f"| {arm} | {appearance} | " + " | ".join(cells) + f" | {pooled[arm]} | {diff} |")
    return "\n".join(lines)


@parser.wrap()
def segvla_twin(cfg: SegVLATwinConfig) -> dict:
    os.chdir(ROOT)
    (cfg.output_dir / "logs").mkdir(parents=True, exist_ok=True)
    todo = [(arm, seed) for seed in cfg.seeds for arm in cfg.arms if not run_done(cfg, arm, seed)]
    recording_root = inputs_stage(cfg, bool(todo))  # the recording, backbone and segmenter: for runs still to train
    if any(arm == "cues_segmenter" for arm, _ in todo):
        segmenter_stage(cfg)
    results: dict = {}
    for seed in cfg.seeds:
        for arm in cfg.arms:
            checkpoint = None if run_done(cfg, arm, seed) else train_stage(cfg, arm, seed, recording_root)
            entry = results.setdefault(arm, {}).setdefault(str(seed), {"train_wall_s": train_wall(cfg, arm, seed)})
            for appearance in cfg.appearances:
                entry[appearance] = eval_stage(cfg, checkpoint, f"{arm}_s{seed}", appearance, cfg.eval_episodes)
    out = cfg.output_dir / "results.json"
    write_json(out, results)
    print(table(cfg, results))
    return results


def main() -> None:
    prepare_command_line()
    segvla_twin()


if __name__ == "__main__":
    main()
