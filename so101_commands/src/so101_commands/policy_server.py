"""`so101-policy-server`: LeRobot's own async-inference `PolicyServer` for the suite's policies.

    so101-policy-server --host=127.0.0.1 --port=8080    # on the GPU machine
    python -m lerobot.async_inference.robot_client --robot.type=so101_follower ... \\
        --server_address=127.0.0.1:8080 --policy_type=segvla --pretrained_name_or_path=CKPT \\
        --policy_device=cuda --client_device=cpu --actions_per_chunk=50    # on the arm's computer, through a tunnel

LeRobot 0.6.1's server (lerobot.async_inference.policy_server), with three things changed and nothing else:

- **The suite's policies are served.** LeRobot refuses every policy type outside its own `SUPPORTED_POLICIES`; this
  server also accepts the registered policy types whose config is one of the suite's (`JointLimitsFields`: all four
  suite policies clip into the arm's joint limits), found once LeRobot's plugin discovery has registered them. Any
  other type is refused with a message naming it and the accepted ones.
- **Nothing a client sends can run code.** LeRobot unpickles whatever reaches the port. Here a client's messages are
  read by an unpickler that builds only what LeRobot's robot client sends (its two message dataclasses, plain
  containers, numpy arrays, torch tensors whose storage is read weights-only); any other global is refused before it
  is called, the refusal logged, and the server keeps serving. A checkpoint whose saved processors name a step by
  import path instead of LeRobot's step registry is refused too: building such a step calls whatever class the JSON
  names.
- **The client's device is the device.** The checkpoint's config and every step of its saved pipelines that saved a
  device (LeRobot's `device_processor`, and the suite's own perception steps) load on the `--policy_device` the
  client asks for, so a checkpoint trained on a GPU serves a CPU-only setup and the other way round.

It binds 127.0.0.1 unless `--host` says otherwise: the port hands out a robot policy to whoever reaches it, so a second
machine reaches it through an SSH tunnel, never an open port. Needs so101_commands' `serve` extra (LeRobot's `async`).
Like LeRobot's, the server writes its log to logs/policy_server_<time>.log under the folder it is started in.
"""

import ast
import inspect
import io
import pickle
import signal
import time
from concurrent import futures
from dataclasses import asdict, dataclass
from types import ModuleType, SimpleNamespace
from typing import Any

from so101_run_infra.cli import prepare_command_line
from so101_run_infra.extras import missing_extra

from .extras import SERVE

try:
    import grpc
    from google import protobuf  # noqa: F401  (the `serve` extra's protobuf, which LeRobot's gRPC messages need)
    from lerobot.async_inference.configs import PolicyServerConfig
    from lerobot.async_inference.constants import (
        DEFAULT_FPS,
        DEFAULT_INFERENCE_LATENCY,
        DEFAULT_OBS_QUEUE_TIMEOUT,
        SUPPORTED_POLICIES,
    )
    from lerobot.configs import parser
except ModuleNotFoundError as err:  # installed without the `serve` extra
    raise missing_extra(SERVE, err) from None

LOOPBACK = "127.0.0.1"
PREPROCESSOR_FILE = "policy_preprocessor.json"  # LeRobot's POLICY_PREPROCESSOR_DEFAULT_NAME + .json
POSTPROCESSOR_FILE = "policy_postprocessor.json"


# ----- what a client's message may build ---------------------------------------------------------------------------
class RefusedMessage(pickle.UnpicklingError):
    """A client's message that names something other than what LeRobot's robot client sends, or a request the server
    will not serve: refused before anything in it is called."""


def _storage_weights_only(data: bytes) -> Any:
    """torch pickles a tensor's storage as `torch.storage._load_from_bytes(bytes)`, which is a full `torch.load`: the
    bytes inside are a second pickle. They are read with torch's weights-only unpickler instead, on the CPU."""
    import torch

    try:
        return torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as e:
        # torch's own reason sits between paragraphs of advice on trusting files, which do not apply to a client
        advice = ("Weights only load failed", "Please file an issue", "Check the documentation")
        reason = " ".join(line.strip() for line in str(e).splitlines() if line.strip() and not line.startswith(advice))
        raise RefusedMessage(
            f"a tensor storage in the message is not one (torch's weights-only loader: {reason or 'no reason'}); "
            "it was not loaded (nothing in it ran)"
        ) from None


