"""The project's GPU check: each policy's stock `lerobot-train` and `lerobot-eval` on a small twin recording, then the
speed benchmarks, all on one device, ending with one table of every figure and the device's name.

    .venv/bin/python benchmarks/gpu_check.py                                   # on a machine with a GPU
    .venv/bin/python benchmarks/gpu_check.py --device=cpu --tiny=true --num_workers=0   # smoke run on a CPU

On a lent GPU machine (no network, its own Python with PyTorch): see docs/development.md, "The GPU check", for the
one command that unpacks the carried packages (scripts/gpu_site.sh) and runs this.

Stages, in order, each a subprocess whose whole output goes to `<output_dir>/logs/<stage>.log`:

    record          `so101-twin-record` of LiftCube, cameras front + wrist at 48x64 with depth and segmentation,
                    stored as images (`--dataset.video=false`), --episodes episodes of --episode_time_s; kept and
                    reused when `<output_dir>/data` already holds a finished recording
    vlm             the twin-size random SmolVLM2-shaped backbone (`so101-make-random-vlm --size=twin`) that
                    configs/segvla_twin.yaml and configs/hlrp_scratch_twin.yaml train on; reused when present
    train <policy>  the stock `lerobot-train --policy.device=<device>` of --steps steps with `--log_freq=1`: one line
                    per step with LeRobot's `updt_s` and `data_s`. segdepth: `--policy.type=segdepth`, batch 32 (the
                    demo's); segvla: configs/segvla_twin.yaml; imf: configs/imf_twin_cnn.yaml; hlrp (only when
                    --policies names it): configs/hlrp_scratch_twin.yaml; each on the recording above with
                    --num_workers DataLoader workers (LeRobot's default spawn start, persistent)
    eval <policy>   the stock `lerobot-eval` of that checkpoint in the twin, --eval_episodes episodes of
                    --episode_length steps at the recording's size
    benchmarks      benchmarks/segvla_vs_smolvla.py (--repeats=10 --batch=8), imf_speed.py (its training table at
                    --train_batch=32, then 256: `--skip=latency`; eager, and with --imf_compile_mode a
                    `--policy.compile_train=true` row in that torch.compile mode), drqv2_update_device.py
                    (--updates=50), rtc_latency.py (SegVLA and SmolVLA at SmolVLM2-500M size: a chunk, sync
                    against RTC), async_round_trip.py (so101-policy-server's round trip on the machine, 500M
                    size), hlrp_speed.py (--batch=32 --repeats=5), each with --device=<device>

A stage that fails, or runs past what is left of --budget_s, is reported as such in the table and the next stage
runs; the stages after the budget is spent are reported as skipped. The table ("stage | figure | value | status")
is printed last and written to `<output_dir>/summary.md` with `summary.json`. Train figures cover the logged steps
after the first tenth (the first step waits for the spawned workers, 12-15 s on a GPU host): update and data ms per
step as means, as LeRobot's own log averages them (a step that waits for the workers counts; the median, shown
beside, hides those waits), steps/s, and whether data time <= update time (the target on a GPU host).

Time on one NVIDIA H200 with 16 cores, measured with this script (two runs, 2026-11-26; a third on 2026-11-27 took
406 s with set-up, its imf rows cut by the budget while compiling): set-up (unpacking the carried packages) ~25 s;
record 34 s (10 episodes; 8 now); vlm 12 s; each lerobot-train ~16 s of start-up, 12-15 s for the first step (10
spawned workers) and then 180-210 ms per step for segdepth, segvla and imf, 84 ms for hlrp, all of them waiting for
data (updates of 8-16, 49-63, 82-91 and 25 ms); each lerobot-eval 14-18 s; segvla_vs_smolvla 34-40 s, imf_speed
eager ~25 s for both batches, drqv2_update_device 19 s, hlrp_speed 47 s. At the defaults (80 steps, three policies)
the stages take ~360 s, ~385 s with set-up, under the 7 minutes a lent machine's check may take; --budget_s=380
stops what would run past that. hlrp costs another ~45 s (train and eval): add it with `--policies='[segdepth,
segvla,imf,hlrp]' --budget_s=430` where the time allows.

--tiny=true shrinks every model (the contract tests' tiny overrides, the benchmarks' own --tiny or fewest repeats),
the recording (2 episodes of 1 s) and the steps, so tests/test_gpu_check.py runs the whole check on a CPU.
"""

