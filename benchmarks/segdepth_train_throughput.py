"""End-to-end `lerobot-train --policy.type=segdepth` throughput: a raw twin dataset against its precomputed copy.

Run from the repository root:

    .venv/bin/python benchmarks/segdepth_train_throughput.py                              # records a dataset first
    .venv/bin/python benchmarks/segdepth_train_throughput.py --dataset.root=outputs/demo/dataset
    .venv/bin/python benchmarks/segdepth_train_throughput.py --steps=300 --repeats=5

The dataset (`--dataset.root`) is one recorded with the twin as `scripts/demo.sh` records it: wrist camera, 160x120,
RGB + ground-truth depth + segmentation videos. Without it the script records `--episodes` expert episodes of
`--episode_seconds` s with the stock `lerobot-record` (same flags as the demo, no DART noise) into a temporary
folder. It then makes the policy-ready copy with `segdepth-precompute` (default settings: image_size 84, the
camera columns dropped, the observation packed) and runs the stock `lerobot-train --policy.type=segdepth` on each,
`--repeats` times, alternating raw and copy so that load from other processes falls on both alike: `--steps`
steps, batch 32, 2 DataLoader workers, seed 1, checkpoints off, everything else LeRobot's and the plugin's
defaults (84x84, frame stack 3).

Rate: taken from LeRobot's own logged step timings, not from wall time. lerobot-train logs every `--log_freq` steps
the mean `updt_s` (forward, backward, optimizer step) and `data_s` (waiting for the next batch, plus the
preprocessor) over those steps, and derives its `smp/s` = batch / (updt_s + data_s), rounded to an integer. The
script recomputes that rate from the 3-decimal timings over all windows but the first (which holds the DataLoader
workers' start and the first batches), i.e. the steady-state samples/s of the training loop, without the
start-up (imports, dataset and policy construction, worker spawn) that the wall time column shows.

`--threads=true` adds the thread settings, each on the per-frame copy and on a stacked copy (`segdepth-precompute
--stack_frames=true`, trained with `--policy.stacked_frames=true`: one row read per sample instead of a delta window
of three): one torch thread (the update on one core, the two loader workers on the other), and two threads with
`OMP_WAIT_POLICY=PASSIVE` (idle torch threads sleep instead of spinning, so the workers get the cores between the
update's parallel regions; the demo's setting, on the stacked copy). `--amp=true` adds `--policy.use_amp=true` rows
(LeRobot's flag: bf16 autocast through Accelerate, which on CPUs with AMX runs the convolutions on oneDNN's bf16
kernels; elsewhere bf16 is emulated and slower). `--skip_raw=true` leaves out the raw row.

Columns: samples/s end to end (median over repeats, min-max), the mean step split into update and data ms, and
the whole command's wall time (median; start-up included).
"""

import atexit
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from lerobot.configs import parser

from so101_run_infra.cli import prepare_command_line

BIN = Path(sys.executable).parent
REPO_ID = "local/twin_demo"
WINDOW = re.compile(r"updt_s:([\d.]+) data_s:([\d.]+)")  # one lerobot-train log line per --log_freq steps


@dataclass
class RecordingConfig:
    # the recording's repo id (any name works with a local root)
    repo_id: str = REPO_ID
    # a twin recording as scripts/demo.sh makes it (None: record one with lerobot-record)
    root: Path | None = None


@dataclass
class ThroughputConfig:
    dataset: RecordingConfig = field(default_factory=RecordingConfig)
    # episodes to record when no --dataset.root is given
    episodes: int = 6
    # seconds per recorded episode
    episode_seconds: float = 5.0
    # training steps per run
    steps: int = 200
    # LeRobot's logging window (steps); the first window is left out of the rate
    log_freq: int = 20
    # runs of every row, alternating; the table shows their median
    repeats: int = 3
    # lerobot-train's batch size
    batch_size: int = 32
    # lerobot-train's and segdepth-precompute's workers
    num_workers: int = 2
    # lerobot-train's seed
    seed: int = 1
    # lerobot-train's policy device
    device: str = "cpu"
    # keep the recording and the copies in this folder (None: a temporary folder, removed at exit)
    output_dir: Path | None = None
    # also one torch thread and two passive ones (OMP_WAIT_POLICY=PASSIVE), each on the per-frame copy and on a
    # stacked copy (--stack_frames=true; the demo: stacked, two passive threads)
    threads: bool = False
    # also --policy.use_amp=true (bf16 autocast) rows
    amp: bool = False
    # leave out the raw-recording row
    skip_raw: bool = False

    def __post_init__(self) -> None:
        if self.steps < 2 * self.log_freq:
            raise ValueError(
                f"--steps={self.steps} must cover at least two --log_freq={self.log_freq} windows "
                "(the first one is left out)"
            )


