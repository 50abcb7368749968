"""SegDepth from RGB in the stock `lerobot-rollout` on the twin robot keeping wall-clock time: how long from a frame's
capture to its target at the servos, and how many loop steps keep the rate, on this computer's CPU.

Run from the repository root:

    MUJOCO_GL=egl HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/rollout_loop.py
    .venv/bin/python benchmarks/rollout_loop.py --perception_source=segmenter_depth_anything --rates='[5,3]'
    .venv/bin/python benchmarks/rollout_loop.py --policy_path=outputs/segdepth_rgb_my_scene --camera_sizes='[480x640]'

By default the policy reads the wrist camera's RGB through the segmenter and its depth head
(`perception_source=segmenter_depth`, as configs/own_scene/segdepth_rgbonly.yaml trains it: 96x128 frames, the
segmenter at 96); `--perception_source=segmenter_depth_anything` times docs/real-so101.md's export instead (the
segmenter at 168 and Depth Anything V2 Small at 196, its real architecture). Without --policy_path a checkpoint of
that recipe is saved with random policy weights (`--segmenter_path`, by default the segmenter that ships with
so101_segmenter: one adapted to a user's scene has the same architecture and cost); random weights cost what trained
ones cost, and the output says which it timed.

Each setting (camera size x --fps x torch threads; --frozen_segmenter adds one with the segmenter frozen) runs

    lerobot-rollout --strategy.type=base --policy.path=CKPT --robot.type=so101_twin --robot.cameras='[wrist]'
        --robot.observation_height=H --robot.observation_width=W --robot.wall_clock=true --robot.timing_path=FILE
        --robot.fps=F --robot.max_relative_target=5 --fps=F --duration=D --device=cpu
        --return_to_initial_position=false

--repeats times (torch threads through OMP_NUM_THREADS, --nice for the loop's priority), the settings interleaved,
and the table shows each column's median over the repeats. The twin writes every loop step's `capture_to_servos_ms`
(from get_observation's capture to the target leaving send_action, plus the arm's configured latency: 0 here unless
--robot_flags sets one) and the `period_ms` between captures. A step is on time when its capture-to-servos is at most
one control period (1/fps) and the period that led to it at most 1.05/fps. The twin renders the frame inside
get_observation, after the capture time is taken, so the render counts in capture-to-servos; a real camera's frame is
already in memory when LeRobot reads it (`read_latest`), and on the arm the camera's own latency (30-100 ms for a USB
webcam, from exposure to the frame in memory) adds to the computer's part measured here.

The fix measured (`frozen`): the segmenter traced at its input size and frozen by TorchScript (FrozenSegmenter),
which the policy does not do yet; the rollout runs as this script's FROZEN_ROLLOUT, the stock lerobot-rollout with
SegmenterStep patched to freeze its model when it loads.

The peer table times, in this process and at the same threads, what one loop step costs piece by piece on twin
frames of each size: the twin's render (get_observation), the preprocessor's camera resize, the segmenter (with its
depth head), Depth Anything, the rest of the preprocessor, the policy's select_action, the postprocessor, and the
whole policy call (preprocessor + select_action + postprocessor, as the rollout's sync engine makes it). Median of
--peer_repeats calls after --peer_warmup untimed ones.
"""

import json
import os
import statistics
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from lerobot.configs import parser

from so101_devtools.timing import cpu_model
from so101_run_infra.cli import prepare_command_line

REPO = Path(__file__).resolve().parents[1]
SHIPPED_SEGMENTER = Path("so101_segmenter/src/so101_segmenter/twin_segmenter")
TASK = "Pick up the red cube and lift it."
RGBONLY_SEGMENTER_INPUT_SIZE = 96  # configs/own_scene/segdepth_rgbonly.yaml's, with the segmenter's depth head
ON_TIME_PERIOD = 1.05  # a period up to 5% over 1/fps still counts as on time


