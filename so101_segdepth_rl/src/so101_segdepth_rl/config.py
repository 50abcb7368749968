"""segdepth-rl-train's configuration: the twin, the evaluation, wandb, the policy and the agent.

The policy defaults differ from SegDepthConfig's where RL wants it (`RL_POLICY_DEFAULTS`); `comparable` is the part
of a config that a resumed run must share with the run it continues.
"""

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import draccus
from lerobot.configs import parser

from lerobot_env_so101_twin import SO101TwinEnvConfig
from lerobot_env_so101_twin.appearance import check_level, check_look_seed
from lerobot_env_so101_twin.arm import ArmParams, ArmRanges, read_arm_path, validate_arm
from lerobot_policy_segdepth import SegDepthConfig
from lerobot_policy_segdepth.configuration_segdepth import LEGACY_VALUES
from so101_run_infra.config_decoding import decode_rewritten, renamed_field
from so101_run_infra.hub import check_push

from .demos import DemoSettings
from .drqv2 import DrQV2Config

PUSH_FIELDS = ("push_to_hub", "repo_id", "private", "tags", "license")  # the policy config's Hub fields


@dataclass
class TwinSettings:
    """The twin the agent learns in: `--env.type=so101_twin` with the policy's camera, depth and segmentation.

    (A plain dataclass rather than SO101TwinEnvConfig itself: draccus rebuilds a registered config from its class
    defaults as soon as one of its fields is given on the command line, which would drop these defaults.)
    """

    task: str = "ReachCube"
    # the rendered size; the policy's preprocessor centre-crops the square and resizes it to policy.image_size (the
    # trainer refuses a square smaller than that); 48x64: RL_POLICY_DEFAULTS' 48 at the cameras' 4:3
    observation_height: int = 48
    observation_width: int = 64
    fps: int = 30
    episode_length: int | None = None  # env steps; None: the task's default (ReachCube 150, LiftCube 300)
    reward_type: str = "dense"
    # end an episode when the task is solved (as lerobot-eval does); off: run to the time limit (see envs.py)
    terminate_on_success: bool = False
    # extra reward per env step spent solved: the dense reward barely separates 2.5 cm (a miss) from 1.5 cm (a
    # ReachCube success); evaluation still reports the task's success and the twin's return
    success_bonus: float = 0.0
    render_cameras: list[str] = field(default_factory=lambda: ["front", "wrist"])  # eval videos
    # the arm the agent learns on, as --env.arm* of lerobot-eval (lerobot_env_so101_twin/arm.py): "none" plays
    # arm_params (ideal unless set), "varied" an arm per episode from arm_ranges, "unseen" one from outside them;
    # arm_seed holds one drawn arm; arm_path plays so101-twin-identify's arm.json (the user's own arm)
    arm: str = "none"
    arm_params: ArmParams = field(default_factory=ArmParams)
    arm_ranges: ArmRanges = field(default_factory=ArmRanges)
    arm_seed: int | None = None
    arm_path: str | None = None
    # the look the agent learns in, as lerobot-eval's --env.appearance and --env.look_seed: "unseen" with a
    # look_seed is one user's own scene (the own-scene flow's fixed look); "none" the plain twin
    appearance: str = "none"
    look_seed: int | None = None

    def __post_init__(self) -> None:
        check_level(self.appearance, "env.appearance")
        check_look_seed(self.look_seed, self.appearance, "env.look_seed")
        # refused at parse time, before any work, and an arm file is read here so a saved config holds the arm
        self.arm_params, self.arm_path = read_arm_path(self.arm_path, self.arm, self.arm_params, "env.")
        validate_arm(self.arm, self.arm_params, self.arm_ranges, self.arm_seed, self.fps, "env.")

    def env_config(self, camera: str) -> SO101TwinEnvConfig:
        return SO101TwinEnvConfig(
            task=self.task,
            fps=self.fps,
            episode_length=self.episode_length,
            cameras=[camera],
            render_cameras=self.render_cameras,
            observation_height=self.observation_height,
            observation_width=self.observation_width,
            depth=True,
            segmentation=True,
            reward_type=self.reward_type,
            arm=self.arm,
            arm_params=self.arm_params,
            arm_ranges=self.arm_ranges,
            arm_seed=self.arm_seed,
            arm_path=self.arm_path,
            appearance=self.appearance,
            look_seed=self.look_seed,
        )


@dataclass
class EvalSettings:
    every_frames: int = 20_000  # env frames between evaluations (and checkpoints); 0: only at the end
    episodes: int = 20
    seed: int = 1000  # episode i of an evaluation uses cube pose seed + i, the same poses every time
    num_envs: int = 2
    videos: int = 1  # episodes per evaluation written as mp4 (front + wrist RGB)
    # with --policy.path: evaluate the starting checkpoint first, the learning curve's point at 0 frames
    at_start: bool = True


@dataclass
class WandbSettings:
    enable: bool = False
    project: str = "so101-segdepth-rl"
    mode: str | None = None  # "offline" on machines without network


# Where the RL trainer's policy differs from SegDepthConfig's (a behaviour-cloning default): DrQ-v2's 2-step action
# repeat, and a smaller image for a 2-core CPU.
RL_POLICY_DEFAULTS = {"image_size": 48, "action_repeat": 2}