def _allowed_globals() -> dict[tuple[str, str], Any]:
    """(module, name) -> the object the unpickler hands out for it: what pickling LeRobot 0.6.1's RemotePolicyConfig
    and TimedObservation (a robot's floats, numpy frames, the task string) puts in a message, torch tensors as torch
    pickles them, and the PolicyFeature/FeatureType that RemotePolicyConfig's annotation names. numpy spells its
    module `numpy.core` before 2.0 and `numpy._core` from 2.0, so a client on either is read."""
    import collections

    import numpy
    import torch
    from lerobot.async_inference.helpers import RemotePolicyConfig, TimedObservation
    from lerobot.configs.types import FeatureType, PolicyFeature

    allowed: dict[tuple[str, str], Any] = {
        ("lerobot.async_inference.helpers", "RemotePolicyConfig"): RemotePolicyConfig,
        ("lerobot.async_inference.helpers", "TimedObservation"): TimedObservation,
        ("lerobot.configs.types", "PolicyFeature"): PolicyFeature,
        ("lerobot.configs.types", "FeatureType"): FeatureType,
        ("collections", "OrderedDict"): collections.OrderedDict,  # a tensor's (empty) backward hooks
        ("builtins", "set"): set,
        ("builtins", "frozenset"): frozenset,
        ("builtins", "bytearray"): bytearray,
        ("builtins", "complex"): complex,
        ("numpy", "ndarray"): numpy.ndarray,
        ("numpy", "dtype"): numpy.dtype,
        ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
        ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
        ("torch.storage", "_load_from_bytes"): _storage_weights_only,
    }
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(module, "_reconstruct")] = numpy._core.multiarray._reconstruct
        allowed[(module, "scalar")] = numpy._core.multiarray.scalar
    return allowed


class MessageUnpickler(pickle.Unpickler):
    """An unpickler that resolves only `_allowed_globals`: anything else (os.system, a class whose __reduce__ runs
    code, a protocol-2 pickle's builtins) raises RefusedMessage before it is looked up, so it is never called."""

    _allowed: dict[tuple[str, str], Any] | None = None

    def find_class(self, module: str, name: str) -> Any:
        if MessageUnpickler._allowed is None:
            MessageUnpickler._allowed = _allowed_globals()
        found = MessageUnpickler._allowed.get((module, name))
        if found is None:
            raise RefusedMessage(
                f"the message wants the global {module}.{name}, which LeRobot's robot client never sends; "
                "it was not loaded (nothing in it ran)"
            )
        return found

    def persistent_load(self, pid: Any) -> Any:
        raise RefusedMessage("the message holds a persistent id, which LeRobot's robot client never sends")


def safe_loads(data: bytes) -> Any:
    """A client's message, built by MessageUnpickler (RefusedMessage for anything it does not allow)."""
    if not isinstance(data, bytes | bytearray):
        raise RefusedMessage(f"no complete message arrived (got {type(data).__name__})")
    return MessageUnpickler(io.BytesIO(data)).load()


# What LeRobot's server module gets under its name `pickle`: every `pickle.loads` in it is the restricted one (see
# install_into_upstream), `pickle.dumps` of its own action chunks stays the standard one.
RESTRICTED_PICKLE = SimpleNamespace(loads=safe_loads, dumps=pickle.dumps)


def pickle_uses(source: str) -> set[str]:
    """The attributes of `pickle` that a module's source reads; with '<imported by name>' when it imports names from
    pickle, which a replacement of its `pickle` name would not reach."""
    used = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "pickle":
            used.add(node.attr)
        elif isinstance(node, ast.ImportFrom) and node.module in ("pickle", "_pickle"):
            used.add("<imported by name>")
    return used


