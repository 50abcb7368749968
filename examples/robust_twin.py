"""Policies when the scene looks different: every policy trained on one recording in the `shifted` look, then
evaluated on the same unseen cube poses in the `none`, `shifted` and `unseen` looks, resuming where it stopped.

1. record the demonstrations (`so101-twin-record --config_path=configs/robust_twin_record.yaml`)
2. make the twin-size random SmolVLM2-shaped backbone (`so101-make-random-vlm --size=twin`), for the SmolVLA arms
3. the segmenters the arms read: render randomised twin frames and train each (`so101-seg-render`, `so101-seg-train
   --config_path=configs/segmenter_twin.yaml`, and the robust one with its depth head,
   `--config_path=configs/segmenter_robust.yaml`), then measure them on frames of each look (`so101-seg-eval`)
4. for every arm and seed, `lerobot-train --config_path=<config_dir>/<arm>.yaml --seed=<seed>`
5. every checkpoint through `lerobot-eval` on the same cube poses (`--seed=<eval_seed>`), in each look
6. for the arms of `action_error_arms`, each checkpoint's held-out action error per look (`so101-action-error` on
   small recordings from episode seeds 500000+, `so101-twin-record`), a signal with less noise than 20 rollouts
7. the table: success per seed and look, each arm's pooled rate with its Wilson 95% interval, the training time,
   the held-out error, and the segmentation cues' effect (`cue_arm` minus `no_cue_arm`) with Newcombe's 95%
   interval per look; with `--checkpoints`, a learning curve: the earlier saved checkpoints evaluated the same way,
   its table and its figure

    python examples/robust_twin.py --archive_dir=docs/data/robust_twin
    python examples/robust_twin.py --config_dir=configs/robust_twin/curve --arms='[segvla,smolvla]' --seeds='[1]' \
        --checkpoints='[2600,5200,7800]' --archive_dir=docs/data/robust_twin/curve \
        --curve_figure=docs/images/robust_twin_curve.png
    python examples/robust_twin.py --config_dir=configs/robust_twin/tuning --arms='[segvla_tokens,smolvla]' \
        --seeds='[1]' --appearances='[unseen]' --eval_seed=2000 --eval_batch_size=1 \
        --output_dir=outputs/robust_twin/tuning

The second form is how a recipe is chosen: on other cube poses (`--eval_seed=2000`) than the reported ones
(`--eval_seed=1000`). A finished stage is skipped when run again; an interrupted lerobot-train resumes from its last
checkpoint. Every command's output goes to `<output_dir>/logs/`; `<output_dir>/results.json` holds the figures.
"""

import json
import os
import platform
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import draccus
from lerobot.configs import parser

from lerobot_env_so101_twin.appearance import check_level
from lerobot_policy_segvla.perception_sources import PERCEPTION_SOURCES
from so101_devtools.learning_curve import curve_figure, hold_reference
from so101_devtools.stages import run_logged
from so101_devtools.twin_eval import env_flags, eval_args
from so101_devtools.twin_runs import archive, archived, inputs_stage, train_run
from so101_run_infra.atomic import write_json
from so101_run_infra.cli import prepare_command_line
from so101_run_infra.stats import newcombe, wilson

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent


@dataclass
class RobustTwinConfig:
    # every stage's output, the logs and results.json; a finished stage found here is skipped
    output_dir: Path = Path("outputs/robust_twin")
    # so101-twin-record's config for the demonstrations (the `shifted` look)
    record_config: Path = Path("configs/robust_twin_record.yaml")
    # arm <name> trains with lerobot-train --config_path=<config_dir>/<name>.yaml
    config_dir: Path = Path("configs/robust_twin")
    # the policies compared, each a config file in config_dir
    arms: list[str] = field(
        default_factory=lambda: [
            "segvla", "smolvla", "act", "imf", "segdepth", "segdepth_rgb", "segdepth_seg", "segdepth_rgbonly"
        ]
    )  # fmt: skip
    # the cue effect is cue_arm minus no_cue_arm, per look (when both are among the arms)
    cue_arm: str = "segvla"
    # the same recipe with the cues off
    no_cue_arm: str = "smolvla"
    # training seeds, one lerobot-train run per arm and seed
    seeds: list[int] = field(default_factory=lambda: [1, 2, 3])
    # the looks every checkpoint is evaluated in (--env.appearance)
    appearances: list[str] = field(default_factory=lambda: ["none", "shifted", "unseen"])
    # episodes per checkpoint and look
    eval_episodes: int = 20
    # lerobot-eval's --eval.batch_size: twins stepped together, the policy (and a segmenter in its preprocessor) run
    # on all of them at once; the same cube poses as one at a time, ~3x sooner on 2 cores
    eval_batch_size: int = 10
    # lerobot-eval's --seed: 1000 reports, 2000 tunes; the recording's episodes are seeds 0-199
    eval_seed: int = 1000
    # the twin-size random SmolVLM2-shaped backbone of the SmolVLA arms (made when missing)
    vlm_dir: Path = Path("outputs/models/smolvlm_twin")
    # so101-seg-train's config for the segmenter whose run the segmenter-cue arms' configs read
    segmenter_config: Path = Path("configs/segmenter_twin.yaml")
    # where the segmenter's renders, run (run/best) and evaluations go
    segmenter_dir: Path = Path("outputs/robust_twin/segmenter")
    # so101-seg-train's config of the robust segmenter with a depth head, which the arms whose segmenter_path is
    # under perception_dir read
    perception_config: Path = Path("configs/segmenter_robust.yaml")
    # where the robust segmenter's renders, run (run/best) and evaluations go
    perception_dir: Path = Path("outputs/perception")
    # segvla-pretrain-tower's config: the twin-size backbone's vision tower pretrained on the robust segmenter's
    # randomised frames, for the arms whose vlm_model_name is tower_dir (a frozen pretrained tower, as SmolVLA's)
    tower_config: Path = Path("configs/vision_tower_twin.yaml")
    # the pretrained tower's SmolVLM folder, as the frozen-tower arms' vlm_model_name names it
    tower_dir: Path = Path("outputs/models/smolvlm_twin_segtower")
    # lerobot-train's --save_freq for runs not yet started; None saves every quarter of the recipe's steps. Lower
    # loses less when a session ends mid-run (a run resumes from its last saved checkpoint)
    save_freq: int | None = None
    # torch threads for lerobot-train; PASSIVE lets idle threads sleep so the loader workers get the cores
    torch_threads: int = 2
    # OMP_WAIT_POLICY for lerobot-train and lerobot-eval
    omp_wait_policy: str = "PASSIVE"
    # a folder keeping each finished run's evaluations, training time and recording fingerprint (a few kB, small
    # enough to commit): a run found there is not trained again, so the comparison outlives its checkpoints
    archive_dir: Path | None = None
    # print the table from archive_dir alone: runs not archived show as "-" and are left out of the pooled rates;
    # nothing is recorded, trained or evaluated (for a table while other seeds still run)
    archived_only: bool = False
    # a learning curve: besides each run's final checkpoint, the saved checkpoints at these steps are evaluated too
    # (lerobot-train saves every quarter of the recipe's steps), as runs <arm>_s<seed>_<step>
    checkpoints: list[int] = field(default_factory=list)
    # the arms whose checkpoints also get their held-out action error per look (so101-action-error): small
    # recordings in each look from episode seeds no training uses; [] for none
    action_error_arms: list[str] = field(
        default_factory=lambda: ["segvla", "segvla_gt", "smolvla", "segvla_frozen", "smolvla_frozen"]
    )
    # episodes of each held-out recording
    heldout_episodes: int = 20
    # the held-out recordings' first episode seed (the training recording's are 0-199)
    heldout_seed: int = 500000
    # with --checkpoints: the learning-curve figure (success and held-out action error against steps, a panel per
    # look) also goes here, besides <output_dir>/learning_curve.png
    curve_figure: Path | None = None

    def __post_init__(self):
        if self.archived_only and self.archive_dir is None:
            raise ValueError("--archived_only=true reads the archive: give --archive_dir too")
        missing = [arm for arm in self.arms if not (self.config_dir / f"{arm}.yaml").is_file()]
        if missing:
            raise FileNotFoundError(
                f"--arms {missing} have no config in --config_dir={self.config_dir} (expected <arm>.yaml there)"
            )
        for level in self.appearances:
            check_level(level, "appearances")
        if self.save_freq is not None and self.save_freq < 1:
            raise ValueError(f"--save_freq must be >= 1, got {self.save_freq}")
        if any(step < 1 for step in self.checkpoints):
            raise ValueError(f"--checkpoints={self.checkpoints}: steps must be >= 1")
        if self.eval_episodes < 1:
            raise ValueError(f"--eval_episodes must be >= 1, got {self.eval_episodes}")
        if not 1 <= self.eval_batch_size <= self.eval_episodes:
            raise ValueError(f"--eval_batch_size must be in 1..{self.eval_episodes}, got {self.eval_batch_size}")


