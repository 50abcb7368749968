"""so101-policy-server (LeRobot's own PolicyServer for the suite's policies) and LeRobot's own robot client, on
127.0.0.1 with tiny checkpoints on the CPU.

One server process serves every test of the module (a free port picked at run time; ~17 s to start on 2 busy cores,
paid by the first test that uses it). The tests talk to it as LeRobot's robot client does:
`python -m lerobot.async_inference.robot_client` itself driving the twin, or its calls (Ready, SendPolicyInstructions,
SendObservations, GetActions) with the same dataclasses pickled the same way, from here.
"""

import ast
import contextlib
import importlib.util
import json
import os
import pickle
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
import torch
from clitools import TASK, VENV_BIN
from lerobot.async_inference.helpers import RemotePolicyConfig, TimedObservation
from lerobot.configs import FeatureType, PolicyFeature
from lerobot.transport import services_pb2, services_pb2_grpc
from lerobot.transport.utils import send_bytes_in_chunks
from lerobot.utils.feature_utils import hw_to_dataset_features

from so101_commands import policy_server
from so101_core import MOTOR_KEYS

HEIGHT, WIDTH = 60, 80  # test_real_arm_rollout's tiny SegVLA sees its cameras at this size


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def subprocess_env(home: Path) -> dict[str, str]:
    return {**os.environ, "MUJOCO_GL": "egl", "HF_HUB_OFFLINE": "1", "HF_LEROBOT_HOME": str(home)}


def _default_sigint() -> None:
    # a child of a shell's background job starts with SIGINT ignored, and Python then never raises KeyboardInterrupt
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Server:
    """A running so101-policy-server: its port, its log, and whether its process is still up."""

    def __init__(self, folder: Path):
        self.port, self.log = free_port(), folder / "server.log"
        command = [str(VENV_BIN / "so101-policy-server"), f"--port={self.port}"]
        with open(self.log, "w") as out:
            self.proc = subprocess.Popen(
                command, cwd=folder, stdout=out, stderr=subprocess.STDOUT, env=subprocess_env(folder / "home")
            )
        deadline = time.monotonic() + 300
        with grpc.insecure_channel(f"127.0.0.1:{self.port}") as channel:
            while self.proc.poll() is None and time.monotonic() < deadline:
                try:
                    grpc.channel_ready_future(channel).result(timeout=1)
                    return
                except grpc.FutureTimeoutError:
                    continue
        if self.proc.poll() is None:
            self.stop()
        raise AssertionError(f"so101-policy-server did not start:\n{self.text()[-4000:]}")

    def text(self) -> str:
        return self.log.read_text()

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=60)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    started = Server(tmp_path_factory.mktemp("server"))
    yield started
    assert started.stop() == 0 and "Server terminated" in started.text(), started.text()[-3000:]


@pytest.fixture(scope="module")
def segvla(tmp_path_factory) -> Path:
    from test_real_arm_rollout import segvla_checkpoint

    return segvla_checkpoint(tmp_path_factory.mktemp("segvla"), ("front", "wrist"))


# ----- LeRobot's client's messages, sent from here ------------------------------------------------------------------
def specs(checkpoint: Path, policy_type: str = "segvla", device: str = "cpu", cameras=("front", "wrist")):
    """What RobotClient sends first: the policy, and the robot's features as map_robot_keys_to_lerobot_features
    makes them for an SO-101 with these cameras."""
    hardware = dict.fromkeys(MOTOR_KEYS, float) | {camera: (HEIGHT, WIDTH, 3) for camera in cameras}
    features = hw_to_dataset_features(hardware, "observation", use_video=False)
    return RemotePolicyConfig(policy_type, str(checkpoint), features, actions_per_chunk=4, device=device)


def observation(cameras=("front", "wrist"), seed: int = 0) -> TimedObservation:
    """What RobotClient sends next: an SO-101's reading (floats, uint8 frames) and the task, must go through."""
    rng = np.random.default_rng(seed)
    reading = {key: float(x) for key, x in zip(MOTOR_KEYS, [0.0, -20.0, 30.0, 40.0, 0.0, 50.0], strict=True)}
    reading |= {camera: rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8) for camera in cameras}
    return TimedObservation(timestamp=time.time(), observation={**reading, "task": TASK}, timestep=0, must_go=True)