import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MUJOCO_GL", "egl")

import torch
from lerobot.configs import parser

from so101_devtools.tiny_policies import TINY_IMF, TINY_SEGDEPTH  # the contract tests' tiny sizes, for --tiny
from so101_run_infra.cli import prepare_command_line

REPO = Path(__file__).resolve().parents[1]

POLICIES = ("segdepth", "segvla", "imf", "hlrp")
DEFAULT_POLICIES = ("segdepth", "segvla", "imf")  # hlrp on request: its ~45 s do not fit the 7 minutes
# in the order they run: those the suite's results still lack on a GPU before hlrp_speed, which a budget cuts first
BENCHMARKS = (
    "segvla_vs_smolvla",
    "imf_speed",
    "drqv2_update_device",
    "rtc_latency",
    "async_round_trip",
    "hlrp_speed",
)
HEIGHT, WIDTH = 48, 64
REPO_ID = "local/gpu_check"
# Runs a console script by its entry point where no script file is installed (a `pip install --target` tree).
LAUNCH = (
    "import sys; from importlib.metadata import entry_points; "
    "ep = next(iter(entry_points(group='console_scripts', name=sys.argv[1]))); "
    "sys.argv = sys.argv[1:]; sys.exit(ep.load()())"
)


@dataclass(frozen=True)
class Recipe:
    flags: tuple[str, ...]  # what makes it the twin recipe (its config file or type)
    tiny: dict[str, object]  # --policy.* overrides for --tiny (the contract tests' tiny models)
    env_flags: tuple[str, ...] = ()  # lerobot-eval flags so the twin provides the policy's inputs
    vlm_flag: str | None = None  # the policy field naming its VLM folder


TINY_VLM = {"num_vlm_layers": 2, "resize_imgs_with_padding": [32, 32]}
RECIPES = {
    "segdepth": Recipe(
        flags=("--policy.type=segdepth", "--batch_size=32"),
        tiny={**TINY_SEGDEPTH, "augment_pad": 2},
        env_flags=("--env.depth=true", "--env.segmentation=true"),
    ),
    "segvla": Recipe(
        flags=("--config_path=configs/segvla_twin.yaml",),
        tiny={**TINY_VLM, "chunk_size": 4, "n_action_steps": 4, "num_steps": 2},
        env_flags=("--env.segmentation=true",),
        vlm_flag="--policy.vlm_model_name",
    ),
    "imf": Recipe(
        flags=("--config_path=configs/imf_twin_cnn.yaml",),
        tiny=TINY_IMF,
    ),
    "hlrp": Recipe(
        flags=("--config_path=configs/hlrp_scratch_twin.yaml",),
        tiny={
            "core.num_vlm_layers": 2,
            "core.head_hidden": 32,
            "core.head_depth": 2,
            "core.chunk_size": 4,
            "n_action_steps": 2,
            "load_vlm_weights": False,
        },
        vlm_flag="--policy.core.vlm_model_name",
    ),
}


@dataclass
class GPUCheckConfig:
    # the torch device every stage runs on (lerobot-train's --policy.device, the benchmarks' --device)
    device: str = "cuda"
    # lerobot-train steps per policy
    steps: int = 80
    # where the recording, checkpoints, logs and the summary go
    output_dir: Path = Path("outputs/gpu_check")
    # tiny models, recording and steps: checks the script on a CPU, measures nothing
    tiny: bool = False
    # policies to train and evaluate, in order (segdepth, segvla, imf, hlrp)
    policies: list[str] = field(default_factory=lambda: list(DEFAULT_POLICIES))
    # speed benchmarks to run after them (benchmarks/<name>.py)
    benchmarks: list[str] = field(default_factory=lambda: list(BENCHMARKS))
    # lerobot-train's DataLoader workers (docs/results.md's GPU figures used 10 on a 16-core host)
    num_workers: int = 10
    # episodes of the twin recording
    episodes: int = 8
    # seconds per recorded episode (30 frames a second)
    episode_time_s: float = 2.0
    # so101-twin-record's worker processes
    record_workers: int = 8
    # lerobot-eval episodes per policy (all in one batch)
    eval_episodes: int = 2
    # lerobot-eval's episode length in steps
    episode_length: int = 60
    # seconds for all stages together; a stage gets what is left, later stages are skipped once it is spent
    budget_s: float = 380.0
    # imf_speed's training table with a `--policy.compile_train=true` row in this torch.compile mode (e.g.
    # reduce-overhead: CUDA graphs); none by default: on an H200 with torch 2.11, inductor could not build imf's loss
    # (Triton's "PassManager::run failed") after ~70 s of compiling, and the eager rows were lost with it
    imf_compile_mode: str | None = None

    def __post_init__(self) -> None:
        unknown = sorted(set(self.policies) - set(POLICIES)) + sorted(set(self.benchmarks) - set(BENCHMARKS))
        if unknown:
            raise ValueError(f"unknown {unknown}: policies are {list(POLICIES)}, benchmarks {list(BENCHMARKS)}")
        if self.tiny:  # the smallest run that still goes through every stage
            self.steps = min(self.steps, 4)
            self.episodes, self.episode_time_s = min(self.episodes, 2), min(self.episode_time_s, 1.0)
            self.record_workers = min(self.record_workers, 1)
            self.eval_episodes, self.episode_length = 1, min(self.episode_length, 8)