def eval_name(cfg: RobustTwinConfig, run: str, appearance: str) -> str:
    return f"{run}_{appearance}_seed{cfg.eval_seed}_{cfg.eval_episodes}"


def error_name(cfg: RobustTwinConfig, run: str, appearance: str) -> str:
    return f"{run}_{appearance}_heldout{cfg.heldout_seed}_{cfg.heldout_episodes}_action_error"


def checkpoint_runs(cfg: RobustTwinConfig, arm: str, seed: int) -> list[tuple[str, int | None]]:
    """(run name, step) of every checkpoint of an arm and seed that is evaluated: the final one (step None) and
    those of `checkpoints`."""
    return [(f"{arm}_s{seed}", None), *((f"{arm}_s{seed}_{step:06d}", step) for step in cfg.checkpoints)]


def run_done(cfg: RobustTwinConfig, arm: str, seed: int) -> bool:
    """Every evaluation of a run and its training time archived: its checkpoints are no longer needed (but for the
    held-out action errors not yet scored, which are scored while they are there and shown as "-" once gone)."""
    names = [f"{eval_name(cfg, run, a)}.json" for run, _ in checkpoint_runs(cfg, arm, seed) for a in cfg.appearances]
    return all(archived(cfg, n) for n in [f"{arm}_s{seed}_train_wall_s.json", *names])


def segmenter_paths(cfg: RobustTwinConfig, arms: list[str]) -> set[str]:
    """The segmenter checkpoints (…/run/best) the arms' configs name."""
    paths = set()
    for arm in arms:
        with open(cfg.config_dir / f"{arm}.yaml") as f:
            policy = draccus.load(dict, f).get("policy", {})
        paths |= {str(policy[k]) for k in ("segmenter_path", "segmentation_segmenter_path") if policy.get(k)}
    return paths


def trained_segmenter(cfg: RobustTwinConfig, name: str, data: Path, config: Path, renders: dict, tests: dict) -> dict:
    """Render `renders` (folder: so101-seg-render's flags) into `data`, train `config` on sim_train (tested on
    sim_test) into data/run, and score run/best on each of `tests` (key: folder); the scores, archived as
    <name>_<key>.json. Every step is skipped when done and resumes when interrupted."""
    for folder, args in renders.items():  # a finished render returns at once; a partial one resumes
        render = [str(VENV_BIN / "so101-seg-render"), f"--output_dir={data / folder}", *args]
        render += ["--height=96", "--width=128", "--cameras=[front,wrist]"]  # as the recording
        run_logged(render, cfg.output_dir / "logs" / f"{name}_{folder}.log", f"{name} frames ({folder})")
    run = data / "run"
    if not (run / "test_metrics.json").is_file():  # written last; an interrupted run resumes
        train = [
            str(VENV_BIN / "so101-seg-train"),
            f"--config_path={config}",
            f"--data.path={data / 'sim_train'}",
            f"--data.test_path={data / 'sim_test'}",
            f"--output_dir={run}",
        ]
        run_logged(train, cfg.output_dir / "logs" / f"{name}_train.log", f"{name} training")
    metrics = {}
    for key, folder in tests.items():
        out = data / f"eval_{key}.json"
        if not out.is_file():
            evaluate = [
                str(VENV_BIN / "so101-seg-eval"),
                f"--segmenter_path={run / 'best'}",
                f"--data.path={data / folder}",
                "--data.img_height=96",
                "--data.img_width=128",
                f"--output={out}",
            ]
            run_logged(evaluate, cfg.output_dir / "logs" / f"{name}_eval_{key}.log", f"{name} on {key}")
        archive(cfg, out, f"{name}_{key}.json")
        metrics[key] = json.loads(out.read_text())
    return metrics


