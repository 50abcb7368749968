"""CPU cost of the workspace's `segdepth` policy next to LeRobot's stock `act` policy, one process, same data.

Run from the repository root:

    .venv/bin/python benchmarks/segdepth_vs_act.py                         # records a fresh dataset (~30 s)
    .venv/bin/python benchmarks/segdepth_vs_act.py --dataset.root=/tmp/gt  # reuses a lerobot-record dataset
    .venv/bin/python benchmarks/segdepth_vs_act.py --repeats=20            # quicker, noisier

Without `--dataset.root` the script records 2 expert episodes of 4 s of LiftCube in the twin with the stock
`lerobot-record` (wrist camera only, 120x160, RGB + ground-truth depth + segmentation) into a temporary
directory. A dataset given with `--dataset.root` must have the same keys (repo id `local/twin_demo`).

Both policies are built from that dataset's metadata and stats with `make_policy` / `make_pre_post_processors`,
from scratch (random weights), on the CPU with torch using every core this process may run on:

    segdepth   the plugin's defaults (84x84 one-hot ids + disparity of the wrist camera, 3 stacked frames)
    act        LeRobot's defaults (ResNet-18, dim_model 512, 4 encoder + 1 decoder layers, VAE, chunk 100)
               except `pretrained_backbone_weights=None`, since the ImageNet weights cannot be downloaded
               here (random and pretrained weights cost the same). ACT's ResNet takes 3-channel images only,
               so its inputs are limited to the RGB wrist camera + observation.state; by default it would
               also take the 1-channel depth and segmentation images and fail in its first convolution.

Columns of the table:
    params                 parameters of the policy (trainable or not)
    select_action ms       one control step: preprocessor on a raw dataset frame -> policy.select_action ->
                           postprocessor, batch 1, under torch.inference_mode; median and p90 over --repeats
                           calls after 5 warm-up calls. ACT "new chunk": policy.reset() before each call, so
                           each one runs the network; ACT "amortised": no reset, the mean over n_action_steps
                           consecutive calls (one network run + queue pops), median / p90 over several chunks.
    train samples/s        batch 32 / median time of forward + backward + grad clipping + optimizer step
                           (each config's own optimizer preset) on a fixed, already preprocessed batch built
                           with the policy's delta timestamps: compute only, no data loading
    dataset ms/sample      LeRobotDataset.__getitem__ with that policy's delta timestamps (video decoding of
                           every camera stream in the dataset, as lerobot-train does), median over --repeats
                           shuffled indices
"""

import atexit
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

# lerobot reads these when it is imported: calibration files and caches must not land in the user's home,
# and there is no network to ask the Hub.
_TMP = Path(tempfile.mkdtemp(prefix="segdepth_vs_act_"))
atexit.register(shutil.rmtree, _TMP, ignore_errors=True)
os.environ["HF_LEROBOT_HOME"] = str(_TMP / "lerobot_home")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("MUJOCO_GL", "egl")  # the twin renders headless when recording

import lerobot  # noqa: E402
import torch  # noqa: E402
from lerobot.configs import parser  # noqa: E402
from lerobot.configs.policies import PreTrainedConfig  # noqa: E402
from lerobot.datasets import LeRobotDataset, LeRobotDatasetMetadata  # noqa: E402
from lerobot.datasets.factory import resolve_delta_timestamps  # noqa: E402
from lerobot.policies.factory import make_policy, make_pre_post_processors  # noqa: E402
from lerobot.utils.constants import OBS_STATE  # noqa: E402
from lerobot.utils.feature_utils import dataset_to_policy_features  # noqa: E402
from lerobot.utils.import_utils import register_third_party_plugins  # noqa: E402

from so101_devtools.timing import cpu_model  # noqa: E402
from so101_run_infra.cli import prepare_command_line  # noqa: E402

register_third_party_plugins()

REPO_ID = "local/twin_demo"
CAMERA_SIZE = (120, 160)  # (height, width)
ACT_CAMERA = "observation.images.wrist"
BATCH_SIZE = 32
LATENCY_WARMUP = 5
TRAIN_WARMUP = 3
INFERENCE_INDEX = 60  # mid-episode, so the arm and cube are in view rather than at rest


@dataclass
class Bench:
    name: str
    cfg: PreTrainedConfig
    policy: torch.nn.Module
    pre: Callable
    post: Callable


def record_dataset(root: Path) -> Path:
    """Record the benchmark's observations with the stock lerobot-record (so101_devtools.stock_commands)."""
    from so101_devtools.stock_commands import record_twin_dataset

    root.parent.mkdir(parents=True, exist_ok=True)  # lerobot-record runs in it; it creates `root` itself
    return record_twin_dataset(root, episodes=2, seconds=4, size=CAMERA_SIZE, ground_truth=True, cameras="[wrist]")


