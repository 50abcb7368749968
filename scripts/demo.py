"""The demo, stage by stage: record expert demonstrations in the twin, precompute SegDepth's observation, train
segdepth with `lerobot-train`, evaluate it with `lerobot-eval` on cube poses never seen in training, and draw what
the policy saw. Run through `bash scripts/demo.sh` (which sets up the environment first):

    bash scripts/demo.sh                                   # configs/demo.yaml
    bash scripts/demo.sh --config_path=configs/demo_long.yaml
    bash scripts/demo.sh --train.steps=500 --eval.n_episodes=10   # dotted flags override the file

The console shows the stages, their progress and the result table; every command's full output (LeRobot's
per-episode dumps, the video encoders' chatter) goes to `<output_dir>/logs/`. Each stage's result lands in
`<output_dir>/`, and `<output_dir>/summary.json` holds the figures the table shows.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import draccus
from lerobot.configs import parser
from tqdm import tqdm

from lerobot_env_so101_twin.record import TwinRecordConfig, record
from so101_core.atomic import write_json
from so101_core.cli import prepare_command_line

VENV_BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parent.parent


@dataclass
class TrainStage:
    # lerobot-train's --steps (one checkpoint, at the end)
    steps: int = 1300
    # lerobot-train's --batch_size
    batch_size: int = 32
    # lerobot-train's data loader workers
    num_workers: int = 2
    # lerobot-train's --seed
    seed: int = 1
    # lerobot-train's --log_freq, in steps
    log_freq: int = 100
    # OMP_NUM_THREADS for lerobot-train (None: torch's default, one thread per core)
    torch_threads: int | None = 2
    # OMP_WAIT_POLICY for lerobot-train: PASSIVE makes torch's idle threads sleep instead of spinning, so the two
    # loader workers get the cores between the update's parallel regions (None: leave the environment's)
    omp_wait_policy: str | None = "PASSIVE"
    # precompute with --stack_frames and train with --policy.stacked_frames: one row read per sample instead of a
    # delta window of three (README, "Training at compute speed")
    stacked_frames: bool = True
    # bf16 autocast in lerobot-train (--policy.use_amp): "auto" turns it on where the CPU has AMX, whose bf16
    # convolution kernels train segdepth ~1.4x faster (README); elsewhere bf16 is emulated and slower
    amp: str = "false"
    # extra --policy.* flags for lerobot-train, e.g. ["--policy.augment_pad=0"]
    policy_args: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.amp = str(self.amp).lower()  # YAML reads --train.amp=true as a bool
        if self.amp not in ("auto", "true", "false"):
            raise ValueError(f"train.amp must be auto, true or false, got {self.amp!r}")


def train_env(train: TrainStage) -> dict[str, str]:
    """lerobot-train's thread settings. Measured on 2 cores (README, "Training at compute speed"): on a per-frame
    copy two spinning torch threads fight the loader workers (89 samples/s against 150 with one thread); on a
    stacked copy the workers need a quarter of the CPU and two passive threads train at ~210."""
    env = {}
    if train.torch_threads:
        env["OMP_NUM_THREADS"] = str(train.torch_threads)
    if train.omp_wait_policy:
        env["OMP_WAIT_POLICY"] = train.omp_wait_policy
    return env


def cpu_has_amx(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether the CPU advertises AMX with bf16 (the `amx_bf16` flag; torch has no public query for it)."""
    try:
        flags = next((line for line in cpuinfo.read_text().splitlines() if line.startswith("flags")), "")
    except OSError:
        return False
    return "amx_bf16" in flags.split()


def uses_amp(train: TrainStage) -> bool:
    return cpu_has_amx() if train.amp == "auto" else train.amp == "true"


@dataclass
class EvalStage:
    # episodes of the trained policy, each a new cube pose
    n_episodes: int = 20
    # episode k of the evaluation starts from the scene of seed + k: far from the recording's seeds 0..N
    seed: int = 1000
    # envs per batch: LeRobot steps every env of a batch until the slowest is done, so one failure makes nine
    # finished episodes run to the time limit beside it (20 poses: 93 s at 10, 42 s at 1, the same successes)
    batch_size: int = 1
    # episodes of a random-weight segdepth as a floor (0: skip; it runs every episode to the time limit)
    random_episodes: int = 0


@dataclass
class DemoConfig:
    # stage 1, so101-twin-record's config (its dataset.root is set to <output_dir>/dataset)
    record: TwinRecordConfig
    # every stage's output and the logs; replaced whole when the demo starts
    output_dir: Path = Path("outputs/demo")
    # stage 3, lerobot-train
    train: TrainStage = field(default_factory=TrainStage)
    # stage 4, lerobot-eval
    eval: EvalStage = field(default_factory=EvalStage)
    # stage 5: a rollout video and the channels the policy saw (examples/segdepth_policy_view.py)
    policy_view: bool = True


