"""The async-inference round trip through so101-policy-server on localhost: an observation sent, its action chunk back.

Run from the repository root:

    .venv/bin/python benchmarks/async_round_trip.py                      # twin-size SegVLA, 50 observations
    .venv/bin/python benchmarks/async_round_trip.py --sizes='[twin,smolvlm2-500m]' --observations=20
    .venv/bin/python benchmarks/async_round_trip.py --tiny=true          # checks the script, measures nothing

The server is the `so101-policy-server` command (LeRobot's PolicyServer) in its own process on 127.0.0.1, at
--inference_latency (0: it answers as soon as the chunk is ready, where LeRobot's default pads each answer to 1/fps).
The client, in this process, makes the calls LeRobot's robot client makes, with the same messages pickled the same
way: SendPolicyInstructions once, then for each observation SendObservations (an SO-101's six joint readings, two
uint8 RGB frames of --camera_hw and the task, `must_go` so the server never skips it) and GetActions, which blocks
until the chunk is back and is unpickled. Both processes share the machine's cores.

The policy: SegVLA with random weights (nothing can be downloaded here), the real arm's cue source (the suite's
EfficientViT-B0 + FPN segmenter on both cameras) at these sizes:
    twin            configs/segvla_twin.yaml's architecture: `so101-make-random-vlm --size=twin` (256-wide text x 4
                    layers, 128-wide SigLIP x 3 layers), 96 px padding, chunk 20, 10 flow steps
    smolvlm2-500m   SmolVLM2-500M-Video-Instruct's published architecture with SmolVLA's defaults (16 VLM layers,
                    512 px padding, chunk 50, 10 flow steps)

Columns (ms; median and 95th percentile over --observations, after --warmup untimed ones):
    round trip       SendObservations start -> GetActions' chunk unpickled, at the client
    server           the server's own time for the chunk, from its log ("Observation N | Total time"): the frames
                     to tensors, preprocessor (segmenter, tokenizer), the chunk, the postprocessor
    transport        round trip minus server, per observation: pickling, gRPC on the loopback, queueing
"""

import os
import pickle
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import grpc
import numpy as np
import torch
from lerobot.async_inference.helpers import RemotePolicyConfig, TimedObservation
from lerobot.configs import FeatureType, PolicyFeature, parser
from lerobot.transport import services_pb2, services_pb2_grpc
from lerobot.transport.utils import send_bytes_in_chunks
from lerobot.utils.feature_utils import hw_to_dataset_features

from so101_core import MOTOR_KEYS
from so101_devtools.stock_commands import TASK, VENV_BIN
from so101_run_infra.cli import prepare_command_line

CAMERAS = ("front", "wrist")
ARCHITECTURE = {
    "twin": {"num_vlm_layers": 4, "resize_imgs_with_padding": (96, 96), "chunk_size": 20, "n_action_steps": 10},
    "smolvlm2-500m": {},  # SmolVLA's defaults
    "tiny": {"num_vlm_layers": 2, "resize_imgs_with_padding": (32, 32), "chunk_size": 4, "n_action_steps": 4},
}


def save_checkpoint(size: str, root: Path, camera_hw: tuple[int, int]) -> Path:
    """A random-weight SegVLA at `size` with segmenter cues on both cameras, saved as a training run saves it."""
    from lerobot_policy_segvla import SegVLAConfig, SegVLAPolicy, make_segvla_pre_post_processors
    from so101_commands.random_vlm import SIZES
    from so101_segmenter.model import EfficientViTFPN, SegmenterConfig, save_segmenter

    SIZES[size](root / "vlm")
    torch.manual_seed(0)
    save_segmenter(EfficientViTFPN(SegmenterConfig(pretrained=False)).eval(), root / "segmenter")
    features = {f"observation.images.{c}": PolicyFeature(FeatureType.VISUAL, (3, *camera_hw)) for c in CAMERAS}
    cfg = SegVLAConfig(
        vlm_model_name=str(root / "vlm"),
        load_vlm_weights=False,
        device="cpu",
        push_to_hub=False,
        input_features=features | {"observation.state": PolicyFeature(FeatureType.STATE, (6,))},
        output_features={"action": PolicyFeature(FeatureType.ACTION, (6,))},
        segmentation_feature_map={f"observation.images.{c}": f"observation.segmentation.{c}" for c in CAMERAS},
        perception_source="segmenter",
        segmentation_segmenter_path=str(root / "segmenter"),
        segmentation_num_classes=6,
        segmentation_geometry_classes=["cube", "moving_finger"],
        **ARCHITECTURE[size],
    )
    stats = {key: {"mean": torch.zeros(6), "std": torch.full((6,), 30.0)} for key in ("observation.state", "action")}
    pre, post = make_segvla_pre_post_processors(cfg, dataset_stats=stats)
    out = root / "pretrained_model"
    for part in (SegVLAPolicy(cfg), pre, post):
        part.save_pretrained(out)
    return out


