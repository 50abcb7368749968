"""SegVLA and LeRobot's SmolVLA under synchronous inference and under real-time chunking (RTC).

Run from the repository root:

    .venv/bin/python benchmarks/rtc_latency.py                             # both sizes, chunks and 60 s loops
    .venv/bin/python benchmarks/rtc_latency.py --sizes='[twin]' --rollout_s=20
    .venv/bin/python benchmarks/rtc_latency.py --tiny=true                 # checks the script, measures nothing
    .venv/bin/python benchmarks/rtc_latency.py --device=cuda --sizes='[smolvlm2-500m]'   # the policy on a GPU

Sizes (random weights: nothing can be downloaded here):
    twin   configs/segvla_twin.yaml's architecture: `so101-make-random-vlm --size=twin` (256-wide text x 4 layers,
           128-wide SigLIP x 3 layers), 96 px padding, chunk 20, 10 flow steps
    smolvlm2-500m   SmolVLM2-500M-Video-Instruct's published architecture with SmolVLA's defaults (16 VLM layers, 512 px
           padding, chunk 50, 10 flow steps)
SegVLA reads ground-truth cues on both cameras (the twin's segmentation, as configs/segvla_twin.yaml); SmolVLA is
the same architecture without them. Cameras: front and wrist at --camera_hw.

Table 1, one chunk (median of --repeats after a warm-up, the four runs interleaved):
    sync ms    policy.reset(); select_action(batch): what `--inference.type=sync` pays at each chunk boundary
    rtc ms     predict_action_chunk(batch, inference_delay=3, prev_chunk_left_over=a 10-step leftover) with
               --inference.rtc.execution_horizon=10: what RTC's thread pays per chunk (guidance included)

Table 2, the 30 Hz loop: the stock `lerobot-rollout --strategy.type=base` for --rollout_s on the twin robot
(`--robot.type=so101_twin`), one run per policy, size and engine, one after another. Columns:
    loop steps        control-loop iterations (the twin's observations)
    on time           of those, the steps that kept --fps (LeRobot warns "running slower" for each late one)
    actions           actions the twin executed (RTC's loop sends none while its queue is empty)
    outcome           "ran", or the first line of the refusal (RTC refuses a chunk its delay would drop whole)
"""

import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MUJOCO_GL", "egl")

import torch
from lerobot.configs import FeatureType, PolicyFeature, parser
from lerobot.policies.rtc.configuration_rtc import RTCConfig
from lerobot.policies.smolvla import SmolVLAConfig, SmolVLAPolicy
from lerobot.policies.smolvla.processor_smolvla import make_smolvla_pre_post_processors

from lerobot_policy_segvla import SegVLAConfig, SegVLAPolicy, make_segvla_pre_post_processors
from so101_commands.random_vlm import SIZES
from so101_devtools.stock_commands import TASK, VENV_BIN
from so101_devtools.timing import SpeedBenchConfig, timed_ms
from so101_run_infra.cli import prepare_command_line

CAMERAS = ("front", "wrist")
HORIZON, DELAY = 10, 3
ARCHITECTURE = {
    "twin": {"num_vlm_layers": 4, "resize_imgs_with_padding": (96, 96), "chunk_size": 20, "n_action_steps": 10},
    "smolvlm2-500m": {},  # SmolVLA's defaults
    "tiny": {"num_vlm_layers": 2, "resize_imgs_with_padding": (32, 32), "chunk_size": 12, "n_action_steps": 6},
}


def policy_configs(vlm: Path, size: str, camera_hw: tuple[int, int], device: str) -> dict:
    features = {f"observation.images.{c}": PolicyFeature(FeatureType.VISUAL, (3, *camera_hw)) for c in CAMERAS}
    features["observation.state"] = PolicyFeature(FeatureType.STATE, (6,))
    common = {
        "vlm_model_name": str(vlm),
        "load_vlm_weights": False,
        "device": device,
        "push_to_hub": False,
        "input_features": features,
        "output_features": {"action": PolicyFeature(FeatureType.ACTION, (6,))},
        **ARCHITECTURE[size],
    }
    seg = SegVLAConfig(
        **common,
        segmentation_feature_map={f"observation.images.{c}": f"observation.segmentation.{c}" for c in CAMERAS},
        perception_source="ground_truth",
        segmentation_num_classes=6,
        segmentation_classes_from_task=True,
        segmentation_geometry_classes=["cube", "moving_finger"],
        segmentation_top_k_classes=2,
    )
    return {"smolvla": SmolVLAConfig(**common), "segvla": seg}