def look_renders(cfg: RobustTwinConfig) -> dict:
    """The test frames of each look: 60 episodes x 4 steps, seeds 200000-200059."""
    return {
        f"test_{level}": ["--episodes=60", "--frames_per_episode=4", "--seed=200000", f"--appearance={level}"]
        for level in cfg.appearances
    }


def reads_tower(cfg: RobustTwinConfig, arms: list[str]) -> bool:
    """Whether any of the arms' configs starts from the pretrained tower's folder."""
    for arm in arms:
        with open(cfg.config_dir / f"{arm}.yaml") as f:
            if str(draccus.load(dict, f).get("policy", {}).get("vlm_model_name")) == str(cfg.tower_dir):
                return True
    return False


def tower_stage(cfg: RobustTwinConfig) -> dict:
    """The vision tower pretrained on segmentation (segvla-pretrain-tower), on the robust segmenter's frames (made
    first when missing); its mIoU per look, archived as vision_tower.json."""
    metrics = cfg.tower_dir / "tower_metrics.json"
    if not metrics.is_file():
        perception_stage(cfg)  # its renders: the training frames and each look's test frames
        args = [
            str(VENV_BIN / "segvla-pretrain-tower"),
            f"--config_path={cfg.tower_config}",
            f"--vlm_path={cfg.vlm_dir}",
            f"--data.path={cfg.perception_dir / 'sim_train'}",
            f"--test_paths=[{','.join(str(cfg.perception_dir / f'test_{a}') for a in cfg.appearances)}]",
            f"--output_dir={cfg.tower_dir}",
        ]
        run_logged(args, cfg.output_dir / "logs" / "tower.log", "vision tower pretraining")
    archive(cfg, metrics, "vision_tower.json")
    return json.loads(metrics.read_text())


def perception_stage(cfg: RobustTwinConfig) -> dict:
    """The robust segmenter with its depth head, trained on randomised renders; per look (the reported frames and the
    tuning ones) its mIoU, per-class IoU and disparity error."""
    renders = {
        "sim_train": ["--episodes=1000", "--frames_per_episode=8", "--seed=0"],
        "sim_test": ["--episodes=60", "--frames_per_episode=4", "--seed=100000"],
        **look_renders(cfg),
        **{  # the frames the recipe was chosen on; the reported figures never use these seeds
            f"tune_{level}": ["--episodes=40", "--frames_per_episode=4", "--seed=300000", f"--appearance={level}"]
            for level in ("shifted", "unseen")
        },
    }
    tests = [name for name in renders if name != "sim_train"]
    return trained_segmenter(
        cfg, "perception", cfg.perception_dir, cfg.perception_config, renders, {t: t for t in tests}
    )


def segmenter_stage(cfg: RobustTwinConfig) -> dict:
    """The segmenter the segmenter-cue arms read, trained on randomised renders; its mIoU on each look."""
    renders = {
        "sim_train": ["--episodes=400", "--frames_per_episode=4", "--seed=0"],
        "sim_test": ["--episodes=60", "--frames_per_episode=4", "--seed=100000"],
        **look_renders(cfg),
    }
    tests = {"randomised": "sim_test", **{level: f"test_{level}" for level in cfg.appearances}}
    return trained_segmenter(cfg, "segmenter", cfg.segmenter_dir, cfg.segmenter_config, renders, tests)