@dataclass
class RolloutLoopConfig:
    # a SegDepth checkpoint reading the wrist camera's RGB; null: save one of configs/own_scene/segdepth_rgbonly.yaml's
    # recipe with random weights under --output_dir/segdepth_<perception_source>
    policy_path: Path | None = None
    # the segmenter (with a depth head) the saved checkpoint carries; unused with --policy_path
    segmenter_path: Path = SHIPPED_SEGMENTER
    # the saved checkpoint's perception: segmenter_depth (the segmenter and its depth head, the rgbonly recipe) or
    # segmenter_depth_anything (the segmenter and Depth Anything V2 Small, the export of docs/real-so101.md section 5);
    # unused with --policy_path
    perception_source: str = "segmenter_depth"
    # the segmenter's input side (the frame's centre square at this size); null: 96 for segmenter_depth (the rgbonly
    # recipe), SegDepth's default 168 for segmenter_depth_anything; unused with --policy_path
    segmenter_input_size: int | None = None
    # the frame size the saved checkpoint is trained on, [height, width]; unused with --policy_path
    trained_size: list[int] = field(default_factory=lambda: [96, 128])
    # the twin camera's sizes, HEIGHTxWIDTH: a real webcam's 480x640 and the twin recording's own
    camera_sizes: list[str] = field(default_factory=lambda: ["480x640", "96x128"])
    # the control rates (--fps and --robot.fps)
    rates: list[int] = field(default_factory=lambda: [30, 15, 10])
    # torch threads (OMP_NUM_THREADS of the rollout); the second and later only at the first rate
    threads: list[int] = field(default_factory=lambda: [1, 2])
    # runs of each setting; the table shows the median of each column
    repeats: int = 3
    # seconds of each rollout (--duration)
    duration: float = 10.0
    # extra lerobot-rollout flags for every run, e.g. '[--robot.arm_params.latency_ms=67]'
    robot_flags: list[str] = field(default_factory=list)
    # also run the first rate at the first thread count with the segmenter traced and frozen (TorchScript), the
    # perception fix this benchmark measures (FrozenSegmenter)
    frozen_segmenter: bool = True
    # niceness added to the rollouts' (os.nice): a negative one (root only) puts the loop ahead of the machine's other
    # jobs, as on an arm's computer that runs it alone; 0 shares the CPU with them as they come
    nice: int = 0
    # timed calls per peer row, after the warm-up calls (0: no peer table)
    peer_repeats: int = 30
    peer_warmup: int = 3  # untimed calls before them
    # where the checkpoint, the timing files and the rollouts' logs go
    output_dir: Path = Path("outputs/rollout_loop")

    def __post_init__(self):
        for size in self.camera_sizes:
            parse_size(size)
        if self.repeats < 1 or self.duration <= 0 or not self.rates or not self.threads:
            raise ValueError("--repeats >= 1, --duration > 0 and non-empty --rates and --threads, please")
        rgb_source(self.perception_source)
        if self.policy_path is not None and not (self.policy_path / "config.json").is_file():
            raise FileNotFoundError(f"--policy_path={self.policy_path}: no config.json there")


def rgb_source(name: str):
    """The perception source `name`'s record (SegDepth's perception_sources.py), which must read the RGB camera
    alone: what a real arm gives."""
    from lerobot_policy_segdepth.perception_sources import PERCEPTION_SOURCES

    record = PERCEPTION_SOURCES.get(name)
    if record is None or record.reads != ("rgb",):
        alone = [n for n, r in PERCEPTION_SOURCES.items() if r.reads == ("rgb",)]
        raise ValueError(
            f"--perception_source={name!r}: this benchmark times a source reading RGB alone, one of {alone}"
        )
    return record


def runs_depth_anything(record) -> bool:
    """A source reading RGB alone that lets --policy.depth_model through runs Depth Anything for its disparity (the
    depth head's source refuses the field)."""
    return record.depth_model_unused is None


def parse_size(size: str) -> tuple[int, int]:
    try:
        height, width = (int(v) for v in size.lower().split("x"))
    except ValueError:
        raise ValueError(f"camera size {size!r} is not HEIGHTxWIDTH, e.g. 480x640") from None
    return height, width