def send_observation(stub, data: bytes) -> None:
    stub.SendObservations(send_bytes_in_chunks(data, services_pb2.Observation, silent=True))


def exchange(port: int, policy: RemotePolicyConfig, obs: TimedObservation) -> list:
    """RobotClient's calls, one observation: the action chunk the server answers with (TimedAction list)."""
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = services_pb2_grpc.AsyncInferenceStub(channel)
        stub.Ready(services_pb2.Empty())
        stub.SendPolicyInstructions(services_pb2.PolicySetup(data=pickle.dumps(policy)))
        send_observation(stub, pickle.dumps(obs))
        for _ in range(5):  # an empty answer: the observation had not reached the queue within obs_queue_timeout
            answer = stub.GetActions(services_pb2.Empty())
            if answer.data:
                return pickle.loads(answer.data)  # the test's own server's answer
    raise AssertionError("the server answered no action chunk")


def refused(call) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as e:
        call()
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, e.value
    return e.value


# ----- (a) LeRobot's robot client drives the twin ------------------------------------------------------------------
@pytest.mark.slow  # ~16 s (+ ~19 s for the module's server when it runs first): the client's start and 3 s of control
def test_lerobots_robot_client_drives_the_twin_through_the_server(server, segvla, tmp_path):
    log = tmp_path / "client.log"
    command = [str(VENV_BIN / "python"), "-m", "lerobot.async_inference.robot_client", "--robot.type=so101_twin",
               "--robot.cameras=[front,wrist]", f"--robot.observation_height={HEIGHT}",
               f"--robot.observation_width={WIDTH}",
               f"--task={TASK}", f"--server_address=127.0.0.1:{server.port}", "--policy_type=segvla",
               f"--pretrained_name_or_path={segvla}", "--policy_device=cpu", "--client_device=cpu",
               "--actions_per_chunk=4", "--chunk_size_threshold=0.5"]  # fmt: skip
    chunks_before = len(re.findall(r"Action chunk #\d+ generated", server.text()))
    with open(log, "w") as out:
        client = subprocess.Popen(command, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT,
                                  env=subprocess_env(tmp_path / "home"), preexec_fn=_default_sigint)  # fmt: skip
        deadline = time.monotonic() + 240
        # a few chunks served to this client, then two seconds more of the arm executing them (about 60 steps)
        while len(re.findall(r"Action chunk #\d+ generated", server.text())) < chunks_before + 5:
            assert client.poll() is None and time.monotonic() < deadline, log.read_text()[-4000:]
            time.sleep(0.5)
        time.sleep(2)
        client.send_signal(signal.SIGINT)  # how a user stops LeRobot's client: Ctrl-C
        try:
            client.wait(timeout=90)
            pressed_twice = False
        except subprocess.TimeoutExpired:
            # LeRobot's client can hang in its receiver thread's join after Ctrl-C on a loaded machine;
            # a user presses Ctrl-C again, and the twin must already have been let go by then
            client.send_signal(signal.SIGINT)
            client.wait(timeout=60)
            pressed_twice = True
    said = log.read_text()
    executed = re.search(r"twin SO101Twin disconnected after (\d+) actions", said)
    assert executed and int(executed.group(1)) > 0, said[-4000:]
    assert pressed_twice or "Client stopped" in said, said[-4000:]
    assert "Failed to connect" not in said, said[-4000:]
    assert re.search(r"Action chunk #\d+ generated", server.text()) and server.proc.poll() is None


# ----- (b) nothing a client sends runs code ------------------------------------------------------------------------
class RunsShell:
    """Unpickling this runs `touch marker` through os.system: what a hostile client would send instead."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class StorageRunsShell:
    """A 'tensor storage' whose bytes are a pickle that runs `touch marker`: torch's own storage loader,
    torch.storage._load_from_bytes, reads them with a full torch.load."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        # protocol 2: torch's weights-only loader then gets as far as the global, and names it
        return torch.storage._load_from_bytes, (pickle.dumps(RunsShell(self.marker), protocol=2),)


def test_the_crafted_messages_do_run_code_when_unpickled_in_full(tmp_path):
    """So the refusals below mean something: LeRobot's server's plain pickle.loads runs both payloads."""
    for n, payload in enumerate((RunsShell, StorageRunsShell)):
        marker = tmp_path / f"ran{n}"
        with contextlib.suppress(RuntimeError):  # torch finds no storage after the code ran: too late
            pickle.loads(pickle.dumps(payload(marker)))
        assert marker.exists()