def train_stage(cfg: RobustTwinConfig, arm: str, seed: int, recording_root: Path) -> Path:
    """lerobot-train for one arm and seed; returns the final checkpoint. Resumes from the last saved checkpoint."""
    with open(cfg.config_dir / f"{arm}.yaml") as f:
        recipe_config = draccus.load(dict, f)
    steps = int(recipe_config["steps"])
    recipe = [f"--config_path={cfg.config_dir / f'{arm}.yaml'}", *training_copy(cfg, recipe_config, recording_root)]
    return train_run(cfg, arm, seed, recording_root, steps, recipe, save_freq=cfg.save_freq, machine=machine())


def training_copy(cfg: RobustTwinConfig, recipe_config: dict, recording_root: Path) -> list[str]:
    """--dataset.* flags of a copy of the recording holding only the cameras the recipe reads (so101-training-copy):
    LeRobot 0.6.1 decodes every camera of a sample, and the recording has six, so training on the recording itself
    spends most of the loader's CPU on maps no RGB arm reads. The samples are the same bit for bit."""
    keep = sorted(copied_cameras(recipe_config["policy"]))
    name = f"{recording_root.name}_train_" + "_".join(k.removeprefix("observation.images.") for k in keep)
    copy, repo_id = recording_root.parent / name, f"{recipe_config['dataset']['repo_id']}_train"
    args = [
        str(VENV_BIN / "so101-training-copy"),
        f"--dataset.repo_id={recipe_config['dataset']['repo_id']}",
        f"--dataset.root={recording_root}",
        f"--keep=[{','.join(keep)}]",
        f"--output_dir={copy}",
        f"--output_repo_id={repo_id}",
    ]
    run_logged(args, cfg.output_dir / "logs" / f"{name}.log", f"training copy {name}")  # left alone when up to date
    return [f"--dataset.repo_id={repo_id}", f"--dataset.root={copy}"]


def copied_cameras(policy: dict) -> set[str]:
    """The camera features a recipe reads: its RGB cameras, and for ground-truth cues the twin's segmentation beside
    each cued camera, which SegVLA adds to its inputs only when the policy is built (not in the recipe's YAML)."""
    keep = {k for k in policy["input_features"] if k.startswith("observation.images.")}
    source = PERCEPTION_SOURCES.get(policy.get("perception_source", "none"))
    if source is not None and source.reads_twin_segmentation:
        keep |= {f"{camera}_segmentation" for camera in policy.get("segmentation_feature_map", {})}
    return keep


def machine() -> str:
    lines = Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").is_file() else []
    model = next((line.split(":", 1)[1].strip() for line in lines if "model name" in line), "")
    return f"{model or platform.processor()}, {os.cpu_count()} cores"


def train_wall(cfg: RobustTwinConfig, arm: str, seed: int) -> dict:
    timing = (
        archived(cfg, f"{arm}_s{seed}_train_wall_s.json") or cfg.output_dir / f"{arm}_s{seed}" / "train_wall_s.json"
    )
    archive(cfg, timing, f"{arm}_s{seed}_train_wall_s.json")
    return json.loads(timing.read_text())


def eval_stage(cfg: RobustTwinConfig, checkpoint: Path | None, run: str, appearance: str) -> dict:
    name = eval_name(cfg, run, appearance)
    out = cfg.output_dir / "eval" / name
    info = archived(cfg, f"{name}.json") or out / "eval_info.json"
    if not info.is_file():
        if out.exists():
            shutil.rmtree(out)
        flags = env_flags(checkpoint)
        args = eval_args(checkpoint, flags, appearance, cfg.eval_episodes, cfg.eval_batch_size, cfg.eval_seed, out)
        run_logged(
            args,
            cfg.output_dir / "logs" / f"eval_{name}.log",
            f"eval {run} ({appearance})",
            cfg.eval_episodes,
            r"Stepping through eval batches: .*?\| *(\d+)/\d+",
        )
    archive(cfg, info, f"{name}.json")
    data = json.loads(info.read_text())
    overall = data["overall"]
    successes = round(overall["pc_success"] * overall["n_episodes"] / 100)
    # LeRobot 0.6 keeps each episode's success under per_task[i]["metrics"]["successes"]
    flags = [s for task in data.get("per_task", []) for s in task.get("metrics", {}).get("successes", [])]
    per_episode = "".join("1" if s else "0" for s in flags)
    return {
        "successes": successes,
        "episodes": overall["n_episodes"],
        "mean_return": overall["avg_sum_reward"],
        "per_episode": per_episode,
    }