def build(name: str, meta: LeRobotDatasetMetadata) -> Bench:
    """A fresh policy and its processors from the dataset's features and stats, as lerobot-train makes them."""
    torch.manual_seed(0)
    if name == "act":
        cfg = PreTrainedConfig.get_choice_class("act")(
            device="cpu", push_to_hub=False, pretrained_backbone_weights=None
        )
        # make_policy only fills input_features when they are empty: pre-set them so the 1-channel depth and
        # segmentation images do not reach ResNet-18's 3-channel stem.
        features = dataset_to_policy_features(meta.features)
        cfg.input_features = {key: features[key] for key in (ACT_CAMERA, OBS_STATE)}
    else:
        cfg = PreTrainedConfig.get_choice_class(name)(device="cpu", push_to_hub=False)
    policy = make_policy(cfg, ds_meta=meta)
    pre, post = make_pre_post_processors(cfg, dataset_stats=meta.stats)
    return Bench(name, cfg, policy, pre, post)


def raw_frame(root: Path, index: int) -> dict:
    """One dataset frame shaped like a robot observation: no batch dim, no history, plus the task."""
    item = LeRobotDataset(REPO_ID, root=root)[index]
    frame = {k: v for k, v in item.items() if k.startswith("observation.")}
    frame["task"] = item["task"]
    return frame


def _inference_step(bench: Bench, frame: dict) -> torch.Tensor:
    # a shallow copy: processor steps may replace keys of the transition they are given
    with torch.inference_mode():
        return bench.post(bench.policy.select_action(bench.pre(dict(frame))))


def time_select_action(bench: Bench, frame: dict, calls: int, reset_each: bool) -> list[float]:
    """Milliseconds per full inference step; `reset_each` empties ACT's action queue so every call runs the net."""
    bench.policy.eval()
    bench.policy.reset()
    times = []
    for i in range(LATENCY_WARMUP + calls):
        if reset_each:
            bench.policy.reset()  # outside the clock: lerobot-eval resets once per episode, not per step
        start = time.perf_counter()
        _inference_step(bench, frame)
        if i >= LATENCY_WARMUP:
            times.append((time.perf_counter() - start) * 1e3)
    return times


def time_amortised(bench: Bench, frame: dict, chunks: int) -> list[float]:
    """Mean milliseconds per call over each full action chunk (one network run, then queue pops)."""
    steps = bench.cfg.n_action_steps
    bench.policy.eval()
    for _ in range(LATENCY_WARMUP):
        _inference_step(bench, frame)
    means = []
    for _ in range(chunks):
        bench.policy.reset()  # so each timed window starts on a chunk boundary and holds exactly one network run
        start = time.perf_counter()
        for _ in range(steps):
            _inference_step(bench, frame)
        means.append((time.perf_counter() - start) * 1e3 / steps)
    return means


def history_dataset(bench: Bench, meta: LeRobotDatasetMetadata, root: Path) -> LeRobotDataset:
    """The dataset as lerobot-train opens it for this policy (its frame history and action chunk)."""
    return LeRobotDataset(REPO_ID, root=root, delta_timestamps=resolve_delta_timestamps(bench.cfg, meta))