def install_into_upstream(module: ModuleType) -> None:
    """Replace the name `pickle` in LeRobot's server module with RESTRICTED_PICKLE.

    Why the module's name and not only the two RPC methods that unpickle: the methods stay LeRobot's own code, and
    every `pickle.loads` in that module goes through the restricted one, including one a later 0.6.x adds in a method
    this file does not know (an override would miss it and serve it unrestricted). The replacement only works while
    the module reads `pickle.loads` / `pickle.dumps` through that name, so that is checked first: a LeRobot that
    unpickles any other way stops the server from starting instead of serving unsafely."""
    if module.pickle is RESTRICTED_PICKLE:
        return
    uses = pickle_uses(inspect.getsource(module))
    if module.pickle is not pickle or not uses <= {"loads", "dumps"}:
        raise RuntimeError(
            f"{module.__name__} no longer unpickles only through `pickle.loads` (it uses pickle's {sorted(uses)}): "
            "so101-policy-server cannot restrict what it loads; it needs the LeRobot 0.6.x it was written for"
        )
    module.pickle = RESTRICTED_PICKLE


# ----- which policies, on which device -----------------------------------------------------------------------------
def accepted_policy_types() -> list[str]:
    """LeRobot's own SUPPORTED_POLICIES and every registered policy type whose config is one of the suite's. Call it
    after LeRobot's plugin discovery (register_third_party_plugins), which registers the suite's."""
    from lerobot.configs.policies import PreTrainedConfig

    from so101_policy_common.policy_config import JointLimitsFields

    choices = PreTrainedConfig.get_known_choices()
    suite = sorted(name for name, cls in choices.items() if issubclass(cls, JointLimitsFields))
    return [*SUPPORTED_POLICIES, *(name for name in suite if name not in SUPPORTED_POLICIES)]


def _saved_steps(pretrained: str, filename: str) -> list[dict]:
    from so101_policy_common.pretrained import _saved_pipeline

    saved = _saved_pipeline(pretrained, filename)
    return saved[0].get("steps", []) if saved else []


def check_registered_steps(pretrained: str) -> None:
    """Refuse a checkpoint whose saved pipelines name a step by import path ("class") instead of by LeRobot's step
    registry: LeRobot imports that path and calls it with the saved config, so such a JSON can call any class
    installed here (subprocess.Popen, say). Every step of LeRobot's and the suite's is registered."""
    for filename in (PREPROCESSOR_FILE, POSTPROCESSOR_FILE):
        unregistered = [s.get("class", "?") for s in _saved_steps(pretrained, filename) if "registry_name" not in s]
        if unregistered:
            raise RefusedMessage(
                f"{pretrained}/{filename} builds steps by import path {unregistered} instead of by registry name; "
                "so101-policy-server builds only registered processor steps"
            )


def device_overrides(pretrained: str, filename: str, device: str) -> dict[str, dict[str, Any]]:
    """{step key: {"device": device}} for every step of a saved pipeline that saved a device: LeRobot's
    `device_processor` (which its own server overrides) and the suite's steps that run a model on a device of their
    own (SegDepth's segmenter and Depth Anything, SegVLA's Mask2Former), which it does not. A key is what LeRobot's
    pipeline loader matches overrides with: the registry name."""
    return {s["registry_name"]: {"device": device} for s in _saved_steps(pretrained, filename)
            if "device" in (s.get("config") or {})}  # fmt: skip


def rename_override(pretrained: str, rename_map: dict[str, str]) -> dict[str, dict[str, Any]]:
    """LeRobot's server passes the client's rename map to `rename_observations_processor`; here only where the saved
    preprocessor has that step, as LeRobot's loader refuses an override that matches no step."""
    name = "rename_observations_processor"
    if any(s.get("registry_name") == name for s in _saved_steps(pretrained, PREPROCESSOR_FILE)):
        return {name: {"rename_map": dict(rename_map)}}
    return {}