def heldout_stage(cfg: RobustTwinConfig, appearance: str) -> Path:
    """A small recording in one look from episode seeds no training uses (the training recording's recipe
    otherwise); recorded when missing."""
    root = cfg.output_dir / "heldout" / f"{appearance}_{cfg.heldout_seed}_{cfg.heldout_episodes}"
    if not (root / "meta" / "info.json").is_file():
        if root.exists():  # an interrupted recording: the recorder refuses to write into it
            shutil.rmtree(root)
        args = [
            str(VENV_BIN / "so101-twin-record"),
            f"--config_path={cfg.record_config}",
            f"--robot.appearance={appearance}",
            f"--robot.seed={cfg.heldout_seed}",
            f"--dataset.num_episodes={cfg.heldout_episodes}",
            f"--dataset.root={root}",
            f"--dataset.repo_id=local/heldout_{appearance}",
        ]
        run_logged(args, cfg.output_dir / "logs" / f"heldout_{appearance}.log", f"held-out recording ({appearance})")
    return root


def action_error_stage(cfg: RobustTwinConfig, checkpoint: Path | None, run: str, appearance: str) -> dict | None:
    """so101-action-error of a checkpoint on the held-out recording of one look (archived); None when neither the
    score nor the checkpoint is there."""
    name = error_name(cfg, run, appearance)
    out = archived(cfg, f"{name}.json") or cfg.output_dir / "action_error" / f"{name}.json"
    if not out.is_file():
        if checkpoint is None or not (checkpoint / "config.json").is_file():
            return None
        args = [
            str(VENV_BIN / "so101-action-error"),
            f"--policy.path={checkpoint}",
            f"--dataset.repo_id=local/heldout_{appearance}",
            f"--dataset.root={heldout_stage(cfg, appearance)}",
            f"--output={out}",
            f"--device={json.loads((checkpoint / 'config.json').read_text()).get('device') or 'cpu'}",  # as trained
        ]
        run_logged(args, cfg.output_dir / "logs" / f"action_error_{name}.log", f"held-out error {run} ({appearance})")
    archive(cfg, out, f"{name}.json")
    return json.loads(out.read_text())


def checkpoint_path(cfg: RobustTwinConfig, arm: str, seed: int, step: int) -> Path:
    return cfg.output_dir / f"{arm}_s{seed}" / "checkpoints" / f"{step:06d}" / "pretrained_model"


def perception_table(perception: dict) -> str:
    """Per set of test frames: IoU per class, mIoU over classes 1-5, and the disparity error (0-255 per frame)."""
    classes = ("background", "table", "cube", "static_finger", "moving_finger")
    lines = [
        "| frames | " + " | ".join(c.replace("_", " ") for c in classes) + " | mIoU | disparity error (0-255) |",
        "|---|" + "---:|" * (len(classes) + 2),
    ]
    for name, m in perception.items():
        ious = " | ".join(
            f"{m['per_class_iou'][c]:.3f}" if m["per_class_iou"].get(c) is not None else "-" for c in classes
        )
        error = f"{m['disparity_error_255']:.1f}" if "disparity_error_255" in m else "-"
        lines.append(f"| {name} | {ious} | {m['miou']:.3f} | {error} |")
    return "\n".join(lines)


def error_cell(scored: dict | None) -> str:
    """The held-out action error (mean |a - a_expert|, degrees) of one checkpoint in one look, or "-"."""
    error = (scored or {}).get("action_error")
    return f"{error['action_mae']:.2f}" if error else "-"