def save_checkpoints(size: str, root: Path, camera_hw: tuple[int, int], device: str) -> dict[str, Path]:
    """Both policies at `size`, random weights, saved with their processors as lerobot-rollout loads them."""
    vlm = root / "vlm"
    SIZES[size](vlm)
    stats = {key: {"mean": torch.zeros(6), "std": torch.full((6,), 30.0)} for key in ("observation.state", "action")}
    out = {}
    for name, cfg in policy_configs(vlm, size, camera_hw, device).items():
        torch.manual_seed(0)
        policy = (SegVLAPolicy if name == "segvla" else SmolVLAPolicy)(cfg)
        factory = make_segvla_pre_post_processors if name == "segvla" else make_smolvla_pre_post_processors
        pre, post = factory(cfg, dataset_stats=stats)
        out[name] = root / name
        for part in (policy, pre, post):
            part.save_pretrained(out[name])
        del policy
    return out


def observation(camera_hw: tuple[int, int]) -> dict:
    """One frame as the twin robot hands it to the preprocessor, before batching."""
    gen = torch.Generator().manual_seed(0)
    frame = {f"observation.images.{c}": torch.rand(3, *camera_hw, generator=gen) for c in CAMERAS}
    for c in CAMERAS:  # a table below, background above, as the twin's segmentation code (ids 1 and 2)
        code = torch.ones(1, *camera_hw)
        code[:, camera_hw[0] // 2 :] = 2
        frame[f"observation.images.{c}_segmentation"] = code
    frame["observation.state"] = torch.randn(6, generator=gen)
    frame["task"] = TASK
    return frame


def chunk_times(checkpoints: dict[str, Path], camera_hw: tuple[int, int], repeats: int, device: str) -> dict:
    """(sync ms, rtc ms) per policy: median chunk times, the policies and engines interleaved."""
    from lerobot.policies.factory import make_pre_post_processors

    runs = {}
    for name, path in checkpoints.items():
        cls = SegVLAPolicy if name == "segvla" else SmolVLAPolicy
        policy = cls.from_pretrained(path).to(device).eval()
        pre, _ = make_pre_post_processors(policy.config, pretrained_path=str(path))
        batch = pre(observation(camera_hw))
        runs[name] = (policy, batch)
    leftover = torch.randn(HORIZON, 6, generator=torch.Generator().manual_seed(2)).to(device)

    def sync(name):
        policy, batch = runs[name]
        policy.config.rtc_config = None
        policy.init_rtc_processor()
        policy.reset()
        with torch.inference_mode():
            return policy.select_action(dict(batch))

    def rtc(name):
        policy, batch = runs[name]
        policy.config.rtc_config = RTCConfig(execution_horizon=HORIZON)
        policy.init_rtc_processor()
        policy.reset()
        return policy.predict_action_chunk(dict(batch), inference_delay=DELAY, prev_chunk_left_over=leftover)

    times = {(name, mode): [] for name in runs for mode in ("sync", "rtc")}
    keys = list(times)
    for i in range(repeats + 1):
        for name, mode in keys[i % len(keys) :] + keys[: i % len(keys)]:
            ms = timed_ms(lambda name=name, mode=mode: (sync if mode == "sync" else rtc)(name), device)
            if i:
                times[name, mode].append(ms)
        print(f"  chunks: repeat {i}/{repeats}", file=sys.stderr, flush=True)
    return {name: tuple(statistics.median(times[name, m]) for m in ("sync", "rtc")) for name in runs}


def rollout(path: Path, engine: str, bench: "RTCLatencyConfig", cwd: Path) -> dict:
    """The stock lerobot-rollout on the twin robot; what its log says of the loop."""
    flags = ["--inference.type=rtc", f"--inference.rtc.execution_horizon={HORIZON}"] if engine == "rtc" else []
    cmd = [
        str(VENV_BIN / "lerobot-rollout"), "--strategy.type=base", f"--policy.path={path}", "--robot.type=so101_twin",
        "--robot.cameras=[front,wrist]", "--robot.segmentation=true",
        f"--robot.observation_height={bench.camera_hw[0]}", f"--robot.observation_width={bench.camera_hw[1]}",
        f"--task={TASK}", f"--duration={bench.rollout_s}",
        f"--fps={bench.fps}", f"--device={bench.device}", "--return_to_initial_position=false", *flags,
    ]  # fmt: skip
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=bench.rollout_s + 900)
    log = proc.stdout + proc.stderr
    done = re.search(r"disconnected after (\d+) actions \(.*?\); (\d+) observations", log)
    refusal = re.search(r"(RTC inference error[^\n]*|ValueError: [^\n]*|RuntimeError: [^\n]*)", log)
    late = log.count("running slower")
    row = {"wall_s": time.perf_counter() - start, "late": late, "exit": proc.returncode}
    if done:
        row |= {"actions": int(done.group(1)), "steps": int(done.group(2))}
    row["outcome"] = refusal.group(1)[:110] if refusal else ("ran" if done else log[-300:])
    return row