def run(args: list[str], cwd: Path, env: dict) -> tuple[str, float]:
    start = time.perf_counter()
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} exited {proc.returncode}:\n{(proc.stdout + proc.stderr)[-4000:]}")
    return proc.stdout + proc.stderr, wall


def record(root: Path, episodes: int, seconds: float) -> None:
    """The demo's recording (scripts/demo.sh) without DART noise: wrist 160x120, ground-truth depth + seg
    (so101_devtools.stock_commands, the stock lerobot-record)."""
    from so101_devtools.stock_commands import record_twin_dataset

    root.parent.mkdir(parents=True, exist_ok=True)
    record_twin_dataset(root, episodes, seconds, size=(120, 160), ground_truth=True, cameras="[wrist]")


def train(root: Path, repo_id: str, out: Path, cfg: ThroughputConfig, env: dict, extra: tuple = ()) -> dict:
    log, wall = run(
        [
            str(BIN / "lerobot-train"),
            "--policy.type=segdepth",
            f"--policy.device={cfg.device}",
            "--policy.push_to_hub=false",
            f"--dataset.repo_id={repo_id}",
            f"--dataset.root={root}",
            f"--steps={cfg.steps}",
            f"--batch_size={cfg.batch_size}",
            f"--num_workers={cfg.num_workers}",
            f"--log_freq={cfg.log_freq}",
            "--save_checkpoint=false",
            "--wandb.enable=false",
            f"--seed={cfg.seed}",
            f"--output_dir={out}",
            *extra,
        ],
        cwd=out.parent,
        env=env,
    )
    shutil.rmtree(out, ignore_errors=True)
    steady = [(float(u), float(d)) for u, d in WINDOW.findall(log)][1:]  # all windows but the first
    if not steady:
        raise SystemExit(f"no step timings after step {cfg.log_freq} in lerobot-train's log:\n{log[-3000:]}")
    update = statistics.fmean(u for u, _ in steady)
    data = statistics.fmean(d for _, d in steady)
    return {"rate": cfg.batch_size / (update + data), "update_ms": 1e3 * update, "data_ms": 1e3 * data, "wall": wall}


def loader_ms_per_sample(root: Path, repo_id: str, stacked: bool, samples: int = 300, repeats: int = 3) -> list[float]:
    """LeRobot's row reader alone, in this process: ms per `dataset[i]` at random positions, as lerobot-train's
    workers call it (the per-frame copy with the policy's delta window of 3 frames, the stacked copy without)."""
    import random

    from lerobot.datasets import LeRobotDataset

    window = [-2 / 30, -1 / 30, 0.0]
    delta = None if stacked else {"observation.segdepth": window, "observation.state": window}
    ds = LeRobotDataset(repo_id, root=root, delta_timestamps=delta)
    rng = random.Random(0)
    ds[0]
    out = []
    for _ in range(repeats):
        picks = [rng.randrange(len(ds)) for _ in range(samples)]
        start = time.perf_counter()
        for i in picks:
            ds[i]
        out.append(1e3 * (time.perf_counter() - start) / samples)
    return out