def curve_table(cfg: RobustTwinConfig, results: dict) -> str:
    """Per arm and seed, each evaluated checkpoint: success and held-out action error in every look."""
    lines = [
        "| arm | seed | step | " + " | ".join(f"{a}: success, error" for a in cfg.appearances) + " |",
        "|---" * (3 + len(cfg.appearances)) + "|",
    ]
    for arm in cfg.arms:
        for seed, run in sorted(results.get(arm, {}).items(), key=lambda kv: int(kv[0])):
            points = {int(step): scored for step, scored in run.get("curve", {}).items()}
            points.setdefault(int(final_steps(cfg, arm)), run)
            for step, scored in sorted(points.items()):
                cells = [
                    f"{scored[a]['successes']}/{scored[a]['episodes']}, {error_cell(scored[a])}"
                    for a in cfg.appearances
                ]
                lines.append(f"| {arm} | {seed} | {step} | " + " | ".join(cells) + " |")
    holds = [hold_reference(results, cfg.arms, a) for a in cfg.appearances]
    if any(h is not None for h in holds):  # the floor: a chunk that holds the current joint positions
        lines.append(
            "| holding still | | | " + " | ".join(f"-, {h:.2f}" if h is not None else "-" for h in holds) + " |"
        )
    return "\n".join(lines)


def final_steps(cfg: RobustTwinConfig, arm: str) -> int:
    with open(cfg.config_dir / f"{arm}.yaml") as f:
        return int(draccus.load(dict, f)["steps"])


def table(cfg: RobustTwinConfig, results: dict) -> str:
    seeds = cfg.seeds
    with_errors = any(arm in cfg.action_error_arms for arm in cfg.arms)  # a column only where an arm has it
    lines = [
        "| arm | look | "
        + " | ".join(f"seed {s}" for s in seeds)
        + " | pooled, Wilson 95% | training min |"
        + (" held-out action error |" if with_errors else ""),
        "|---" * (4 + with_errors + len(seeds)) + "|",
    ]
    pooled: dict[tuple[str, str], object] = {}
    for appearance in cfg.appearances:
        for arm in cfg.arms:
            runs = {s: results[arm][str(s)] for s in seeds if str(s) in results.get(arm, {})}  # archived_only: some
            looks = [run[appearance] for run in runs.values()]
            rate = wilson(sum(r["successes"] for r in looks), sum(r["episodes"] for r in looks)) if looks else None
            pooled[arm, appearance] = rate
            cells, minutes = [], []
            for s in seeds:
                run = runs.get(s)
                cells.append(f"{run[appearance]['successes']}/{run[appearance]['episodes']}" if run else "-")
                minutes.append(f"{run['train_wall_s'] / 60:.1f}" if run else "-")
            shown = rate if rate is not None else "-"
            errors = "/".join(error_cell(runs.get(s, {}).get(appearance)) for s in seeds)
            lines.append(
                f"| {arm} | {appearance} | "
                + " | ".join(cells)
                + f" | {shown} | {'/'.join(minutes)} |"
                + (f" {errors} |" if with_errors else "")
            )
    if cfg.cue_arm in cfg.arms and cfg.no_cue_arm in cfg.arms:
        # success is the measure; the mean return (shaped reward: reaching, grasping) shows a difference below it
        lines += [
            "",
            f"| look | {cfg.cue_arm} minus {cfg.no_cue_arm}, Newcombe 95% | mean return difference, seed by seed |",
            "|---|---|---|",
        ]
        for appearance in cfg.appearances:
            cue, no_cue = pooled[cfg.cue_arm, appearance], pooled[cfg.no_cue_arm, appearance]
            diff = newcombe(cue, no_cue) if cue is not None and no_cue is not None else "-"
            returns = []
            for s in cfg.seeds:
                both = [results.get(arm, {}).get(str(s)) for arm in (cfg.cue_arm, cfg.no_cue_arm)]
                gap = both[0][appearance]["mean_return"] - both[1][appearance]["mean_return"] if all(both) else None
                returns.append(f"{gap:+.1f}" if gap is not None else "-")
            lines.append(f"| {appearance} | {diff} | {' / '.join(returns)} |")
    return "\n".join(lines)