@dataclass
class Row:
    stage: str
    figure: str
    value: str
    status: str = "ok"


def command(name: str) -> list[str]:
    """A console script: its file beside this Python where installed there, else run through its entry point."""
    script = Path(sys.executable).parent / name
    return [str(script)] if script.is_file() else [sys.executable, "-c", LAUNCH, name]


class Runner:
    """Runs the stages as subprocesses against one deadline, logs each, and collects the table's rows."""

    def __init__(self, cfg: GPUCheckConfig):
        self.cfg = cfg
        self.out = cfg.output_dir.resolve()
        self.logs = self.out / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.deadline = time.monotonic() + cfg.budget_s
        self.rows: list[Row] = []
        self.env = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "TQDM_DISABLE": "1",
            "HF_HUB_OFFLINE": "1",
            "HF_LEROBOT_HOME": str(self.out / "lerobot_home"),
        }

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def run(self, stage: str, args: list[str], on_line: Callable[[str], None] | None = None) -> tuple[str, str]:
        """Run `args` in the repository root; (status, output). Status: ok, failed (exit N), timeout, skipped."""
        if self.left() < 5:
            print(f"[{stage}] skipped: the {self.cfg.budget_s:.0f} s budget is spent", flush=True)
            return "skipped (budget)", ""
        log = self.logs / (re.sub(r"[^A-Za-z0-9_.-]+", "_", stage) + ".log")
        print(f"[{stage}] started", flush=True)
        start = time.monotonic()
        lines: list[str] = []
        with log.open("w") as f:
            f.write(" ".join(args) + "\n")
            proc = subprocess.Popen(
                args, cwd=REPO, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                start_new_session=True,
            )  # fmt: skip

            def read() -> None:
                for line in proc.stdout:
                    f.write(line)
                    lines.append(line)
                    if on_line is not None:
                        on_line(line.rstrip("\n"))

            reader = threading.Thread(target=read, daemon=True)
            reader.start()
            try:
                code = proc.wait(timeout=max(1.0, self.left()))
                status = "ok" if code == 0 else f"failed (exit {code})"
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                status = "timeout (budget)"
            reader.join(timeout=10)
        seconds = time.monotonic() - start
        tail = "" if status == "ok" else f"; log: {log}"
        print(f"[{stage}] {status} in {seconds:.1f} s{tail}", flush=True)
        if status != "ok":
            print("".join(lines[-15:]), end="", flush=True)
        self.rows.append(Row(stage, "wall s", f"{seconds:.1f}", status))
        return status, "".join(lines)

    def add(self, stage: str, figures: list[tuple[str, str]], status: str) -> None:
        if status == "ok" and not figures:
            self.rows.append(Row(stage, "figures", "none found in its output", "check its log"))
        for figure, value in figures:
            self.rows.append(Row(stage, figure, value, status))


# ----- the stages ---------------------------------------------------------------------------------------------