def update_ms(root: Path, repo_id: str, batch_size: int, threads: int, steps: int = 20) -> list[float]:
    """The update alone, in this process with nothing beside it: ms per forward + backward + clip + AdamW step on a
    batch from the stacked copy (through the policy's preprocessor), as lerobot-train's update_policy runs it."""
    import random

    import torch
    from lerobot.datasets import LeRobotDataset
    from lerobot.policies.factory import make_policy, make_pre_post_processors

    from lerobot_policy_segdepth import SegDepthConfig

    torch.set_num_threads(threads)
    ds = LeRobotDataset(repo_id, root=root)
    cfg = SegDepthConfig(device="cpu", push_to_hub=False, stacked_frames=True)
    torch.manual_seed(0)
    policy = make_policy(cfg, ds_meta=ds.meta)
    pre, _ = make_pre_post_processors(cfg, dataset_stats=ds.meta.stats)
    items = [ds[i] for i in random.Random(0).sample(range(len(ds)), batch_size)]
    batch = {k: torch.stack([it[k] for it in items]) for k, v in items[0].items() if isinstance(v, torch.Tensor)}
    batch = pre(batch | {"task": [it["task"] for it in items]})
    preset = cfg.get_optimizer_preset()
    optimizer = preset.build(policy.get_optim_params())
    policy.train()
    out = []
    for i in range(3 + steps):
        start = time.perf_counter()
        loss, _ = policy.forward(batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), preset.grad_clip_norm)
        optimizer.step()
        optimizer.zero_grad()
        if i >= 3:
            out.append(1e3 * (time.perf_counter() - start))
    return out