def time_dataset(ds: LeRobotDataset, items: int) -> list[float]:
    """Milliseconds per `__getitem__` on shuffled indices, as a shuffling DataLoader asks for them."""
    order = list(range(len(ds)))
    random.Random(0).shuffle(order)
    for index in order[:3]:  # the first reads open the video decoders and parquet files
        ds[index]
    times = []
    for index in (order * (items // len(order) + 1))[3 : 3 + items]:
        start = time.perf_counter()
        ds[index]
        times.append((time.perf_counter() - start) * 1e3)
    return times


def training_batch(bench: Bench, ds: LeRobotDataset) -> dict:
    """BATCH_SIZE samples spread over both episodes, collated and run through the policy's preprocessor."""
    indices = [round(i * (len(ds) - 1) / (BATCH_SIZE - 1)) for i in range(BATCH_SIZE)]
    items = [ds[i] for i in indices]
    batch = {k: torch.stack([it[k] for it in items]) for k, v in items[0].items() if isinstance(v, torch.Tensor)}
    batch["task"] = [it["task"] for it in items]
    return bench.pre(batch)


def time_training(bench: Bench, batch: dict, steps: int) -> list[float]:
    """Seconds per training step as lerobot-train's update_policy runs it, minus logging and the scheduler."""
    preset = bench.cfg.get_optimizer_preset()
    optimizer = preset.build(bench.policy.get_optim_params())
    bench.policy.train()
    times = []
    for i in range(TRAIN_WARMUP + steps):
        start = time.perf_counter()
        loss, _ = bench.policy.forward(batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(bench.policy.parameters(), preset.grad_clip_norm)
        optimizer.step()
        optimizer.zero_grad()
        if i >= TRAIN_WARMUP:
            times.append(time.perf_counter() - start)
    return times


def p90(values: list[float]) -> float:
    return statistics.quantiles(values, n=10, method="inclusive")[-1]


@dataclass
class RecordedDataset:
    # a recorded twin dataset (repo id local/twin_demo) to reuse instead of recording (None: record one)
    root: Path | None = None


@dataclass
class SegDepthVsACTConfig:
    dataset: RecordedDataset = field(default_factory=RecordedDataset)
    # timed select_action calls and dataset items; a fifth of it training steps, a tenth ACT chunks
    repeats: int = 50

    def __post_init__(self) -> None:
        if self.repeats < 10:
            raise ValueError(
                f"--repeats must be >= 10 (p90 and the derived step counts need a few samples), got {self.repeats}"
            )


@parser.wrap()
def benchmark(cfg: SegDepthVsACTConfig) -> None:
    train_steps, chunks = max(3, cfg.repeats // 5), max(3, cfg.repeats // 10)

    threads = len(os.sched_getaffinity(0))
    torch.set_num_threads(threads)

    root = cfg.dataset.root
    if root is None:
        print("recording 2 x 4 s of expert demos with lerobot-record ...", file=sys.stderr)
        root = record_dataset(_TMP / "record" / "gt")
    meta = LeRobotDatasetMetadata(REPO_ID, root=root)
    frame = raw_frame(root, min(INFERENCE_INDEX, meta.total_frames - 1))

    rows = []
    for name in ("segdepth", "act"):
        print(f"measuring {name} ...", file=sys.stderr)
        bench = build(name, meta)
        params = sum(p.numel() for p in bench.policy.parameters())
        ds = history_dataset(bench, meta, root)
        data_ms = statistics.median(time_dataset(ds, cfg.repeats))
        batch = training_batch(bench, ds)
        step_s = statistics.median(time_training(bench, batch, train_steps))
        del batch  # ACT's activations for 32 samples are large; free them before the next policy
        throughput = BATCH_SIZE / step_s
        latency = time_select_action(bench, frame, cfg.repeats, reset_each=name == "act")
        label = "act (new chunk)" if name == "act" else name
        rows.append((label, params, statistics.median(latency), p90(latency), throughput, data_ms))
        if name == "act":
            amortised = time_amortised(bench, frame, chunks)
            label = f"act (amortised over {bench.cfg.n_action_steps} steps)"
            rows.append((label, params, statistics.median(amortised), p90(amortised), throughput, data_ms))
        del bench

    print(
        f"torch {torch.__version__}, lerobot {lerobot.__version__}, {torch.get_num_threads()} threads, "
        f"CPU: {cpu_model()} ({os.cpu_count()} logical cores); dataset {meta.total_episodes} episodes / "
        f"{meta.total_frames} frames at {CAMERA_SIZE[0]}x{CAMERA_SIZE[1]}; {cfg.repeats} latency calls, "
        f"{train_steps} train steps (batch {BATCH_SIZE}), {chunks} ACT chunks"
    )
    print()
    print("| policy | params | select_action median ms | p90 ms | train samples/s (compute only) | dataset ms/sample |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, params, median_ms, p90_ms, throughput, data_ms in rows:
        print(f"| {label} | {params / 1e6:.2f} M | {median_ms:.1f} | {p90_ms:.1f} | {throughput:.1f} | {data_ms:.1f} |")
    print()
    print(
        "How to read it: select_action is one control step at batch 1 including both processors; at 30 fps the "
        "budget is 33 ms. ACT runs its network once per chunk, so a controller sees the 'new chunk' latency as a "
        "stall every n_action_steps steps and the 'amortised' figure on average. Training throughput is compute "
        "only; lerobot-train on this machine also pays 'dataset ms/sample' per sample (video decoding) in its "
        "DataLoader workers, which share the same cores, so the slower of the two bounds samples/s "
        "(roughly min(train samples/s, 1000 / dataset ms/sample) with one worker)."
    )


def main() -> None:
    prepare_command_line()
    benchmark()


if __name__ == "__main__":
    main()