def record(runner: Runner) -> Path:
    cfg, root = runner.cfg, runner.out / "data"
    if (root / "meta" / "info.json").is_file():
        info = json.loads((root / "meta" / "info.json").read_text())
        print(f"[record] reusing {root} ({info.get('total_episodes')} episodes)", flush=True)
        runner.rows.append(Row("record", "episodes (reused)", str(info.get("total_episodes")), "ok"))
        return root
    args = [
        *command("so101-twin-record"),
        "--robot.cameras=[front,wrist]",
        f"--robot.observation_height={HEIGHT}",
        f"--robot.observation_width={WIDTH}",
        "--robot.depth=true",
        "--robot.segmentation=true",
        "--robot.action_noise_std=1.0",
        f"--dataset.repo_id={REPO_ID}",
        f"--dataset.root={root}",
        f"--dataset.num_episodes={cfg.episodes}",
        f"--dataset.episode_time_s={cfg.episode_time_s}",
        "--dataset.video=false",
        f"--num_workers={cfg.record_workers}",
        "--episodes_per_shard=1",
    ]
    status, output = runner.run("record", args)
    runner.add("record", record_figures(output), status)
    return root


def record_figures(output: str) -> list[tuple[str, str]]:
    """The figures so101-twin-record's closing JSON prints (frames, seconds, simulated frames/s)."""
    keys = ("frames", "record_seconds", "total_seconds", "simulated_frames_per_second", "real_time_factor")
    return [(k, m.group(1)) for k in keys if (m := re.search(rf'"{k}": ([\d.]+)', output))]


def make_vlm(runner: Runner) -> Path:
    size = "tiny" if runner.cfg.tiny else "twin"
    folder = runner.out / "models" / f"smolvlm_{size}"
    if folder.is_dir() and (folder / "config.json").is_file():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    args = [*command("so101-make-random-vlm"), f"--size={size}"]
    runner.run(f"vlm ({size} SmolVLM)", [*args, f"--output_dir={folder}"])
    return folder


STAGE2_LINE = re.compile(r"^stage 2 \(batch (\d+)\): step ([\d.]+) ms, of which online LAQ labelling ([\d.]+) ms")
STEP_LINE = re.compile(r"step:(\S+) .*updt_s:([\d.]+) data_s:([\d.]+)")