def cpu_flags() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return ", ".join(f for f in ("avx2", "avx512f", "avx512_bf16", "amx_tile") if f in flags)


def load_average() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


# ----- the checkpoint ---------------------------------------------------------------------------------------------
def save_random_checkpoint(
    folder: Path,
    segmenter_path: Path,
    segmenter_input_size: int | None,
    trained_size: tuple[int, int],
    perception_source: str = "segmenter_depth",
) -> Path:
    """A SegDepth checkpoint reading the wrist camera's RGB (the rgbonly recipe: perception_source=segmenter_depth,
    the segmenter at 96; or segmenter_depth_anything, the export of docs/real-so101.md section 5, with Depth Anything
    V2 Small's architecture at random weights saved beside it) with random policy weights and the segmenter's own,
    saved as lerobot-train saves one: config, weights, both processors."""
    import torch
    from lerobot.configs import FeatureType, PolicyFeature
    from lerobot.policies.factory import make_pre_post_processors

    from lerobot_policy_segdepth.configuration_segdepth import SegDepthConfig
    from lerobot_policy_segdepth.modeling_segdepth import SegDepthPolicy

    torch.manual_seed(0)
    depth_anything = runs_depth_anything(rgb_source(perception_source))
    fields = {}
    if segmenter_input_size or not depth_anything:  # else SegDepth's default, as the export keeps it
        fields["segmenter_input_size"] = segmenter_input_size or RGBONLY_SEGMENTER_INPUT_SIZE
    if depth_anything:
        from transformers import DepthAnythingForDepthEstimation

        from lerobot_policy_segdepth.perception import depth_anything_v2_small_config

        depth = (folder.parent / "depth_anything_v2_small_random").resolve()
        DepthAnythingForDepthEstimation(depth_anything_v2_small_config()).save_pretrained(depth)
        fields["depth_model"] = str(depth)
    cfg = SegDepthConfig(
        perception_source=perception_source,
        segmenter_path=str(segmenter_path),
        device="cpu",
        push_to_hub=False,
        **fields,
    )
    cfg.input_features = {
        "observation.state": PolicyFeature(FeatureType.STATE, (6,)),
        "observation.images.wrist": PolicyFeature(FeatureType.VISUAL, (3, *trained_size)),
    }
    cfg.output_features = {"action": PolicyFeature(FeatureType.ACTION, (6,))}
    stats = {
        "observation.state": {"mean": torch.zeros(6), "std": torch.full((6,), 50.0)},
        "action": {
            "mean": torch.zeros(6),
            "std": torch.full((6,), 0.5),
            "min": torch.full((6,), -1.0),
            "max": torch.full((6,), 1.0),
        },
    }
    policy = SegDepthPolicy(cfg, dataset_stats=stats)
    pre, post = make_pre_post_processors(cfg, dataset_stats=stats)
    folder.mkdir(parents=True, exist_ok=True)
    policy.save_pretrained(folder)
    pre.save_pretrained(folder)
    post.save_pretrained(folder)
    note = "policy weights random (seed 0), for timing only"
    if depth_anything:
        note += "; Depth Anything V2 Small's architecture with random weights"
    (folder / "random_weights.txt").write_text(note + "\n")
    return folder


def checkpoint_note(checkpoint: Path) -> str:
    """What the checkpoint's perception is and whether its weights are trained."""
    config = json.loads((checkpoint / "config.json").read_text())
    source = f"perception_source={config.get('perception_source')}, segmenter at {config.get('segmenter_input_size')}"
    marker = checkpoint / "random_weights.txt"
    return f"{source}; {marker.read_text().strip() if marker.is_file() else 'trained weights'}"


# ----- the fix measured: the segmenter traced and frozen -----------------------------------------------------------
FROZEN_ROLLOUT = "--rollout_with_frozen_segmenter"  # this script's first argument: the stock rollout, so patched