def test_hostile_messages_are_refused_and_the_server_goes_on_serving(server, segvla, tmp_path):
    markers = [tmp_path / f"ran{n}" for n in range(3)]
    hostile_setup = pickle.dumps(RunsShell(markers[0]))
    obs = observation()
    obs.observation["front"] = RunsShell(markers[1])
    hostile_obs = [pickle.dumps(obs)]
    obs = observation()
    obs.observation["wrist"] = StorageRunsShell(markers[2])
    hostile_obs.append(pickle.dumps(obs))
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = services_pb2_grpc.AsyncInferenceStub(channel)
        stub.Ready(services_pb2.Empty())
        error = refused(lambda: stub.SendPolicyInstructions(services_pb2.PolicySetup(data=hostile_setup)))
        assert "posix.system" in error.details() and "never sends" in error.details(), error.details()
        stub.SendPolicyInstructions(services_pb2.PolicySetup(data=pickle.dumps(specs(segvla))))
        for data in hostile_obs:
            error = refused(lambda data=data: send_observation(stub, data))
    assert "weights-only loader" in error.details() and "posix.system" in error.details(), error.details()
    assert not any(marker.exists() for marker in markers)
    log = server.text()
    assert "Refused policy instructions from" in log and log.count("Refused an observation from") >= 2
    chunk = exchange(server.port, specs(segvla), observation(seed=1))  # a proper client is still served
    assert len(chunk) == 4 and all(a.get_action().shape == (6,) for a in chunk)
    assert not any(marker.exists() for marker in markers) and server.proc.poll() is None


def test_the_unpickler_takes_exactly_what_lerobots_client_sends():
    """Every global that pickling LeRobot's two messages puts in them (a robot's floats and numpy frames, numpy
    scalars, torch tensors, PolicyFeature) is allowed and reads back equal; anything else is refused."""
    import io

    seen = set()

    class Recording(pickle.Unpickler):
        def find_class(self, module, name):
            seen.add((module, name))
            return super().find_class(module, name)

    obs = observation()
    obs.observation |= {"scalar": np.float32(1.5), "tensor": torch.arange(6.0).reshape(2, 3).t(), "bools": {True}}
    policy = specs(Path("ckpt"))
    policy.lerobot_features["observation.images.front"]["feature"] = PolicyFeature(FeatureType.VISUAL, (3, 4, 4))
    for message in (policy, obs):
        data = pickle.dumps(message)
        Recording(io.BytesIO(data)).load()
        back = policy_server.safe_loads(data)
        assert type(back) is type(message)
        if message is policy:
            assert back == policy
        else:
            assert back.observation.keys() == obs.observation.keys() and back.must_go
            for key, value in obs.observation.items():
                assert np.array_equal(np.asarray(back.observation[key]), np.asarray(value)), key
    assert seen <= set(policy_server._allowed_globals()), seen - set(policy_server._allowed_globals())
    for hostile in (pickle.dumps(print), pickle.dumps(Path("x")), pickle.dumps({1}, protocol=2)):
        with pytest.raises(policy_server.RefusedMessage, match="never sends"):
            policy_server.safe_loads(hostile)


# ----- LeRobot's server module, as this server changes it --------------------------------------------------------
def upstream_source() -> str:
    """LeRobot's policy_server.py, read (importing it starts LeRobot's file log in the working folder)."""
    return Path(importlib.util.find_spec("lerobot.async_inference.policy_server").origin).read_text()


def assigned_attributes(source: str, method: str, cls: str) -> set[str]:
    tree = ast.parse(source)
    (klass,) = [n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == cls]
    (func,) = [n for n in klass.body if isinstance(n, ast.FunctionDef) and n.name == method]
    targets = [t for n in ast.walk(func) if isinstance(n, ast.Assign) for t in n.targets]
    names = [e for t in targets for e in (t.elts if isinstance(t, ast.Tuple) else [t])]
    return {e.attr for e in names if isinstance(e, ast.Attribute) and getattr(e.value, "id", None) == "self"}