def _with_rl_policy_defaults(raw: dict) -> dict:
    """The dict draccus decodes an RLTrainConfig from (the --config_path file and the flags, merged), with
    RL_POLICY_DEFAULTS under the `policy` fields it gives.

    draccus builds `policy` from SegDepthConfig's class defaults as soon as the file or a flag gives one of its
    fields, which would drop the trainer's defaults; with no policy field given, `policy`'s default_factory holds
    them. A checkpoint given as --policy.path (lerobot's parser takes it and the other --policy.* flags off the
    command line) brings its own config, and the section is left as given."""
    section = raw.get("policy")
    if isinstance(section, Mapping) and not parser.get_path_arg("policy"):
        raw["policy"] = {**RL_POLICY_DEFAULTS, **section}
    return raw


@dataclass
class RLTrainConfig:
    env: TwinSettings = field(default_factory=TwinSettings)
    # The policy trained from scratch. Its action_repeat is DrQ-v2's: a delta is held for that many env steps.
    policy: SegDepthConfig = field(default_factory=lambda: SegDepthConfig(**RL_POLICY_DEFAULTS))
    # Start from a segdepth checkpoint (e.g. the demo's cloned policy) instead: its config and processors win.
    # On the command line --policy.path=CKPT, which sets this field; in a config file `policy_path: CKPT`.
    policy_path: Path | None = None
    agent: DrQV2Config = field(default_factory=DrQV2Config)
    # demonstrations mixed into every batch (RLPD-style), e.g. the demo's recording; none by default
    demos: DemoSettings = field(default_factory=DemoSettings)
    eval: EvalSettings = field(default_factory=EvalSettings)
    wandb: WandbSettings = field(default_factory=WandbSettings)
    num_envs: int = 2
    workers: bool = True  # one process per env; false: all in this process (tests, debugging)
    frames: int = 100_000  # env frames to train for, summed over envs
    max_minutes: float | None = None  # or stop (evaluate, save) once this much wall time has passed
    seed_frames: int = 4000  # uniform random actions first, as upstream
    replay_capacity: int = 100_000  # decision steps kept
    seed: int = 1
    output_dir: Path = Path("outputs/rl/reach")
    resume: bool = False
    log_freq: int = 2000  # env frames between two progress lines
    torch_threads: int | None = 1  # the learner's intra-op threads; the env workers take the other cores
    device: str = "cpu"  # the learner's device ("cuda" on a GPU); the env workers and their processors stay on CPU

    @classmethod
    def __get_path_fields__(cls) -> list[str]:
        return ["policy"]

    def __post_init__(self):
        if policy_path := parser.get_path_arg("policy"):
            self.policy_path = Path(policy_path)
        if self.num_envs < 1 or self.frames < 1 or self.replay_capacity < self.num_envs:
            raise ValueError("num_envs and frames must be >= 1, replay_capacity >= num_envs")
        # as lerobot-train: --policy.push_to_hub defaults to true (PreTrainedConfig's default) and then needs
        # --policy.repo_id; refused here, before any env starts. With --policy.path these two flags, not the
        # checkpoint's saved ones, decide (they are this run's, like its output_dir).
        check_push(self.policy.push_to_hub, self.policy.repo_id, "policy")


decode_rewritten(RLTrainConfig, _with_rl_policy_defaults)


def comparable(cfg: RLTrainConfig) -> dict:
    """The parts of a config a resumed run must share with the run it continues."""
    data = json.loads(json.dumps(draccus.encode(cfg), default=str))
    for key in (
        "resume",
        "frames",
        "output_dir",
        "log_freq",
        "wandb",
        "eval",
        "torch_threads",
        "workers",
        "device",
    ):
        data.pop(key, None)
    env = cfg.env
    if env.arm == "none" and env.arm_params.is_ideal and env.arm_path is None:
        # the ideal arm, as every run saved before the arm settings existed trained on it
        for key in ("arm", "arm_params", "arm_ranges", "arm_seed", "arm_path"):
            data["env"].pop(key, None)
    if env.appearance == "none" and env.look_seed is None:  # the plain look, as every run saved before the field
        for key in ("appearance", "look_seed"):
            data["env"].pop(key, None)
    return without_push(data)


def run_settings(cfg: RLTrainConfig) -> dict:
    """What a finished run is known again by: the comparable settings, plus its length and its evaluations (which
    pick `best`); a run finished with these is not trained again."""
    evaluation = json.loads(json.dumps(dataclasses.asdict(cfg.eval)))
    return {**comparable(cfg), "frames": cfg.frames, "eval": evaluation}


def in_todays_names(data: dict) -> dict:
    """A saved train_config.json as a config of today encodes it: a run saved before the rename gives the policy's
    perception_source as "source" (segmenter_depth_anything as "models"), which today's config holds as None."""
    policy = data.get("policy")
    if isinstance(policy, dict) and policy.get("source") is not None:
        return {
            **data,
            "policy": {**renamed_field(policy, "source", "perception_source", LEGACY_VALUES), "source": None},
        }
    return data


def without_push(data: dict) -> dict:
    """`data` without the policy's Hub fields: a resumed run may push where the first did not (or elsewhere)."""
    for key in PUSH_FIELDS:
        data.get("policy", {}).pop(key, None)
    return data