class FrozenSegmenter:
    """A segmenter traced at its step's input size and frozen by TorchScript (constants folded, each batch norm folded
    into its convolution): the same outputs to float rounding, less work per frame. Offers what SegmenterStep calls."""

    def __init__(self, model, input_size: int):
        import torch

        class WithDisparity(torch.nn.Module):
            def __init__(self, inner):
                super().__init__()
                self.inner = inner

            def forward(self, images):
                return (
                    self.inner.forward_with_disparity(images) if self.inner.depth is not None else (self.inner(images),)
                )

        example = torch.rand(1, 3, input_size, input_size)
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)  # the input check, constant at a fixed size
            self.traced = torch.jit.freeze(torch.jit.trace(WithDisparity(model).eval(), example))

    def forward_with_disparity(self, images):
        return self.traced(images)

    def __call__(self, images):
        return self.traced(images)[0]


def freeze_segmenter(step) -> bool:
    """Swap a loaded SegmenterStep's model for its FrozenSegmenter; False (left as it is) without a fixed input
    size."""
    if step.input_size is None or isinstance(step._model, FrozenSegmenter):
        return False
    step._model = FrozenSegmenter(step.model, step.input_size)
    return True


def patch_segmenter_steps() -> None:
    """Every SegmenterStep built from now on in this process runs its segmenter frozen (see FrozenSegmenter)."""
    from lerobot_policy_segdepth.perception import SegmenterStep

    original = SegmenterStep.load_model

    def load_model(self):
        model = original(self)
        return self._model if freeze_segmenter(self) else model

    SegmenterStep.load_model = load_model


# ----- one rollout ------------------------------------------------------------------------------------------------
def rollout_args(
    checkpoint: Path, size: tuple[int, int], fps: int, duration: float, timing: Path, flags: list[str] = ()
) -> list[str]:
    return [
        str(Path(sys.executable).parent / "lerobot-rollout"),
        "--strategy.type=base",
        f"--policy.path={checkpoint}",
        "--robot.type=so101_twin",
        "--robot.cameras=[wrist]",
        f"--robot.observation_height={size[0]}",
        f"--robot.observation_width={size[1]}",
        "--robot.wall_clock=true",
        f"--robot.timing_path={timing}",
        f"--robot.fps={fps}",
        "--robot.max_relative_target=5",
        *flags,
        f"--fps={fps}",
        f"--duration={duration}",
        "--device=cpu",
        f"--task={TASK}",
        "--play_sounds=false",
        "--return_to_initial_position=false",  # the twin's timing then holds the control loop's steps alone
    ]


def loop_stats(timing: dict) -> dict:
    """The table's columns from a timing file the twin wrote: capture-to-servos median, p90 and max (ms), the share of
    steps on time (capture-to-servos <= 1/fps and the period that led to the step <= 1.05/fps), the rate reached.

    lerobot-rollout reads the robot once before its loop (the start pose it would return to), so the twin times one
    capture more than the loop's steps: the loop's periods are the last steps - 1, and the first step is judged on its
    capture-to-servos alone."""
    fps = timing["fps"]
    to_servos, periods = timing["capture_to_servos_ms"], timing["period_ms"]
    steps = len(to_servos)
    if steps < 2 or len(periods) < steps - 1:
        raise ValueError(f"a timing file with {steps} steps and {len(periods)} periods: the loop did not run")
    loop_periods = periods[len(periods) - (steps - 1) :]
    budget = 1000.0 / fps
    fast = [c <= budget for c in to_servos]
    steady = [True, *(p <= ON_TIME_PERIOD * budget for p in loop_periods)]
    on_time = [f and s for f, s in zip(fast, steady, strict=True)]
    return {
        "steps": steps,
        "c2s_median": statistics.median(to_servos),
        "c2s_p90": statistics.quantiles(to_servos, n=10, method="inclusive")[8],
        "c2s_max": max(to_servos),
        "period_median": statistics.median(loop_periods),
        "c2s_on_time": sum(fast) / steps,
        "period_on_time": sum(steady) / steps,
        "on_time": sum(on_time) / steps,
        "rate": 1000.0 * len(loop_periods) / sum(loop_periods),
        "late_steps": [i for i, ok in enumerate(on_time) if not ok],
    }