def start_server(folder: Path, inference_latency: float) -> tuple[subprocess.Popen, int, Path]:
    """so101-policy-server on a free loopback port, once it accepts calls: (process, port, its log)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = folder / "server.log"
    command = [str(VENV_BIN / "so101-policy-server"), f"--port={port}", f"--inference_latency={inference_latency}"]
    with open(log, "w") as out:
        proc = subprocess.Popen(command, cwd=folder, stdout=out, stderr=subprocess.STDOUT)
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        while proc.poll() is None:
            try:
                grpc.channel_ready_future(channel).result(timeout=1)
                return proc, port, log
            except grpc.FutureTimeoutError:
                continue
    raise RuntimeError(f"so101-policy-server exited {proc.returncode}:\n{log.read_text()[-3000:]}")


def observation(step: int, camera_hw: tuple[int, int], rng: np.random.Generator) -> TimedObservation:
    """An SO-101's reading as LeRobot's robot client sends it: joint floats, uint8 frames, the task."""
    reading = {key: float(x) for key, x in zip(MOTOR_KEYS, rng.normal(0, 20, 6), strict=True)}
    reading |= {c: rng.integers(0, 256, (*camera_hw, 3), dtype=np.uint8) for c in CAMERAS}
    return TimedObservation(timestamp=time.time(), observation={**reading, "task": TASK}, timestep=step, must_go=True)


def round_trips(port: int, checkpoint: Path, chunk: int, cfg: "AsyncRoundTripConfig") -> dict[int, float]:
    """{timestep: ms} from SendObservations to the unpickled chunk, one observation at a time, the warm-up ones
    untimed."""
    hardware = dict.fromkeys(MOTOR_KEYS, float) | {c: (*cfg.camera_hw, 3) for c in CAMERAS}
    features = hw_to_dataset_features(hardware, "observation", use_video=False)
    policy = RemotePolicyConfig("segvla", str(checkpoint), features, actions_per_chunk=chunk, device=cfg.device)
    rng, times = np.random.default_rng(0), {}
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = services_pb2_grpc.AsyncInferenceStub(channel)
        stub.Ready(services_pb2.Empty())
        stub.SendPolicyInstructions(services_pb2.PolicySetup(data=pickle.dumps(policy)))
        for step in range(cfg.warmup + cfg.observations):
            obs = observation(step, cfg.camera_hw, rng)
            start = time.perf_counter()
            stub.SendObservations(send_bytes_in_chunks(pickle.dumps(obs), services_pb2.Observation, silent=True))
            answer = stub.GetActions(services_pb2.Empty())
            actions = pickle.loads(answer.data) if answer.data else []  # our own server's chunk
            if not actions:
                raise RuntimeError(f"observation {step}: the server answered no chunk (see its log)")
            if step >= cfg.warmup:
                times[step] = (time.perf_counter() - start) * 1e3
    return times


def server_times(log: Path) -> dict[int, float]:
    """{timestep: ms} the server logged for each chunk."""
    found = re.findall(r"Observation (\d+) \| Total time: ([\d.]+)ms", log.read_text())
    return {int(step): float(ms) for step, ms in found}


def p95(values: list[float]) -> float:
    return float(np.percentile(values, 95))


@dataclass
class AsyncRoundTripConfig:
    # model sizes, one row each: twin, smolvlm2-500m (so101-make-random-vlm's names)
    sizes: list[str] = field(default_factory=lambda: ["twin"])
    # timed observations per size
    observations: int = 50
    # untimed observations before them (the first calls pay for lazy initialisation)
    warmup: int = 3
    # the cameras' frame size (height, width): what the arm's two cameras send each observation
    camera_hw: tuple[int, int] = (480, 640)
    # the server's --inference_latency (s): 0 answers as soon as a chunk is ready
    inference_latency: float = 0.0
    # the device the client asks the server for (default: cuda where there is one, else cpu)
    device: str = field(default_factory=lambda: "cuda" if torch.cuda.is_available() else "cpu")
    # tiny models and 3 observations: checks the script, measures nothing
    tiny: bool = False

    def __post_init__(self) -> None:
        unknown = [s for s in self.sizes if s not in ("twin", "smolvlm2-500m")]
        if unknown:
            raise ValueError(f"--sizes: unknown {unknown}; choose from twin, smolvlm2-500m")


@parser.wrap()
def benchmark(cfg: AsyncRoundTripConfig) -> None:
    if cfg.tiny:
        cfg.sizes, cfg.observations, cfg.warmup = ["tiny"], 3, 1
    h, w = cfg.camera_hw
    print(
        f"torch {torch.__version__}, {os.cpu_count()} cores | device {cfg.device} | cameras 2 x {h}x{w} | "
        f"{cfg.observations} observations after {cfg.warmup} untimed | --inference_latency={cfg.inference_latency:g}"
    )
    head = ("size", "chunk", "round trip ms (median / p95)", "server ms (median / p95)", "transport ms (median / p95)")
    print("| {} | {} | {} | {} | {} |\n|---|---:|---:|---:|---:|".format(*head), flush=True)
    for size in cfg.sizes:
        with tempfile.TemporaryDirectory(prefix=f"async_{size}_") as tmp:
            folder = Path(tmp)
            print(f"[{size}] saving a random-weight checkpoint", file=sys.stderr, flush=True)
            checkpoint = save_checkpoint(size, folder, cfg.camera_hw)
            proc, port, log = start_server(folder, cfg.inference_latency)
            try:
                print(f"[{size}] round trips through 127.0.0.1:{port}", file=sys.stderr, flush=True)
                chunk = ARCHITECTURE[size].get("chunk_size", 50)
                trips = round_trips(port, checkpoint, chunk, cfg)
                time.sleep(0.5)  # the server logs a chunk's time after it is sent
            finally:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=60)
            served = server_times(log)
            total = list(trips.values())
            server = [served[step] for step in trips if step in served]
            transport = [trips[step] - served[step] for step in trips if step in served]
            cells = [f"{statistics.median(v):.0f} / {p95(v):.0f}" if v else "-" for v in (total, server, transport)]
            print(f"| {size} | {chunk} | {' | '.join(cells)} |", flush=True)


def main() -> None:
    prepare_command_line()
    benchmark()


if __name__ == "__main__":
    main()
