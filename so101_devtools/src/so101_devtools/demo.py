"""The demo, stage by stage: record expert demonstrations in the twin, precompute SegDepth's observation, train
segdepth with `lerobot-train`, evaluate it with `lerobot-eval` on cube poses never seen in training, and draw what
the policy saw. Run through `bash scripts/demo.sh` (which sets up the environment first):

    bash scripts/demo.sh                                   # configs/demo.yaml
    bash scripts/demo.sh --config_path=configs/demo_long.yaml
    bash scripts/demo.sh --train.steps=500 --eval.n_episodes=10   # dotted flags override the file

The console shows the stages, their progress and the result table; every command's full output (LeRobot's
per-episode dumps, the video encoders' chatter) goes to `<output_dir>/logs/`. Each stage's result lands in
`<output_dir>/`, and `<output_dir>/summary.json` holds the figures the table shows.

A re-run never deletes earlier work. With the same settings it continues the run in `<output_dir>`: finished stages
(recorded in `<output_dir>/stages/`) are kept, an interrupted one is done again, its leftovers renamed to
`<name>.incomplete` beside it. With other settings, or in a folder the demo did not make, it writes a new run folder
`<output_dir>-2` (-3, ...) and leaves `<output_dir>` as it is.
"""

import dataclasses
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import draccus
from lerobot.configs import parser

from lerobot_env_so101_twin.arm import ArmParams, ArmRanges
from lerobot_env_so101_twin.commands.record import TwinRecordConfig, record
from so101_devtools.stages import REPO, run_logged
from so101_run_infra.atomic import move_aside, write_json
from so101_run_infra.cli import prepare_command_line
from so101_run_infra.runs import config_differences

VENV_BIN = Path(sys.executable).parent


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
    # delta window of three (docs/results.md, "SegDepth training speed")
    stacked_frames: bool = True
    # bf16 autocast in lerobot-train (--policy.use_amp): "auto" turns it on where the CPU has AMX, whose bf16
    # convolution kernels train segdepth ~1.4x faster (docs/results.md); elsewhere bf16 is emulated and slower
    amp: str = "false"
    # extra --policy.* flags for lerobot-train, e.g. ["--policy.augment_pad=0"]
    policy_args: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.amp = str(self.amp).lower()  # YAML reads --train.amp=true as a bool
        if self.amp not in ("auto", "true", "false"):
            raise ValueError(f"train.amp must be auto, true or false, got {self.amp!r}")