@parser.wrap()
def robust_twin(cfg: RobustTwinConfig) -> dict:
    os.chdir(ROOT)
    (cfg.output_dir / "logs").mkdir(parents=True, exist_ok=True)
    todo = [(arm, seed) for seed in cfg.seeds for arm in cfg.arms if not run_done(cfg, arm, seed)]
    if cfg.archived_only:
        todo = []
    recording_root = inputs_stage(cfg, bool(todo))  # the recording and backbone: for runs still to train
    needed = segmenter_paths(cfg, sorted({arm for arm, _ in todo}))
    if str(cfg.segmenter_dir / "run" / "best") in needed:
        segmenter = segmenter_stage(cfg)
    else:  # no run still to train reads it: its figures from the archive, where they are
        levels = ["randomised", *cfg.appearances]
        found = {level: archived(cfg, f"segmenter_{level}.json") for level in levels}
        segmenter = {level: json.loads(path.read_text()) for level, path in found.items() if path}
    if str(cfg.perception_dir / "run" / "best") in needed:
        perception = perception_stage(cfg)
    else:
        names = ["sim_test", *(f"test_{level}" for level in cfg.appearances), "tune_shifted", "tune_unseen"]
        found = {name: archived(cfg, f"perception_{name}.json") for name in names}
        perception = {name: json.loads(path.read_text()) for name, path in found.items() if path}
    results: dict = {"segmenter": segmenter, "perception": perception}
    if reads_tower(cfg, sorted({arm for arm, _ in todo})):
        results["vision_tower"] = tower_stage(cfg)
    elif archived(cfg, "vision_tower.json"):
        results["vision_tower"] = json.loads(archived(cfg, "vision_tower.json").read_text())
    for seed in cfg.seeds:
        for arm in cfg.arms:
            if cfg.archived_only and not run_done(cfg, arm, seed):
                continue
            checkpoint = None if run_done(cfg, arm, seed) else train_stage(cfg, arm, seed, recording_root)
            timing = train_wall(cfg, arm, seed)
            entry = results.setdefault(arm, {}).setdefault(
                str(seed), {"train_wall_s": timing["seconds"], "machine": timing.get("machine", "")}
            )
            local = checkpoint or cfg.output_dir / f"{arm}_s{seed}" / "checkpoints" / "last" / "pretrained_model"
            for run, step in checkpoint_runs(cfg, arm, seed):
                scored = entry if step is None else entry.setdefault("curve", {}).setdefault(str(step), {})
                at = local if step is None else checkpoint_path(cfg, arm, seed, step)
                for appearance in cfg.appearances:
                    scored[appearance] = eval_stage(cfg, at if checkpoint else None, run, appearance)
                    if arm in cfg.action_error_arms and not cfg.archived_only:
                        scored[appearance]["action_error"] = action_error_stage(cfg, at, run, appearance)
                    elif arm in cfg.action_error_arms:
                        found = archived(cfg, f"{error_name(cfg, run, appearance)}.json")
                        scored[appearance]["action_error"] = json.loads(found.read_text()) if found else None
    write_json(cfg.output_dir / "results.json", results)
    if perception:
        print(perception_table(perception) + "\n")
    if "vision_tower" in results:
        tower = results["vision_tower"]
        scores = ", ".join(f"{name} {m['miou']:.3f}" for name, m in tower["test"].items())
        print(f"vision tower pretrained on segmentation ({tower['train_time_s'] / 60:.1f} min): mIoU {scores}\n")
    print(table(cfg, results))
    if cfg.checkpoints:
        print("\n" + curve_table(cfg, results))
        steps = {arm: final_steps(cfg, arm) for arm in cfg.arms}
        for path in filter(None, [cfg.output_dir / "learning_curve.png", cfg.curve_figure]):
            curve_figure(results, cfg.arms, steps, cfg.appearances, path)
            print(f"learning curve: {path}")
    return results


def main() -> None:
    prepare_command_line()
    robust_twin()


if __name__ == "__main__":
    main()