def measure(
    checkpoint: Path,
    size: tuple[int, int],
    fps: int,
    threads: int,
    duration: float,
    out: Path,
    flags: list[str] = (),
    frozen: bool = False,
    nice: int = 0,
) -> dict:
    """One stock lerobot-rollout of `checkpoint` on the wall-clock twin (`frozen`: its segmenter frozen, by this
    script's FROZEN_ROLLOUT; `nice`: at that added niceness); its timing file's stats (loop_stats) with the file's own
    fields. The log goes beside the timing file."""
    out.mkdir(parents=True, exist_ok=True)
    name = f"{size[0]}x{size[1]}_fps{fps}_t{threads}{'_frozen' if frozen else ''}_{time.strftime('%H%M%S')}"
    timing_path, log = out / f"{name}.json", out / f"{name}.log"
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    env.setdefault("MUJOCO_GL", "egl")
    env.setdefault("HF_HUB_OFFLINE", "1")
    args = rollout_args(checkpoint, size, fps, duration, timing_path, list(flags))
    if frozen:
        args[:1] = [sys.executable, str(Path(__file__).resolve()), FROZEN_ROLLOUT]
    with open(log, "w") as f:
        priority = (lambda: os.nice(nice)) if nice else None
        code = subprocess.run(
            args, stdout=f, stderr=subprocess.STDOUT, env=env, check=False, preexec_fn=priority
        ).returncode
    if code or not timing_path.is_file():
        tail = log.read_text()[-4000:]
        raise RuntimeError(f"lerobot-rollout exited {code} (timing file written: {timing_path.is_file()}):\n{tail}")
    timing = json.loads(timing_path.read_text())
    return {**loop_stats(timing), "timing": timing, "timing_path": timing_path, "log": log}


# ----- the peer: one step piece by piece, in this process ---------------------------------------------------------
PIECES = (
    "render",
    "camera resize",
    "segmenter + depth head",
    "Depth Anything",
    "rest of preprocessor",
    "select_action",
    "postprocessor",
)
TOTAL = "policy total"  # preprocessor + select_action + postprocessor, as the rollout's sync engine calls them