def cpu_name() -> str:
    """The CPU's model name and the vector units that decide the update's speed (the machine kinds here differ)."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    model = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "?")
    flags = set(next((line for line in info.splitlines() if line.startswith("flags")), "").split())
    units = [name for name in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if name in flags]
    return f"{model} ({', '.join(units) or 'no AVX2'})"


@parser.wrap()
def benchmark(cfg: ThroughputConfig) -> None:
    # absolute: the commands below run with the work folder as their working directory
    work = (cfg.output_dir or Path(tempfile.mkdtemp(prefix="segdepth_train_throughput_"))).resolve()
    work.mkdir(parents=True, exist_ok=True)
    if cfg.output_dir is None:
        atexit.register(shutil.rmtree, work, ignore_errors=True)
    # calibration files and caches stay out of the user's home; there is no network to ask the Hub
    env = {**os.environ, "HF_LEROBOT_HOME": str(work / "lerobot_home"), "HF_HUB_OFFLINE": "1"}
    os.environ.update(HF_LEROBOT_HOME=env["HF_LEROBOT_HOME"], HF_HUB_OFFLINE="1")  # the in-process reader and update
    env.setdefault("MUJOCO_GL", "egl")

    raw = cfg.dataset.root
    if raw is None:
        raw = work / "raw"
        if not (raw / "meta" / "info.json").exists():
            print(f"recording {cfg.episodes} episodes of {cfg.episode_seconds} s with lerobot-record ...", flush=True)
            record(raw, cfg.episodes, cfg.episode_seconds)
    raw = raw.resolve()
    copy = work / "precomputed"
    precompute_s = None
    if not (copy / "meta" / "info.json").exists():
        print("precomputing observation.segdepth with segdepth-precompute ...", flush=True)
        _, precompute_s = run(
            [
                str(BIN / "segdepth-precompute"),
                f"--dataset.repo_id={cfg.dataset.repo_id}",
                f"--dataset.root={raw}",
                f"--output_dir={copy}",
                f"--output_repo_id={cfg.dataset.repo_id}_segdepth",
                f"--num_workers={cfg.num_workers}",
            ],
            cwd=work,
            env=env,
        )

    stacked = work / "stacked"
    if cfg.threads and not (stacked / "meta" / "info.json").exists():
        print("precomputing a stacked copy with segdepth-precompute --stack_frames=true ...", flush=True)
        run(
            [
                str(BIN / "segdepth-precompute"),
                f"--dataset.repo_id={cfg.dataset.repo_id}",
                f"--dataset.root={raw}",
                f"--output_dir={stacked}",
                f"--output_repo_id={cfg.dataset.repo_id}_segdepth",
                f"--num_workers={cfg.num_workers}",
                "--stack_frames=true",
            ],
            cwd=work,
            env=env,
        )

    one_thread = {**env, "OMP_NUM_THREADS": "1"}
    two_passive = {**env, "OMP_NUM_THREADS": "2", "OMP_WAIT_POLICY": "PASSIVE"}
    rows = ("--policy.stacked_frames=true",)
    amp = ("--policy.use_amp=true",)
    copy_id = f"{cfg.dataset.repo_id}_segdepth"
    variants = {
        "raw (decodes RGB + depth + segmentation videos)": (raw, cfg.dataset.repo_id, env, ()),
        "precomputed copy (segdepth-precompute)": (copy, copy_id, env, ()),
    }
    if cfg.skip_raw:
        del variants["raw (decodes RGB + depth + segmentation videos)"]
    if cfg.threads:
        variants["copy, OMP_NUM_THREADS=1"] = (copy, copy_id, one_thread, ())
        variants["copy, 2 passive threads"] = (copy, copy_id, two_passive, ())
        variants["stacked copy, OMP_NUM_THREADS=1"] = (stacked, copy_id, one_thread, rows)
        variants["stacked copy, 2 passive threads (the demo)"] = (stacked, copy_id, two_passive, rows)
    if cfg.amp:
        variants["copy, OMP_NUM_THREADS=1, --policy.use_amp=true"] = (copy, copy_id, one_thread, amp)
        if cfg.threads:
            variants["stacked copy, 2 passive threads, --policy.use_amp=true"] = (
                stacked,
                copy_id,
                two_passive,
                rows + amp,
            )
    if cfg.threads:
        print("\nLeRobot's row reader, ms per sample (median of 3 x 300 random positions, this process, one thread):")
        for name, root, is_stacked in (
            ("per-frame copy, delta window of 3", copy, False),
            ("stacked copy", stacked, True),
        ):
            ms = loader_ms_per_sample(root, copy_id, is_stacked)
            print(f"  {name}: {statistics.median(ms):.2f} ({min(ms):.2f}-{max(ms):.2f})", flush=True)
        print(f"The update alone, batch {cfg.batch_size}, nothing beside it (median of 20 steps, this process):")
        for threads in (1, 2):
            ms = statistics.median(update_ms(stacked, copy_id, cfg.batch_size, threads))
            print(
                f"  {threads} thread(s): {ms:.1f} ms = {1e3 * cfg.batch_size / ms:.0f} samples/s with free data",
                flush=True,
            )
    results: dict[str, list[dict]] = {name: [] for name in variants}
    for r in range(cfg.repeats):
        for name, (root, repo_id, run_env, extra) in variants.items():
            result = train(root, repo_id, work / "train", cfg, run_env, extra)
            results[name].append(result)
            print(f"repeat {r + 1}/{cfg.repeats} {name}: {result['rate']:.1f} samples/s", flush=True)

    from lerobot.datasets import LeRobotDatasetMetadata

    frames = LeRobotDatasetMetadata(cfg.dataset.repo_id, root=raw).total_frames
    cores = len(os.sched_getaffinity(0))
    print(
        f"\nlerobot-train --policy.type=segdepth, {cfg.steps} steps, batch {cfg.batch_size}, "
        f"{cfg.num_workers} workers, seed {cfg.seed}, device {cfg.device}; {frames} frames ({raw}); {cores} cores, "
        f"{cpu_name()}, load average {os.getloadavg()[0]:.1f}; median of {cfg.repeats}"
    )
    if precompute_s is not None:
        print(f"segdepth-precompute (one-time): {precompute_s:.1f} s wall for {frames} frames, start-up included")
    print("\n| dataset | samples/s end to end | min-max | update ms/step | data ms/step | wall s |")
    print("|---|---:|---:|---:|---:|---:|")
    medians = {}
    for name, runs in results.items():
        rates = [x["rate"] for x in runs]
        medians[name] = statistics.median(rates)
        print(
            f"| {name} | {medians[name]:.1f} | {min(rates):.1f}-{max(rates):.1f} "
            f"| {statistics.median(x['update_ms'] for x in runs):.1f} "
            f"| {statistics.median(x['data_ms'] for x in runs):.1f} "
            f"| {statistics.median(x['wall'] for x in runs):.1f} |"
        )
    rates = list(medians.values())
    speedup = f"copy against raw {rates[1] / rates[0]:.2f}x. " if not cfg.skip_raw else ""
    print(
        f"\n{speedup}samples/s = batch / (updt_s + data_s), LeRobot's logged step timings over all {cfg.log_freq}-step "
        "windows but the first (start-up excluded; the wall column includes it)."
    )


def main() -> None:
    prepare_command_line()
    benchmark()


if __name__ == "__main__":
    main()