def test_the_replaced_parts_of_lerobots_server_still_fit_it():
    """LeRobot's module unpickles only through its name `pickle` (which the server replaces), and the policy
    instructions set every attribute LeRobot's own SendPolicyInstructions sets (which the server overrides)."""
    assert policy_server.pickle_uses(upstream_source()) == {"loads", "dumps"}
    upstream = assigned_attributes(upstream_source(), "SendPolicyInstructions", "PolicyServer")
    ours = assigned_attributes(Path(policy_server.__file__).read_text(), "SendPolicyInstructions", "SO101PolicyServer")
    assert len(upstream) >= 7 and upstream <= ours, upstream - ours
    sneaky = "from pickle import loads\nimport pickle\nx = pickle.loads\n"
    assert policy_server.pickle_uses(sneaky) == {"loads", "<imported by name>"}


# ----- (c) what is not served --------------------------------------------------------------------------------------
def test_an_unknown_policy_type_is_refused_by_name(server, segvla):
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = services_pb2_grpc.AsyncInferenceStub(channel)
        stub.Ready(services_pb2.Empty())
        unknown = pickle.dumps(specs(segvla, policy_type="not_a_policy"))
        said = refused(lambda: stub.SendPolicyInstructions(services_pb2.PolicySetup(data=unknown))).details()
        assert "policy type 'not_a_policy' is not served here" in said, said
        served = re.search(r"serves (.*)", said).group(1).split(", ")
        assert {"segvla", "imf", "segdepth", "hlrp", "act", "smolvla", "pi05"} <= set(served), served
        wrong = pickle.dumps(specs(segvla, policy_type="segdepth"))  # served, but not what the checkpoint is
        said = refused(lambda: stub.SendPolicyInstructions(services_pb2.PolicySetup(data=wrong))).details()
        assert "is a segvla checkpoint, the client asked for segdepth" in said, said
    assert "policy type 'not_a_policy' is not served here" in server.text()


def test_a_checkpoint_building_a_step_by_import_path_is_refused(server, segvla, tmp_path):
    """LeRobot's pipeline loader imports a step's "class" path and calls it with the saved config: a checkpoint folder
    a client names could so call subprocess.Popen. Only registered steps are built."""
    marker = tmp_path / "ran"
    copy = shutil.copytree(segvla, tmp_path / "hostile")
    saved = json.loads((copy / "policy_postprocessor.json").read_text())
    saved["steps"].append({"class": "subprocess.Popen", "config": {"args": ["touch", str(marker)]}})
    (copy / "policy_postprocessor.json").write_text(json.dumps(saved))
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = services_pb2_grpc.AsyncInferenceStub(channel)
        stub.Ready(services_pb2.Empty())
        setup = services_pb2.PolicySetup(data=pickle.dumps(specs(copy)))
        said = refused(lambda: stub.SendPolicyInstructions(setup)).details()
    assert "by import path ['subprocess.Popen']" in said and not marker.exists(), said


# ----- (d) a GPU-trained checkpoint, served to a client that asks for the CPU -----------------------------------
def segdepth_checkpoint(root: Path, frame_stack: int = 1) -> Path:
    """A tiny SegDepth whose preprocessor runs a tiny segmenter and Depth Anything on the wrist camera: two steps of
    the suite's own that hold a device of their own. One frame: a stack is refused by the server (see below)."""
    from test_perception import save_tiny_depth_anything, save_tiny_segmenter

    from lerobot_policy_segdepth import SegDepthConfig, SegDepthPolicy, make_segdepth_pre_post_processors

    cfg = SegDepthConfig(
        device="cpu", push_to_hub=False, perception_source="segmenter_depth_anything",
        segmenter_path=str(save_tiny_segmenter(root / "segmenter")),
        depth_model=str(save_tiny_depth_anything(root / "depth_anything")),
        segmenter_input_size=32, depth_input_size=28, image_size=32, feature_dim=8, hidden_dim=16, encoder_channels=8,
        frame_stack=frame_stack,
        input_features={"observation.images.wrist": PolicyFeature(FeatureType.VISUAL, (3, HEIGHT, WIDTH)),
                        "observation.state": PolicyFeature(FeatureType.STATE, (6,))},
        output_features={"action": PolicyFeature(FeatureType.ACTION, (6,))},
    )  # fmt: skip
    torch.manual_seed(0)
    out = root / "pretrained_model"
    stats = {"observation.state": {"mean": torch.zeros(6), "std": torch.full((6,), 50.0)}}
    pre, post = make_segdepth_pre_post_processors(cfg, dataset_stats=stats)
    for part in (SegDepthPolicy(cfg), pre, post):
        part.save_pretrained(out)
    return out