def peer_times(
    checkpoint: Path, size: tuple[int, int], threads: int, repeats: int, warmup: int, frozen: bool = False
) -> dict[str, float]:
    """Median ms of each piece of one loop step on the twin robot's frames at `size`: the render (get_observation),
    the preprocessor's steps by group, select_action, the postprocessor, and the policy's total; run as
    lerobot-rollout's sync engine runs them (prepare_observation_for_inference, under torch.inference_mode).
    `frozen`: the segmenter frozen (FrozenSegmenter)."""
    import torch
    from lerobot.configs.policies import PreTrainedConfig
    from lerobot.policies.factory import get_policy_class, make_pre_post_processors
    from lerobot.policies.utils import prepare_observation_for_inference
    from lerobot.utils.constants import OBS_STR
    from lerobot.utils.feature_utils import build_dataset_frame, hw_to_dataset_features

    from lerobot_env_so101_twin.config_robot import SO101TwinConfig
    from lerobot_env_so101_twin.robot import SO101Twin
    from lerobot_policy_segdepth.perception import DepthAnythingStep, SegmenterStep
    from so101_policy_common.steps import ResizeCamerasStep

    torch.set_num_threads(threads)
    policy_cfg = PreTrainedConfig.from_pretrained(checkpoint)
    policy_cfg.device = "cpu"
    policy = get_policy_class(policy_cfg.type).from_pretrained(checkpoint, config=policy_cfg).eval()
    pre, post = make_pre_post_processors(policy_cfg, pretrained_path=str(checkpoint))
    if frozen:
        for step in pre.steps:
            if isinstance(step, SegmenterStep):
                freeze_segmenter(step)
    robot = SO101Twin(
        SO101TwinConfig(
            id="rollout_loop_peer", cameras=["wrist"], observation_height=size[0], observation_width=size[1]
        )
    )
    robot.connect()
    features = hw_to_dataset_features(robot.observation_features, OBS_STR)
    times: dict[str, list[float]] = {p: [] for p in (*PIECES, TOTAL)}

    def group(step) -> str:
        if isinstance(step, SegmenterStep):
            return "segmenter + depth head"  # the segmenter alone under segmenter_depth_anything
        if isinstance(step, DepthAnythingStep):
            return "Depth Anything"
        return "camera resize" if isinstance(step, ResizeCamerasStep) else "rest of preprocessor"

    def timed(took: dict, key: str, call, *args):
        start = time.perf_counter()
        result = call(*args)
        took[key] += 1000.0 * (time.perf_counter() - start)
        return result

    try:
        policy.reset()
        for i in range(warmup + repeats):
            took = dict.fromkeys((*PIECES, TOTAL), 0.0)
            obs = timed(took, "render", robot.get_observation)
            frame = build_dataset_frame(features, obs, prefix=OBS_STR)
            start = time.perf_counter()
            with torch.inference_mode():
                transition = pre.to_transition(
                    prepare_observation_for_inference(frame, torch.device("cpu"), TASK, robot.name)
                )
                for step in pre.steps:
                    transition = timed(took, group(step), step, transition)
                action = timed(took, "select_action", policy.select_action, pre.to_output(transition))
                action = timed(took, "postprocessor", post, action)
            took[TOTAL] = 1000.0 * (time.perf_counter() - start)
            robot.send_action(dict(zip(robot.action_features, action.squeeze(0).tolist(), strict=True)))
            if i >= warmup:
                for key, value in took.items():
                    times[key].append(value)
    finally:
        robot.disconnect()
    return {key: statistics.median(values) for key, values in times.items()}


# ----- the table --------------------------------------------------------------------------------------------------
Setting = tuple[tuple[int, int], int, int, bool]  # (camera size, fps, torch threads, segmenter frozen)


def settings(cfg: RolloutLoopConfig) -> list[Setting]:
    """Each camera size at each rate with the first thread count; at the first rate, also with the other thread
    counts, and (--frozen_segmenter) with the segmenter frozen."""
    out = []
    for size in map(parse_size, cfg.camera_sizes):
        out += [(size, fps, cfg.threads[0], False) for fps in cfg.rates]
        out += [(size, cfg.rates[0], t, False) for t in cfg.threads[1:]]
        if cfg.frozen_segmenter:
            out.append((size, cfg.rates[0], cfg.threads[0], True))
    return out


def median_row(runs: list[dict]) -> dict:
    keys = (
        "c2s_median",
        "c2s_p90",
        "c2s_max",
        "period_median",
        "c2s_on_time",
        "period_on_time",
        "on_time",
        "rate",
        "steps",
    )
    return {key: statistics.median(run[key] for run in runs) for key in keys}


def segmenter_label(frozen: bool) -> str:
    return "frozen" if frozen else "as saved"