def run_logged(
    args: list[str], log: Path, desc: str, total: int | None = None, pattern: str | None = None, env: dict | None = None
) -> float:
    """Run a command with its output in `log`; a progress bar advances on lines matching `pattern` (its first
    group is the position). Returns the wall seconds; a failure shows the log's tail."""
    start = time.perf_counter()
    # Without a total there is nothing to count: the bar shows the elapsed time only.
    bar_format = None if total else "{desc}: {elapsed}"
    with open(log, "w") as out, tqdm(total=total, desc=desc, unit="", bar_format=bar_format, leave=True) as bar:
        proc = subprocess.Popen(
            args,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=ROOT,
            env={**os.environ, **(env or {})},
        )
        for line in proc.stdout:
            out.write(line)
            match = re.search(pattern, line) if pattern else None
            if match and total:
                bar.update(max(0, int(float(match.group(1).replace("K", "e3"))) - bar.n))
                loss = re.search(r"loss:([0-9.]+)", line)
                if loss:
                    bar.set_postfix(loss=loss.group(1))
        code = proc.wait()
        if total and code == 0:
            bar.update(total - bar.n)
    if code != 0:
        tail = "".join(log.read_text().splitlines(keepends=True)[-40:])
        raise SystemExit(f"[demo] {desc} failed (exit {code}); last lines of {log}:\n{tail}")
    return time.perf_counter() - start


def eval_args(cfg: DemoConfig, n_episodes: int, output: Path) -> list[str]:
    robot = cfg.record.robot
    return [
        "--env.type=so101_twin",
        f"--env.task={robot.task}",
        f"--env.cameras=[{','.join(robot.cameras)}]",
        "--env.render_cameras=[front,wrist]",
        f"--env.observation_height={robot.camera_height}",
        f"--env.observation_width={robot.camera_width}",
        f"--env.depth={str(robot.depth).lower()}",
        f"--env.segmentation={str(robot.segmentation).lower()}",
        f"--eval.n_episodes={n_episodes}",
        f"--eval.batch_size={min(cfg.eval.batch_size, n_episodes)}",
        "--eval.use_async_envs=false",
        "--policy.device=cpu",
        f"--seed={cfg.eval.seed}",
        f"--output_dir={output}",
    ]


def prepare_output(cfg: DemoConfig) -> Path:
    """A fresh output folder, with the recording pointed into it; the logs folder."""
    out = cfg.output_dir
    if out.exists():
        shutil.rmtree(out)
    logs = out / "logs"
    logs.mkdir(parents=True)
    cfg.record.dataset.root = str(out / "dataset")
    cfg.record.log_dir = logs / "record"
    cfg.record.log_dir.mkdir()
    return logs


def record_stage(cfg: DemoConfig) -> dict:
    n, t = cfg.record.dataset.num_episodes, cfg.record.dataset.episode_time_s
    print(f"[demo] 1/5 recording {n} expert episodes of {t} s in the twin (so101-twin-record, simulated time)")
    recorded = record(cfg.record)
    print(
        f"[demo]     {recorded['frames']} frames in {recorded['record_seconds']} s "
        f"({recorded['real_time_factor']}x real time), expert success {recorded['expert_success']}"
    )
    return recorded