@dataclass
class RTCLatencyConfig(SpeedBenchConfig):
    # model sizes to measure: twin, smolvlm2-500m (so101-make-random-vlm's names)
    sizes: list[str] = field(default_factory=lambda: ["twin", "smolvlm2-500m"])
    # the twin robot's camera size (height, width), as the twin recipes record
    camera_hw: tuple[int, int] = (96, 128)
    # seconds of each lerobot-rollout on the twin robot (0: skip table 2)
    rollout_s: float = 60
    # the control rate the loop must hold
    fps: int = 30


def print_row(size: str, name: str, engine: str, ms: float, loop: dict) -> None:
    steps = loop.get("steps")
    on_time = "" if steps is None else f"{max(steps - loop['late'], 0) / max(steps, 1):.0%}"
    print(
        f"{size:<13} {name:<8} {engine:<6} {ms:>9.0f} {steps if steps is not None else '':>10} {on_time:>8} "
        f"{loop.get('actions', ''):>8}  {loop.get('outcome', '')}",
        flush=True,
    )


@parser.wrap()
def benchmark(bench: RTCLatencyConfig) -> None:
    sizes = ["tiny"] if bench.tiny else bench.sizes
    print(
        f"device={bench.device} torch={torch.__version__} threads={torch.get_num_threads()} repeats={bench.repeats} "
        f"fps={bench.fps}"
    )
    print(f"chunk: horizon {HORIZON}, delay {DELAY} (RTC); loops: {bench.rollout_s:g} s each on the twin robot")
    head = ("size", "policy", "engine", "chunk ms", "loop steps", "on time", "actions")
    print("{:<13} {:<8} {:<6} {:>9} {:>10} {:>8} {:>8}  outcome".format(*head), flush=True)
    for size in sizes:
        with tempfile.TemporaryDirectory(prefix=f"rtc_{size}_") as tmp:
            root = Path(tmp)
            print(f"[{size}] saving random-weight checkpoints", file=sys.stderr, flush=True)
            checkpoints = save_checkpoints(size, root, bench.camera_hw, bench.device)
            times = chunk_times(checkpoints, bench.camera_hw, 1 if bench.tiny else bench.repeats, bench.device)
            for name, path in checkpoints.items():
                for engine in ("sync", "rtc"):
                    loop = {}
                    if bench.rollout_s > 0:
                        print(f"[{size}] lerobot-rollout {name} {engine}", file=sys.stderr, flush=True)
                        loop = rollout(path, engine, bench, root)
                    print_row(size, name, engine, times[name][engine == "rtc"], loop)


def main() -> None:
    prepare_command_line()
    benchmark()


if __name__ == "__main__":
    main()