def train_figures(steps: list[tuple[float, float]]) -> list[tuple[str, str]]:
    """Update and data time per step over the logged steps after the first tenth (the workers' start, cuDNN
    autotuning): means, as LeRobot's own log averages them (a step waiting for the next batch from the workers takes
    a share of the whole; the median would hide those waits), medians beside them; steps/s; data <= update."""
    if not steps:
        return []
    kept = steps[max(1, len(steps) // 10) :] or steps
    update, data = statistics.mean(u for u, _ in kept), statistics.mean(d for _, d in kept)
    median_u, median_d = statistics.median(u for u, _ in kept), statistics.median(d for _, d in kept)
    return [
        ("update ms/step, mean (median)", f"{update * 1e3:.1f} ({median_u * 1e3:.1f})"),
        ("data ms/step, mean (median)", f"{data * 1e3:.1f} ({median_d * 1e3:.1f})"),
        ("steps/s", f"{1 / (update + data):.1f}" if update + data > 0 else "inf"),
        ("data <= update", "yes" if data <= update else f"no ({data / max(update, 1e-9):.1f}x)"),
        ("steps timed", f"{len(kept)} of {len(steps)}"),
    ]


def train(runner: Runner, policy: str, data: Path | None, vlm: Path | None) -> Path:
    cfg, recipe = runner.cfg, RECIPES[policy]
    out = runner.out / "train" / policy
    shutil.rmtree(out, ignore_errors=True)  # lerobot-train refuses an existing output_dir
    args = [
        *command("lerobot-train"),
        *recipe.flags,
        f"--dataset.repo_id={REPO_ID}",
        f"--dataset.root={data}",
        f"--policy.device={cfg.device}",
        "--policy.push_to_hub=false",
        f"--steps={cfg.steps}",
        f"--save_freq={cfg.steps}",
        "--log_freq=1",
        f"--num_workers={cfg.num_workers}",
        "--seed=1",
        "--wandb.enable=false",
        f"--output_dir={out}",
    ]
    if recipe.vlm_flag and vlm is not None:
        args.append(f"{recipe.vlm_flag}={vlm}")
    if cfg.tiny:
        args += ["--batch_size=4", *(f"--policy.{k}={json.dumps(v)}" for k, v in recipe.tiny.items())]
    steps: list[tuple[float, float]] = []

    def on_line(line: str) -> None:
        if m := STEP_LINE.search(line):
            steps.append((float(m.group(2)), float(m.group(3))))
            print(f"[train {policy}] step {m.group(1)}/{cfg.steps} updt_s {m.group(2)} data_s {m.group(3)}", flush=True)

    status, _ = runner.run(f"train {policy}", args, on_line)
    runner.add(f"train {policy}", train_figures(steps), status)
    return out / "checkpoints" / "last" / "pretrained_model"


def evaluate(runner: Runner, policy: str, checkpoint: Path) -> None:
    cfg = runner.cfg
    stage = f"eval {policy}"
    if not (checkpoint / "config.json").is_file():
        print(f"[{stage}] skipped: no checkpoint", flush=True)
        runner.rows.append(Row(stage, "episodes", "-", "skipped (no checkpoint)"))
        return
    out = runner.out / "eval" / policy
    shutil.rmtree(out, ignore_errors=True)
    args = [
        *command("lerobot-eval"),
        f"--policy.path={checkpoint}",
        f"--policy.device={cfg.device}",
        "--env.type=so101_twin",
        "--env.task=LiftCube",
        "--env.cameras=[front,wrist]",
        f"--env.observation_height={HEIGHT}",
        f"--env.observation_width={WIDTH}",
        *RECIPES[policy].env_flags,
        f"--env.episode_length={cfg.episode_length}",
        f"--eval.n_episodes={cfg.eval_episodes}",
        f"--eval.batch_size={cfg.eval_episodes}",
        "--eval.use_async_envs=false",
        "--seed=1000",
        f"--output_dir={out}",
    ]
    status, _ = runner.run(stage, args)
    figures = []
    if (out / "eval_info.json").is_file():
        overall = json.loads((out / "eval_info.json").read_text())["overall"]
        keys = ("n_episodes", "pc_success", "eval_s", "eval_ep_s")
        figures = [(k, f"{overall[k]:.3g}") for k in keys if k in overall]
    runner.add(stage, figures, status)


# ----- the benchmarks and the figures they print ----------------------------------------------------------------


def markdown_figures(output: str) -> list[tuple[str, str]]:
    """Every timing cell (a column whose header has the word 'ms' or a '/s') of every table: (row: column, value)."""
    figures, header = [], None
    for line in output.splitlines():
        if not line.startswith("|"):
            header = None
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if header is None:
            header = cells
        elif not set(line) <= set("|-: "):
            figures += [
                (f"{cells[0]}: {name}", value)
                for name, value in zip(header[1:], cells[1:], strict=False)
                if re.search(r"\bms\b|/s\b", name)
            ]
    return figures


def text_figures(output: str) -> list[tuple[str, str]]:
    """segvla_vs_smolvla's and hlrp_speed's column-aligned rows and summary lines."""
    figures = []
    for line in output.splitlines():
        if m := re.match(r"^(smolvla|segvla(?:, cues off)?)\s+[\d,]+\s+([\d.]+)\s+([\d.]+)$", line):
            figures += [(f"{m.group(1)}: select_action ms", m.group(2)), (f"{m.group(1)}: train step ms", m.group(3))]
        elif m := re.match(r"^(hlrp \(\w+ head\)|smolvla)\s+[\d,]+\s+([\d.]+)$", line):
            figures.append((f"{m.group(1)}: select_action ms", m.group(2)))
        elif m := re.match(r"^segvla vs (.+?): (.+) \(budget", line):
            figures.append((f"segvla vs {m.group(1)}", m.group(2)))
        elif m := re.match(r"^cue path alone.*?: ([\d.]+ ms = [\d.]+%)", line):
            figures.append(("cue path alone", m.group(1)))
        elif m := re.match(r"^(tiny|twin|smolvlm2-500m)\s+(smolvla|segvla)\s+(sync|rtc)\s+(\d+)", line):
            figures.append((f"{m.group(1)} {m.group(2)} {m.group(3)}: chunk ms", m.group(4)))
        elif m := STAGE2_LINE.match(line):
            figures += [
                (f"stage 2 step ms, batch {m.group(1)}", m.group(2)),
                ("stage 2 LAQ labelling ms", m.group(3)),
            ]
    return figures


def benchmark_runs(cfg: GPUCheckConfig) -> list[tuple[str, str, list[str]]]:
    """(stage, script, flags) of every benchmark run asked for."""
    dev = f"--device={cfg.device}"
    compile_flag = [f"--train_compile_mode={cfg.imf_compile_mode}"] if cfg.imf_compile_mode else []
    if cfg.tiny:  # each benchmark's smallest run: its own --tiny, else the fewest repeats
        runs = {
            "segvla_vs_smolvla": [[dev, "--tiny=true", "--repeats=1"]],
            "imf_speed": [[dev, "--repeats=1", "--skip=training"]],
            "drqv2_update_device": [[dev, "--updates=1"]],
            "hlrp_speed": [[dev, "--tiny=true", "--repeats=1"]],
            "rtc_latency": [[dev, "--tiny=true", "--repeats=1", "--rollout_s=0"]],
            "async_round_trip": [[dev, "--tiny=true", "--observations=2", "--warmup=1"]],
        }
    else:
        runs = {
            "segvla_vs_smolvla": [[dev, "--repeats=10", "--batch=8"]],
            "imf_speed": [
                [dev, "--skip=latency", *compile_flag, f"--train_batch={b}", "--train_repeats=5"] for b in (32, 256)
            ],
            "drqv2_update_device": [[dev, "--updates=50"]],
            "hlrp_speed": [[dev, "--batch=32", "--repeats=5"]],
            # the chunk at the real size, sync against RTC (the twin robot's loop runs on the CPU: not measured here)
            "rtc_latency": [[dev, "--sizes=[smolvlm2-500m]", "--repeats=5", "--rollout_s=0"]],
            # a CUDA server and its client on one machine: the round trip without the network
            "async_round_trip": [[dev, "--sizes=[smolvlm2-500m]", "--observations=20"]],
        }
    out = []
    for name in cfg.benchmarks:
        for flags in runs[name]:
            label = f" ({flags[-2].removeprefix('--')})" if len(runs[name]) > 1 else ""
            out.append((name + label, f"{name}.py", flags))
    return out


def run_benchmarks(runner: Runner) -> None:
    for stage, script, flags in benchmark_runs(runner.cfg):
        status, output = runner.run(stage, [sys.executable, str(REPO / "benchmarks" / script), *flags])
        runner.add(stage, markdown_figures(output) + text_figures(output), status)


# ----- the table ----------------------------------------------------------------------------------------------


def device_name(device: str) -> str:
    if device.startswith("cuda") and torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(torch.device(device))} ({device})"
    return f"cpu ({platform.processor() or platform.machine()})"


def table(rows: list[Row], header: str) -> str:
    lines = [header, "", "| stage | figure | value | status |", "|---|---|---|---|"]
    lines += [f"| {r.stage} | {r.figure} | {r.value} | {r.status} |" for r in rows]
    return "\n".join(lines) + "\n"


@parser.wrap()
def gpu_check(cfg: GPUCheckConfig) -> list[Row]:
    if cfg.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("--device=cuda but torch sees no CUDA device; --device=cpu --tiny=true runs on a CPU")
    started = time.monotonic()
    runner = Runner(cfg)
    print(f"[gpu_check] {device_name(cfg.device)}, {os.cpu_count()} cores, budget {cfg.budget_s:.0f} s", flush=True)
    data = record(runner) if cfg.policies else None
    needs_vlm = any(RECIPES[p].vlm_flag for p in cfg.policies)
    vlm = make_vlm(runner) if needs_vlm else None
    for policy in cfg.policies:
        checkpoint = train(runner, policy, data, vlm)
        evaluate(runner, policy, checkpoint)
    run_benchmarks(runner)

    header = (
        f"### GPU check: {device_name(cfg.device)}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"{cfg.steps} train steps, {time.monotonic() - started:.0f} s"
        + (" (--tiny: checks the script, measures nothing)" if cfg.tiny else "")
    )
    text = table(runner.rows, header)
    (runner.out / "summary.md").write_text(text)
    (runner.out / "summary.json").write_text(
        json.dumps({"header": header, "rows": [r.__dict__ for r in runner.rows]}, indent=1)
    )
    print("\n" + text, flush=True)
    return runner.rows


def main() -> None:
    prepare_command_line()
    gpu_check()


if __name__ == "__main__":
    main()