def print_tables(cfg: RolloutLoopConfig, checkpoint: Path, results: dict, peers: dict, loads: list[str]) -> None:
    print(
        f"\nCPU: {cpu_model()} ({cpu_flags()}), {os.cpu_count()} cores; load average (1, 5, 15 min) before and "
        f"after: {loads[0]} / {loads[-1]}"
    )
    print(
        f"checkpoint: {checkpoint} ({checkpoint_note(checkpoint)}); {cfg.duration:g} s per rollout, median of "
        f"{cfg.repeats} runs per row; extra flags: {' '.join(cfg.robot_flags) or 'none'}; rollouts' niceness "
        f"{'+' if cfg.nice >= 0 else ''}{cfg.nice}"
    )
    print(
        "| camera | fps | threads | segmenter | capture-to-servos median ms | p90 ms | max ms | steps on time | "
        "capture-to-servos <= 1/fps | period <= 1.05/fps | loop rate Hz |"
    )
    print("|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for (size, fps, threads, frozen), runs in results.items():
        row = median_row(runs)
        print(
            f"| {size[0]}x{size[1]} | {fps} | {threads} | {segmenter_label(frozen)} | {row['c2s_median']:.1f} | "
            f"{row['c2s_p90']:.1f} | {row['c2s_max']:.1f} | {100 * row['on_time']:.1f}% | "
            f"{100 * row['c2s_on_time']:.1f}% | {100 * row['period_on_time']:.1f}% | {row['rate']:.1f} |"
        )
    if not peers:
        return
    print(f"\nOne loop step piece by piece in this process (ms, median of {cfg.peer_repeats}):")
    print("| camera | threads | segmenter | " + " | ".join((*PIECES, TOTAL)) + " |")
    print("|---|---:|---|" + "---:|" * (len(PIECES) + 1))
    for (size, threads, frozen), times in peers.items():
        cells = " | ".join(f"{times[p]:.1f}" for p in (*PIECES, TOTAL))
        print(f"| {size[0]}x{size[1]} | {threads} | {segmenter_label(frozen)} | {cells} |")


@parser.wrap()
def rollout_loop(cfg: RolloutLoopConfig) -> dict:
    os.environ.setdefault("MUJOCO_GL", "egl")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    cfg.output_dir.mkdir(parents=True, exist_ok=True)
    checkpoint = cfg.policy_path
    if checkpoint is None:
        checkpoint = save_random_checkpoint(
            cfg.output_dir / f"segdepth_{cfg.perception_source}",
            cfg.segmenter_path,
            cfg.segmenter_input_size,
            tuple(cfg.trained_size),
            cfg.perception_source,
        )
    loads = [load_average()]
    results: dict[Setting, list[dict]] = {s: [] for s in settings(cfg)}
    for r in range(cfg.repeats):  # interleaved, so a change in the machine's load spreads over every setting
        for size, fps, threads, frozen in results:
            run = measure(
                checkpoint, size, fps, threads, cfg.duration, cfg.output_dir / "runs", cfg.robot_flags, frozen, cfg.nice
            )
            results[(size, fps, threads, frozen)].append(run)
            print(
                f"[rollout_loop] run {r + 1}/{cfg.repeats} {size[0]}x{size[1]} fps {fps} threads {threads} "
                f"segmenter {segmenter_label(frozen)}: capture-to-servos median {run['c2s_median']:.1f} ms, p90 "
                f"{run['c2s_p90']:.1f}, on time {100 * run['on_time']:.1f}%, {run['rate']:.1f} Hz "
                f"({run['steps']} steps)",
                flush=True,
            )
    peers = {}
    if cfg.peer_repeats > 0:
        for size in map(parse_size, cfg.camera_sizes):
            for threads in cfg.threads:
                peers[(size, threads, False)] = peer_times(checkpoint, size, threads, cfg.peer_repeats, cfg.peer_warmup)
            if cfg.frozen_segmenter:
                peers[(size, cfg.threads[0], True)] = peer_times(
                    checkpoint, size, cfg.threads[0], cfg.peer_repeats, cfg.peer_warmup, frozen=True
                )
    loads.append(load_average())
    print_tables(cfg, checkpoint, results, peers, loads)
    return {"results": results, "peers": peers, "checkpoint": checkpoint}


def main() -> None:
    if sys.argv[1:2] == [FROZEN_ROLLOUT]:  # the stock lerobot-rollout, its segmenter frozen
        from lerobot.scripts.lerobot_rollout import main as lerobot_rollout

        patch_segmenter_steps()
        sys.argv[1:2] = []
        lerobot_rollout()
        return
    prepare_command_line(plugins=True)
    rollout_loop()


if __name__ == "__main__":
    main()