def demo(cfg: DemoConfig) -> dict:
    start = time.perf_counter()
    out = cfg.output_dir
    logs = prepare_output(cfg)
    seconds: dict[str, float] = {}
    repo = cfg.record.dataset.repo_id
    recorded = record_stage(cfg)
    seconds["record"] = recorded["total_seconds"]

    print("[demo] 2/5 adding the policy-ready observation (segdepth-precompute)")
    segdepth_root = out / "dataset_segdepth"
    seconds["precompute"] = run_logged(
        [
            str(VENV_BIN / "segdepth-precompute"),
            f"--dataset.repo_id={repo}",
            f"--dataset.root={cfg.record.dataset.root}",
            f"--output_dir={segdepth_root}",
            f"--output_repo_id={repo}_segdepth",
            f"--policy.camera={cfg.record.robot.cameras[-1]}",
            "--num_workers=2",
            f"--stack_frames={str(cfg.train.stacked_frames).lower()}",
        ],
        logs / "precompute.log",
        "precompute",
        total=recorded["frames"],
        pattern=r"segdepth: .*\| *(\d+)/\d+",
    )

    steps = cfg.train.steps
    amp = uses_amp(cfg.train)
    precision = "bf16 autocast" if amp else "float32"
    print(f"[demo] 3/5 training segdepth for {steps} steps, batch {cfg.train.batch_size}, {precision} (lerobot-train)")
    train_dir = out / "train"
    seconds["train"] = run_logged(
        [
            str(VENV_BIN / "lerobot-train"),
            "--policy.type=segdepth",
            f"--policy.camera={cfg.record.robot.cameras[-1]}",
            "--policy.device=cpu",
            "--policy.push_to_hub=false",
            f"--policy.use_amp={str(amp).lower()}",
            f"--policy.stacked_frames={str(cfg.train.stacked_frames).lower()}",
            *cfg.train.policy_args,
            f"--dataset.repo_id={repo}_segdepth",
            f"--dataset.root={segdepth_root}",
            f"--steps={steps}",
            f"--batch_size={cfg.train.batch_size}",
            f"--num_workers={cfg.train.num_workers}",
            f"--save_freq={steps}",
            f"--log_freq={cfg.train.log_freq}",
            f"--output_dir={train_dir}",
            "--wandb.enable=false",
            f"--seed={cfg.train.seed}",
        ],
        logs / "train.log",
        "train",
        total=steps,
        pattern=r"step:([0-9.K]+)",
        env=train_env(cfg.train),
    )
    ckpt = train_dir / "checkpoints" / "last" / "pretrained_model"

    print(f"[demo] 4/5 evaluating on {cfg.eval.n_episodes} new cube poses (lerobot-eval, seed {cfg.eval.seed}+)")
    runs = [("trained", ["--policy.path", str(ckpt)], cfg.eval.n_episodes)]
    if cfg.eval.random_episodes:
        runs.append(("random", ["--policy.type=segdepth"], cfg.eval.random_episodes))
    results = {}
    for name, policy, episodes in runs:
        batch = min(cfg.eval.batch_size, episodes)
        seconds[f"eval_{name}"] = run_logged(
            [str(VENV_BIN / "lerobot-eval"), *policy, *eval_args(cfg, episodes, out / f"eval_{name}")],
            logs / f"eval_{name}.log",
            f"eval {name} ({batch} env{'s' if batch > 1 else ''} per batch)",
            total=-(-episodes // batch),
            pattern=r"Stepping through eval batches: .*?\| *(\d+)/\d+",
        )
        results[name] = json.loads((out / f"eval_{name}" / "eval_info.json").read_text())["overall"]

    if cfg.policy_view:
        print("[demo] 5/5 rollout video and the channels the policy saw")
        robot = cfg.record.robot
        seconds["policy_view"] = run_logged(
            [
                sys.executable,
                str(ROOT / "examples" / "segdepth_policy_view.py"),
                f"--policy.path={ckpt}",
                f"--output_dir={out}",
                f"--seed={cfg.eval.seed}",
                f"--height={robot.camera_height}",
                f"--width={robot.camera_width}",
            ],
            logs / "policy_view.log",
            "policy view",
        )

    summary = summarize(cfg, recorded, results, seconds, precision, start)
    print_summary(cfg, summary, precision, logs)
    return summary


def summarize(cfg: DemoConfig, recorded: dict, results: dict, seconds: dict, precision: str, start: float) -> dict:
    """The figures of the run, also written to summary.json."""
    steps = cfg.train.steps
    train_samples = steps * cfg.train.batch_size
    summary = {
        "episodes_recorded": recorded["episodes"],
        "expert_success": recorded["expert_success"],
        "record_real_time_factor": recorded["real_time_factor"],
        "train_samples_per_second": round(train_samples / seconds["train"], 1),
        "train_precision": precision,
        "results": {
            name: {"episodes": r["n_episodes"], "pc_success": r["pc_success"], "avg_sum_reward": r["avg_sum_reward"]}
            for name, r in results.items()
        },
        "stage_seconds": {k: round(v, 1) for k, v in seconds.items()},
        "wall_minutes": round((time.perf_counter() - start) / 60, 2),
    }
    write_json(cfg.output_dir / "summary.json", summary)
    return summary


def print_summary(cfg: DemoConfig, summary: dict, precision: str, logs: Path) -> None:
    out = cfg.output_dir
    print(f"\n| segdepth | {robot_task(cfg)} episodes | success | mean return |\n|---|---:|---:|---:|")
    for name, r in summary["results"].items():
        successes = round(r["pc_success"] * r["episodes"] / 100)
        rate = f"{successes}/{r['episodes']} ({r['pc_success']:.0f}%)"
        print(f"| {name} | {r['episodes']} | {rate} | {r['avg_sum_reward']:.1f} |")
    stages = ", ".join(f"{k} {v / 60:.1f}" for k, v in summary["stage_seconds"].items())
    print(
        f"\nstage minutes: {stages}; training {summary['train_samples_per_second']} samples/s "
        f"({precision}; wall, start-up included)"
    )
    print(
        f"videos: {out}/eval_trained/videos, {out}/policy_view.mp4; channels: {out}/policy_channels.png; logs: {logs}"
    )
    print(f"demo wall time (after set-up): {summary['wall_minutes']:.1f} min")


def robot_task(cfg: DemoConfig) -> str:
    return cfg.record.robot.task


@parser.wrap(config_path=ROOT / "configs" / "demo.yaml")
def parse_config(cfg: DemoConfig) -> DemoConfig:
    """The demo's config from the command line: `--config_path=FILE` (default configs/demo.yaml), dotted flags."""
    return cfg


def config_from_command_line() -> DemoConfig:
    """`parse_config`, with a bad value exiting on its own message rather than draccus' "Couldn't instantiate"
    traceback: the demo is the first command a newcomer runs."""
    prepare_command_line()
    try:
        return parse_config()
    except draccus.utils.ParsingError as err:
        cause: BaseException = err
        while cause.__cause__ is not None:
            cause = cause.__cause__
        print(f"demo: error: {cause}", file=sys.stderr)
        raise SystemExit(2) from err


def main() -> None:
    demo(config_from_command_line())


if __name__ == "__main__":
    main()