def train_env(train: TrainStage) -> dict[str, str]:
    """lerobot-train's thread settings. Measured on 2 cores (docs/results.md, "SegDepth training speed"): on a per-frame
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
    # every stage's output and the logs. A re-run never deletes it: see `resume`
    output_dir: Path = Path("outputs/demo")
    # true: a re-run with the same settings continues the run in output_dir (finished stages are kept); false, or
    # other settings: a new folder <output_dir>-2 (-3, ...) whenever output_dir holds anything
    resume: bool = True
    # stage 3, lerobot-train
    train: TrainStage = field(default_factory=TrainStage)
    # stage 4, lerobot-eval
    eval: EvalStage = field(default_factory=EvalStage)
    # stage 5: a rollout video and the channels the policy saw (examples/segdepth_policy_view.py)
    policy_view: bool = True


def _flag_value(value) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(str(v) for v in value) + "]"
    return str(value)


def arm_flags(robot) -> list[str]:
    """The `--env.arm*` flags that make lerobot-eval play the arm the recording played: its level and seed, its
    arm file, or its fixed arm (only the settings that differ from the ideal arm, so the ideal arm adds none)."""
    if robot.arm_path is not None:  # the file was not there when the config was read
        return [f"--env.arm_path={robot.arm_path}"]
    flags = [] if robot.arm == "none" else [f"--env.arm={robot.arm}"]
    if robot.arm_seed is not None:
        flags.append(f"--env.arm_seed={robot.arm_seed}")
    for group, ideal in (("arm_params", ArmParams()), ("arm_ranges", ArmRanges())):
        if group == "arm_ranges" and robot.arm == "none":
            continue
        for name, value in dataclasses.asdict(getattr(robot, group)).items():
            if value != getattr(ideal, name) and value is not None:
                flags.append(f"--env.{group}.{name}={_flag_value(value)}")
    return flags


def eval_args(cfg: DemoConfig, n_episodes: int, output: Path) -> list[str]:
    robot = cfg.record.robot
    return [
        *arm_flags(robot),
        "--env.type=so101_twin",
        f"--env.task={robot.task}",
        f"--env.cameras=[{','.join(robot.cameras)}]",
        "--env.render_cameras=[front,wrist]",
        f"--env.observation_height={robot.observation_height}",
        f"--env.observation_width={robot.observation_width}",
        f"--env.depth={str(robot.depth).lower()}",
        f"--env.segmentation={str(robot.segmentation).lower()}",
        f"--eval.n_episodes={n_episodes}",
        f"--eval.batch_size={min(cfg.eval.batch_size, n_episodes)}",
        "--eval.use_async_envs=false",
        "--policy.device=cpu",
        f"--seed={cfg.eval.seed}",
        f"--output_dir={output}",
    ]


CONFIG_FILE = "demo_config.json"  # the settings of the run a folder holds


def run_settings(cfg: DemoConfig) -> dict:
    """The settings that shape a run's results, as JSON: what a re-run must share to continue a folder (the
    folder itself and where the recording goes inside it left out)."""
    settings = json.loads(json.dumps(draccus.encode(cfg), default=str))
    settings.pop("output_dir", None)
    settings.pop("resume", None)
    settings["record"].pop("log_dir", None)
    settings["record"]["dataset"].pop("root", None)
    return settings


def claim_output(cfg: DemoConfig) -> Path:
    """The folder this run writes to: `output_dir` when it is new or holds this run's own earlier attempt with the
    same settings; else the first free `<output_dir>-<n>`, `output_dir` left untouched."""
    out, settings = Path(cfg.output_dir), run_settings(cfg)
    if not out.exists() or not any(out.iterdir()):
        why = None
    elif not (out / CONFIG_FILE).is_file():
        why = f"{out} holds files the demo did not make"
    elif not cfg.resume:
        why = f"{out} holds an earlier run and --resume=false"
    else:
        differences = config_differences(json.loads((out / CONFIG_FILE).read_text()), settings)
        why = f"{out} holds a run with other settings ({'; '.join(differences)})" if differences else None
        if why is None:
            print(f"[demo] continuing the run in {out} (the same settings; finished stages are kept)")
    if why is not None:
        n = 2
        while Path(f"{out}-{n}").exists():
            n += 1
        print(f"[demo] {why}: this run writes to {out}-{n} and leaves {out} as it is")
        out = Path(f"{out}-{n}")
    out.mkdir(parents=True, exist_ok=True)
    if not (out / CONFIG_FILE).is_file():
        write_json(out / CONFIG_FILE, settings)
    return out


class RunFolder:
    """The demo's output folder across attempts: which stages finished (`stages/<name>.json`, holding each one's
    result), fresh paths for a stage that is done again (an earlier attempt's leftovers renamed, never deleted),
    and a log file per attempt."""

    def __init__(self, root: Path) -> None:
        self.root, self.logs = root, root / "logs"
        (root / "stages").mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(exist_ok=True)

    def result(self, stage: str) -> dict | None:
        path = self.root / "stages" / f"{stage}.json"
        return json.loads(path.read_text()) if path.is_file() else None

    def finish(self, stage: str, result: dict) -> dict:
        write_json(self.root / "stages" / f"{stage}.json", result)
        return result

    def fresh(self, path: Path) -> Path:
        """`path`, with whatever an interrupted attempt left there renamed to `<name>.incomplete` (-2, ...)."""
        if path.exists():
            aside, n = path.with_name(f"{path.name}.incomplete"), 2
            while aside.exists():
                aside, n = path.with_name(f"{path.name}.incomplete-{n}"), n + 1
            move_aside(path, aside)
            print(f"[demo]     kept an interrupted attempt's {path.name} as {aside.name}")
        return path

    def log(self, name: str, suffix: str = ".log") -> Path:
        """`logs/<name>.log`, or `<name>.<n>.log` when an earlier attempt wrote that one (suffix "": a folder)."""
        path, n = self.logs / f"{name}{suffix}", 2
        while path.exists():
            path, n = self.logs / f"{name}.{n}{suffix}", n + 1
        return path


def record_stage(cfg: DemoConfig, run: RunFolder) -> dict:
    n, t = cfg.record.dataset.num_episodes, cfg.record.dataset.episode_time_s
    print(f"[demo] 1/5 recording {n} expert episodes of {t} s in the twin (so101-twin-record, simulated time)")
    if (recorded := run.result("record")) is not None:
        print(f"[demo]     done in an earlier attempt: {recorded['frames']} frames in {cfg.record.dataset.root}")
        return recorded
    # so101-twin-record resumes its own interrupted recording (.dataset.partial, same settings) shard by shard
    run.fresh(Path(cfg.record.dataset.root))
    cfg.record.log_dir = run.log("record", suffix="")
    cfg.record.log_dir.mkdir()
    recorded = record(cfg.record)
    print(
        f"[demo]     {recorded['frames']} frames in {recorded['record_seconds']} s "
        f"({recorded['real_time_factor']}x real time), expert success {recorded['expert_success']}"
    )
    return run.finish("record", recorded)


def command_stage(run: RunFolder, stage: str, outputs: list[Path], args: list[str], **progress) -> float:
    """Run a stage's command unless an earlier attempt finished it; returns the seconds it took (then or now).
    What an interrupted attempt left at `outputs` is kept under another name; `progress`: run_logged's bar."""
    if (done := run.result(stage)) is not None:
        print(f"[demo]     done in an earlier attempt ({done['seconds'] / 60:.1f} min)")
        return done["seconds"]
    for path in outputs:
        run.fresh(path)
    seconds = run_logged(args, run.log(stage), progress.pop("desc", stage), **progress)
    return run.finish(stage, {"seconds": seconds})["seconds"]


def precompute_stage(cfg: DemoConfig, run: RunFolder, frames: int) -> float:
    print("[demo] 2/5 adding the policy-ready observation (segdepth-precompute)")
    repo, out = cfg.record.dataset.repo_id, run.root / "dataset_segdepth"
    args = [
        str(VENV_BIN / "segdepth-precompute"),
        f"--dataset.repo_id={repo}",
        f"--dataset.root={cfg.record.dataset.root}",
        f"--output_dir={out}",
        f"--output_repo_id={repo}_segdepth",
        f"--policy.camera={cfg.record.robot.cameras[-1]}",
        "--num_workers=2",
        f"--stack_frames={str(cfg.train.stacked_frames).lower()}",
    ]
    return command_stage(run, "precompute", [out], args, total=frames, pattern=r"segdepth: .*\| *(\d+)/\d+")


def train_stage(cfg: DemoConfig, run: RunFolder, precision: str) -> float:
    steps = cfg.train.steps
    print(f"[demo] 3/5 training segdepth for {steps} steps, batch {cfg.train.batch_size}, {precision} (lerobot-train)")
    train_dir = run.root / "train"
    args = [
        str(VENV_BIN / "lerobot-train"),
        "--policy.type=segdepth",
        f"--policy.camera={cfg.record.robot.cameras[-1]}",
        "--policy.device=cpu",
        "--policy.push_to_hub=false",
        f"--policy.use_amp={str(precision != 'float32').lower()}",
        f"--policy.stacked_frames={str(cfg.train.stacked_frames).lower()}",
        *cfg.train.policy_args,
        f"--dataset.repo_id={cfg.record.dataset.repo_id}_segdepth",
        f"--dataset.root={run.root / 'dataset_segdepth'}",
        f"--steps={steps}",
        f"--batch_size={cfg.train.batch_size}",
        f"--num_workers={cfg.train.num_workers}",
        f"--save_freq={steps}",
        f"--log_freq={cfg.train.log_freq}",
        f"--output_dir={train_dir}",
        "--wandb.enable=false",
        f"--seed={cfg.train.seed}",
    ]
    progress = {"total": steps, "pattern": r"step:([0-9.K]+)", "env": train_env(cfg.train)}
    return command_stage(run, "train", [train_dir], args, **progress)


def eval_stage(cfg: DemoConfig, run: RunFolder, ckpt: Path, seconds: dict) -> dict:
    print(f"[demo] 4/5 evaluating on {cfg.eval.n_episodes} new cube poses (lerobot-eval, seed {cfg.eval.seed}+)")
    runs = [("trained", ["--policy.path", str(ckpt)], cfg.eval.n_episodes)]
    if cfg.eval.random_episodes:
        runs.append(("random", ["--policy.type=segdepth"], cfg.eval.random_episodes))
    results = {}
    for name, policy, episodes in runs:
        batch, out = min(cfg.eval.batch_size, episodes), run.root / f"eval_{name}"
        seconds[f"eval_{name}"] = command_stage(
            run,
            f"eval_{name}",
            [out],
            [str(VENV_BIN / "lerobot-eval"), *policy, *eval_args(cfg, episodes, out)],
            desc=f"eval {name} ({batch} env{'s' if batch > 1 else ''} per batch)",
            total=-(-episodes // batch),
            pattern=r"Stepping through eval batches: .*?\| *(\d+)/\d+",
        )
        results[name] = json.loads((out / "eval_info.json").read_text())["overall"]
    return results


def policy_view_stage(cfg: DemoConfig, run: RunFolder, ckpt: Path) -> float:
    print("[demo] 5/5 rollout video and the channels the policy saw")
    robot = cfg.record.robot
    args = [
        sys.executable,
        str(REPO / "examples" / "segdepth_policy_view.py"),
        f"--policy.path={ckpt}",
        f"--output_dir={run.root}",
        f"--seed={cfg.eval.seed}",
        f"--height={robot.observation_height}",
        f"--width={robot.observation_width}",
    ]
    outputs = [run.root / "policy_view.mp4", run.root / "policy_channels.png"]
    return command_stage(run, "policy_view", outputs, args, desc="policy view")


def demo(cfg: DemoConfig) -> dict:
    start = time.perf_counter()
    cfg.output_dir = claim_output(cfg)
    run = RunFolder(cfg.output_dir)
    cfg.record.dataset.root = str(cfg.output_dir / "dataset")
    recorded = record_stage(cfg, run)
    seconds: dict[str, float] = {"record": recorded["total_seconds"]}
    seconds["precompute"] = precompute_stage(cfg, run, recorded["frames"])
    precision = "bf16 autocast" if uses_amp(cfg.train) else "float32"
    seconds["train"] = train_stage(cfg, run, precision)
    ckpt = cfg.output_dir / "train" / "checkpoints" / "last" / "pretrained_model"
    results = eval_stage(cfg, run, ckpt, seconds)
    if cfg.policy_view:
        seconds["policy_view"] = policy_view_stage(cfg, run, ckpt)
    if (cfg.output_dir / "summary.json").is_file():  # an earlier attempt finished every stage: its figures stand
        summary = json.loads((cfg.output_dir / "summary.json").read_text())
    else:
        summary = summarize(cfg, recorded, results, seconds, precision, start)
    print_summary(cfg, summary, precision, run.logs)
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


@parser.wrap(config_path=REPO / "configs" / "demo.yaml")
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