def check_policy_specs(specs: Any, accepted: tuple[str, ...]) -> None:
    """RemotePolicyConfig from a client: one of the accepted policy types, on a device this machine has."""
    from lerobot.async_inference.helpers import RemotePolicyConfig
    from lerobot.utils.device_utils import is_torch_device_available

    if not isinstance(specs, RemotePolicyConfig):
        raise RefusedMessage(f"policy instructions must be a RemotePolicyConfig, got {type(specs).__name__}")
    if specs.policy_type not in accepted:
        raise RefusedMessage(
            f"policy type {specs.policy_type!r} is not served here; so101-policy-server serves {', '.join(accepted)}"
        )
    try:
        available = is_torch_device_available(str(specs.device))
    except ValueError as e:
        raise RefusedMessage(f"--policy_device={specs.device}: {e}") from None
    if not available:
        raise RefusedMessage(
            f"--policy_device={specs.device} is not available on the policy server's machine; ask for one it has "
            "(cpu, or cuda on a GPU machine)"
        )
    if not isinstance(specs.actions_per_chunk, int) or specs.actions_per_chunk <= 0:
        raise RefusedMessage(f"actions_per_chunk must be a positive int, got {specs.actions_per_chunk!r}")


def check_history(config: Any) -> None:
    """Refuse a suite policy that reads frames one control step apart (SegDepth's frame_stack, imf's n_obs_steps):
    LeRobot's robot client sends an observation only when its action queue runs low, and the server skips one too
    similar to the last, so the policy's history would hold frames an unknown number of steps apart."""
    from so101_policy_common.policy_config import JointLimitsFields

    if not isinstance(config, JointLimitsFields):
        return
    for field in ("frame_stack", "n_obs_steps"):
        frames = getattr(config, field, 1)
        if frames > 1:
            raise RefusedMessage(
                f"this {config.type} checkpoint reads {field}={frames} frames one control step apart, but the policy "
                "server sees only the observations the robot client sends when it needs actions; run it with "
                "lerobot-rollout on the arm's computer, or serve a checkpoint trained with one frame"
            )


def load_policy(specs: Any) -> tuple[Any, Any, Any]:
    """(policy, preprocessor, postprocessor) of the client's checkpoint, all on `specs.device`.

    The config is read first and its device set to the client's: `from_pretrained` loads the weights onto
    `config.device`, and a policy that makes tensors on `config.device` while it runs would otherwise mix a GPU-trained
    checkpoint's "cuda" with the CPU the client asked for (LeRobot's server moves the policy afterwards and leaves the
    config as saved). The saved pipelines get the device on every step that saved one (device_overrides), where
    LeRobot's server moves `device_processor` alone and a suite step saved on "cuda" fails to load without a GPU."""
    from lerobot.configs.policies import PreTrainedConfig
    from lerobot.policies import get_policy_class, make_pre_post_processors

    path = specs.pretrained_name_or_path
    check_registered_steps(path)
    config = PreTrainedConfig.from_pretrained(path)
    if config.type != specs.policy_type:
        raise RefusedMessage(f"{path} is a {config.type} checkpoint, the client asked for {specs.policy_type}")
    check_history(config)
    config.device = str(specs.device)
    policy = get_policy_class(specs.policy_type).from_pretrained(path, config=config)
    policy.to(specs.device)
    pre_overrides = device_overrides(path, PREPROCESSOR_FILE, specs.device) | rename_override(path, specs.rename_map)
    preprocessor, postprocessor = make_pre_post_processors(
        policy.config,
        pretrained_path=path,
        preprocessor_overrides=pre_overrides,
        postprocessor_overrides=device_overrides(path, POSTPROCESSOR_FILE, specs.device),
    )
    return policy, preprocessor, postprocessor