def saved_on_cuda(checkpoint: Path) -> list[str]:
    """Rewrite the checkpoint as a GPU machine saves it: "cuda" for the config's devices and every saved pipeline
    step that holds one. The steps rewritten."""
    config = json.loads((checkpoint / "config.json").read_text())
    config |= {"device": "cuda"} | ({"perception_device": "cuda"} if "perception_device" in config else {})
    (checkpoint / "config.json").write_text(json.dumps(config))
    rewritten = []
    for name in ("policy_preprocessor.json", "policy_postprocessor.json"):
        saved = json.loads((checkpoint / name).read_text())
        for step in saved["steps"]:
            if "device" in step.get("config", {}) and not (name.startswith("policy_post") and step["config"]["device"]
                                                           == "cpu"):  # fmt: skip
                step["config"]["device"] = "cuda"
                rewritten.append(step["registry_name"])
        (checkpoint / name).write_text(json.dumps(saved))
    return rewritten


@pytest.fixture(scope="module")
def segdepth_on_cuda(tmp_path_factory) -> Path:
    checkpoint = segdepth_checkpoint(tmp_path_factory.mktemp("segdepth"))
    assert sorted(saved_on_cuda(checkpoint)) == ["device_processor", "so101_depth_anything", "so101_segmenter"]
    return checkpoint


def test_lerobots_own_device_override_fails_on_the_suites_perception_steps(segdepth_on_cuda):
    """The negative control: LeRobot's server loads the processors with only `device_processor` moved to the
    client's device, and the segmenter step saved on "cuda" cannot load on a machine without one."""
    from lerobot.configs.policies import PreTrainedConfig
    from lerobot.policies import make_pre_post_processors

    config = PreTrainedConfig.from_pretrained(segdepth_on_cuda)
    overrides = {"device_processor": {"device": "cpu"}}
    with pytest.raises(Exception, match=r"(?i)cuda|nvidia"):
        make_pre_post_processors(config, pretrained_path=str(segdepth_on_cuda), preprocessor_overrides=overrides,
                                 postprocessor_overrides=overrides)  # fmt: skip


def test_a_checkpoint_saved_on_cuda_serves_a_client_asking_for_the_cpu(server, segvla, segdepth_on_cuda, tmp_path):
    segvla_on_cuda = shutil.copytree(segvla, tmp_path / "segvla")
    assert saved_on_cuda(segvla_on_cuda) == ["device_processor"]
    chunk = exchange(server.port, specs(segvla_on_cuda, device="cpu"), observation(seed=2))
    assert len(chunk) == 4 and all(a.get_action().device.type == "cpu" for a in chunk)
    policy = specs(segdepth_on_cuda, policy_type="segdepth", device="cpu", cameras=("wrist",))
    chunk = exchange(server.port, policy, observation(cameras=("wrist",), seed=3))
    assert len(chunk) == 1 and chunk[0].get_action().shape == (6,) and torch.isfinite(chunk[0].get_action()).all()
    log = server.text()
    assert "Time taken to put policy on cpu" in log and "Device: cuda" not in log
    refused_cuda = pickle.dumps(specs(segvla_on_cuda, device="cuda"))  # this machine has none: said so
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = services_pb2_grpc.AsyncInferenceStub(channel)
        stub.Ready(services_pb2.Empty())
        said = refused(lambda: stub.SendPolicyInstructions(services_pb2.PolicySetup(data=refused_cuda))).details()
    assert "--policy_device=cuda is not available on the policy server's machine" in said, said


def test_a_policy_reading_consecutive_frames_is_refused(server, tmp_path):
    """SegDepth's frame stack (and imf's n_obs_steps) needs every control step's frame; the server sees only those
    the client sends when it needs actions, so such a checkpoint is refused with the reason, not served wrong."""
    stacked = segdepth_checkpoint(tmp_path / "stacked", frame_stack=3)
    instructions = pickle.dumps(specs(stacked, policy_type="segdepth", cameras=("wrist",)))
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = services_pb2_grpc.AsyncInferenceStub(channel)
        stub.Ready(services_pb2.Empty())
        said = refused(lambda: stub.SendPolicyInstructions(services_pb2.PolicySetup(data=instructions))).details()
    assert "reads frame_stack=3 frames one control step apart" in said, said
