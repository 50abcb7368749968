"""`--robot.type=so101_twin`: the twin as a LeRobot robot, a drop-in for `so101_follower`."""

from __future__ import annotations

from dataclasses import dataclass, field

from lerobot.robots.config import RobotConfig

from so101_core import CAMERA_NAMES, TASKS

from .appearance import AppearanceRanges, check_level, check_look_seed
from .arm import ArmParams, ArmRanges, load_arm, read_arm_path, validate_arm


@RobotConfig.register_subclass("so101_twin")
@dataclass
class SO101TwinConfig(RobotConfig):
    id: str | None = "twin"
    task: str = "LiftCube"
    cameras: list[str] = field(default_factory=lambda: list(CAMERA_NAMES))
    camera_height: int = 480
    camera_width: int = 640
    # Ground truth recorded beside the RGB cameras, as <camera>_depth and <camera>_segmentation depth maps.
    depth: bool = False
    segmentation: bool = False
    # Same meaning as so101_follower's: caps how far (deg, or 0-100 for the gripper) a target may be from the
    # present position. Targets outside the joint limits are always clipped, and both are logged.
    max_relative_target: float | None = None
    # Standard deviation (follower units) of Ornstein-Uhlenbeck noise added to the executed targets, not to the
    # recorded actions: demonstrations then show the expert correcting drift (DART). 0 turns it off.
    action_noise_std: float = 0.0
    action_noise_tau_s: float = 0.3
    fps: int = 30  # physics advances 1/fps s per send_action; match --dataset.fps / --fps
    # Keep time: the physics follows the wall clock, advancing between two calls by the time that really passed and
    # holding the last target meanwhile, as a real servo does while the loop reads, thinks and sleeps. A
    # lerobot-rollout dry run then shows what the arm does at the rate this computer reaches. false: each
    # send_action advances exactly 1/fps s, whatever the loop took (simulated time, as lerobot-record's twin needs)
    wall_clock: bool = False
    # With wall_clock: a JSON file written at disconnect with every loop step's wall times (capture, target sent,
    # period), so a dry run measures its own latency from a frame's capture to its target at the servos
    timing_path: str | None = None
    seed: int = 0  # episode k of a session starts from seed + k
    # "none" (the plain twin), "shifted" (colours, textures, light, distractors and camera jitter drawn from each
    # episode's seed over appearance_ranges) or "unseen" (a look drawn from ranges no other level or the segmenter's
    # randomisation uses, for testing); the cube poses and physics are the same in all (appearance.py)
    appearance: str = "none"
    appearance_ranges: AppearanceRanges = field(default_factory=AppearanceRanges)
    # one look for every episode, drawn from this seed (a user's own scene while the cube moves); None: each episode
    # the look of its own seed
    look_seed: int | None = None
    # The arm the twin plays (arm.py): "none" plays arm_params (the ideal arm unless set, e.g.
    # --robot.arm_params.latency_ms=67), "varied" draws an arm per episode from arm_ranges, "unseen" from the bands
    # outside them that nothing trains on; arm_seed holds one drawn arm for every episode (a user's arm is one arm)
    arm: str = "none"
    arm_params: ArmParams = field(default_factory=ArmParams)
    arm_ranges: ArmRanges = field(default_factory=ArmRanges)
    arm_seed: int | None = None
    # an arm file (so101-twin-identify's arm.json: the user's own arm, identified from their demonstrations), played
    # as arm_params; needs arm=none and arm_params left alone
    arm_path: str | None = None
    # Start a new scene (arm at rest, new cube pose) whenever lerobot-record starts an episode.
    reset_on_new_episode: bool = True

    def played_arm(self) -> ArmParams:
        """The fixed arm to play: `arm_params`, or the arm file's when it was not there at parse time."""
        return load_arm(self.arm_path, "robot.arm_path") if self.arm_path is not None else self.arm_params

    def __post_init__(self):
        if self.task not in TASKS:
            raise ValueError(f"--robot.task={self.task!r} is not a so101_twin task; choose one of {list(TASKS)}")
        unknown = [c for c in self.cameras if c not in CAMERA_NAMES]
        if unknown:
            raise ValueError(f"--robot.cameras has unknown camera(s) {unknown}; the twin has {list(CAMERA_NAMES)}")
        if self.camera_height <= 0 or self.camera_width <= 0:
            raise ValueError(
                f"--robot.camera_height/camera_width must be positive, got {self.camera_height}x{self.camera_width}"
            )
        if (self.depth or self.segmentation) and not self.cameras:
            raise ValueError("--robot.depth/--robot.segmentation need at least one camera in --robot.cameras")
        if self.max_relative_target is not None and self.max_relative_target <= 0:
            raise ValueError(f"--robot.max_relative_target must be positive, got {self.max_relative_target}")
        if self.action_noise_std < 0 or self.action_noise_tau_s <= 0:
            raise ValueError("--robot.action_noise_std must be >= 0 and --robot.action_noise_tau_s > 0")
        if self.fps <= 0:
            raise ValueError(f"--robot.fps must be positive, got {self.fps}")
        if self.timing_path is not None and not self.wall_clock:
            raise ValueError("--robot.timing_path measures wall-clock loop times: give --robot.wall_clock=true with it")
        check_level(self.appearance, "robot.appearance")
        check_look_seed(self.look_seed, self.appearance, "robot.look_seed")
        self.appearance_ranges.validate()
        self.arm_params, self.arm_path = read_arm_path(self.arm_path, self.arm, self.arm_params, "robot.")
        validate_arm(self.arm, self.arm_params, self.arm_ranges, self.arm_seed, self.fps, "robot.")