# ----- the server ----------------------------------------------------------------------------------------------------
def make_server_class() -> type:
    """LeRobot's PolicyServer with the suite's policy instructions (types, device, restricted messages). Built on call:
    importing LeRobot's server module starts its file log in the working folder, which `--help` must not do."""
    from lerobot.async_inference import policy_server as upstream
    from lerobot.transport import services_pb2

    install_into_upstream(upstream)

    class SO101PolicyServer(upstream.PolicyServer):
        accepted: tuple[str, ...] = ()

        def SendPolicyInstructions(self, request, context):
            """LeRobot's, but for the suite's policy types and device handling (load_policy); a refused request
            ends the call with INVALID_ARGUMENT and its reason, which LeRobot's client logs."""
            if not self.running:
                self.logger.warning("Server is not running. Ignoring policy instructions.")
                return services_pb2.Empty()
            peer = context.peer()
            try:
                specs = safe_loads(request.data)
                check_policy_specs(specs, self.accepted)
                self.logger.info(
                    f"Receiving policy instructions from {peer} | Policy type: {specs.policy_type} | Pretrained name "
                    f"or path: {specs.pretrained_name_or_path} | Actions per chunk: {specs.actions_per_chunk} | "
                    f"Device: {specs.device}"
                )
                start = time.perf_counter()
                policy, preprocessor, postprocessor = load_policy(specs)
            except RefusedMessage as e:
                self.logger.warning(f"Refused policy instructions from {peer}: {e}")
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
            self.device, self.policy_type = specs.device, specs.policy_type
            self.lerobot_features, self.actions_per_chunk = specs.lerobot_features, specs.actions_per_chunk
            self.policy, self.preprocessor, self.postprocessor = policy, preprocessor, postprocessor
            self.logger.info(f"Time taken to put policy on {self.device}: {time.perf_counter() - start:.4f} seconds")
            return services_pb2.Empty()

        def SendObservations(self, request_iterator, context):
            """LeRobot's own (its `pickle.loads` is the restricted one); a refused message is logged and ends the call
            with INVALID_ARGUMENT instead of a traceback, and the server goes on serving."""
            try:
                return super().SendObservations(request_iterator, context)
            except RefusedMessage as e:
                self.logger.warning(f"Refused an observation from {context.peer()}: {e}")
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))

    return SO101PolicyServer


@dataclass
class SO101PolicyServerConfig(PolicyServerConfig):
    # address to bind: the loopback by default, reached from the arm's computer through an SSH tunnel; another address
    # opens the port to every machine that can reach it
    host: str = LOOPBACK
    # port to listen on (the robot client's --server_address=HOST:PORT)
    port: int = 8080
    # control rate the server times its action chunks at (the robot client's --fps)
    fps: int = DEFAULT_FPS
    # least time (s) one GetActions call takes: a faster inference sleeps the difference
    inference_latency: float = DEFAULT_INFERENCE_LATENCY
    # how long (s) a GetActions call waits for an observation before answering with no actions
    obs_queue_timeout: float = DEFAULT_OBS_QUEUE_TIMEOUT
    # the gRPC server's worker threads (LeRobot's serve uses 4)
    max_workers: int = 4

    def __post_init__(self):
        super().__post_init__()
        if self.max_workers < 1:
            raise ValueError(f"--max_workers must be at least 1, got {self.max_workers}")


def start_server(cfg: SO101PolicyServerConfig) -> tuple[Any, Any]:
    """The gRPC server (started) and the PolicyServer it serves, as LeRobot's `serve` makes them."""
    from lerobot.transport import services_pb2_grpc

    server_class = make_server_class()
    server_class.accepted = tuple(accepted_policy_types())
    policy_server = server_class(cfg)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=cfg.max_workers))
    services_pb2_grpc.add_AsyncInferenceServicer_to_server(policy_server, server)
    server.add_insecure_port(f"{cfg.host}:{cfg.port}")
    if cfg.host not in (LOOPBACK, "localhost", "::1"):
        policy_server.logger.warning(
            f"--host={cfg.host}: every machine that reaches port {cfg.port} can load and run policies here; "
            "prefer the loopback and an SSH tunnel"
        )
    server.start()
    policy_server.logger.info(
        f"PolicyServer started on {cfg.host}:{cfg.port} | policy types: {', '.join(server_class.accepted)}"
    )
    return server, policy_server


@parser.wrap()
def serve(cfg: SO101PolicyServerConfig) -> None:
    server, policy_server = start_server(cfg)
    policy_server.logger.info(str(asdict(cfg)))
    # Ctrl-C, and the SIGTERM a service manager or `kill` sends, both end the calls in flight and log the end
    signal.signal(signal.SIGTERM, lambda *_: server.stop(grace=1))
    try:
        server.wait_for_termination()
    except KeyboardInterrupt:
        server.stop(grace=1).wait()
    policy_server.stop()
    policy_server.logger.info("Server terminated")


def main() -> None:
    prepare_command_line(plugins=True)
    serve()


if __name__ == "__main__":
    main()
