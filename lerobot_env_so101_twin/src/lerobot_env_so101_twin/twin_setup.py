"""What the twin's robot, env and simulation configs share, written once: the task and its rate, the ground truth
beside the cameras, the look and the arm (`TwinSetup`); and what the robot and the env add for the cameras a user
names, with one spelling of a camera's size (`TwinCameras`: `observation_height`/`observation_width`, LeRobot's env
spelling). `--robot.*` and `--env.*` take the same flags for all of it, refused with the flag's own name.

Plain data: importing it imports neither MuJoCo nor torch.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from so101_core import CAMERA_NAMES, TASKS

from .appearance import AppearanceRanges, check_level, check_look_seed
from .arm import ArmParams, ArmRanges, load_arm, read_arm_path, validate_arm


@dataclass
class TwinSetup:
    task: str = "LiftCube"
    fps: int = 30  # the physics advances 1/fps s per action; match --dataset.fps / --fps
    # Ground truth beside each RGB camera, as <camera>_depth and <camera>_segmentation (6-class ids, depth-coded)
    depth: bool = False
    segmentation: bool = False
    # "none" (the plain twin), "shifted" (colours, textures, light, distractors and camera jitter drawn from each
    # episode's seed over appearance_ranges) or "unseen" (a look drawn from ranges no other level or the segmenter's
    # randomisation uses); the cube poses and physics are the same in all, so one seed gives one set of poses in any
    # look (appearance.py)
    appearance: str = "none"
    appearance_ranges: AppearanceRanges = field(default_factory=AppearanceRanges)
    # one look for every episode, drawn from this seed (a user's own scene while the cube moves); None: each episode
    # the look of its own seed
    look_seed: int | None = None
    # The arm the twin plays (arm.py): "none" plays arm_params (the ideal arm unless set, e.g.
    # arm_params.latency_ms=67), "varied" draws an arm per episode from arm_ranges, "unseen" from the bands outside
    # them that nothing trains on; arm_seed holds one drawn arm for every episode (a user's arm is one arm)
    arm: str = "none"
    arm_params: ArmParams = field(default_factory=ArmParams)
    arm_ranges: ArmRanges = field(default_factory=ArmRanges)
    arm_seed: int | None = None

    def check_setup(self, prefix: str = "") -> None:
        """Refuse a bad task, rate, look or arm, naming the flag (`prefix`: "robot.", "env.", or "" for the
        simulation's own config)."""
        if self.task not in TASKS:
            raise ValueError(f"--{prefix}task={self.task!r} is not a so101_twin task; choose one of {list(TASKS)}")
        if not isinstance(self.fps, int) or self.fps <= 0:
            raise ValueError(f"--{prefix}fps must be a positive integer, got {self.fps!r}")
        check_level(self.appearance, f"{prefix}appearance")
        check_look_seed(self.look_seed, self.appearance, f"{prefix}look_seed")
        self.appearance_ranges.validate()
        validate_arm(self.arm, self.arm_params, self.arm_ranges, self.arm_seed, self.fps, prefix)


@dataclass
class TwinCameras(TwinSetup):
    cameras: list[str] = field(default_factory=lambda: list(CAMERA_NAMES))
    # every camera's image size (pixels)
    observation_height: int = 480
    observation_width: int = 640
    # an arm file (so101-twin-identify's arm.json: the user's own arm, identified from their demonstrations), played
    # as arm_params; needs arm=none and arm_params left alone
    arm_path: str | None = None

    def played_arm(self, prefix: str = "") -> ArmParams:
        """The fixed arm to play: `arm_params`, or the arm file's when it was not there at parse time."""
        return load_arm(self.arm_path, f"{prefix}arm_path") if self.arm_path is not None else self.arm_params

    def check_cameras(self, prefix: str, *, more_cameras: list[str] | None = None) -> None:
        """Read the arm file and refuse bad cameras, sizes or settings (check_setup's), naming the flag."""
        unknown = [c for c in [*self.cameras, *(more_cameras or [])] if c not in CAMERA_NAMES]
        if unknown:
            raise ValueError(f"--{prefix}cameras has unknown camera(s) {unknown}; the twin has {list(CAMERA_NAMES)}")
        if self.observation_height <= 0 or self.observation_width <= 0:
            raise ValueError(
                f"--{prefix}observation_height/observation_width must be positive, got "
                f"{self.observation_height}x{self.observation_width}"
            )
        if (self.depth or self.segmentation) and not self.cameras:
            raise ValueError(f"--{prefix}depth/--{prefix}segmentation need at least one camera in --{prefix}cameras")
        self.arm_params, self.arm_path = read_arm_path(self.arm_path, self.arm, self.arm_params, prefix)
        self.check_setup(prefix)

    def setup(self, prefix: str = "") -> dict:
        """The shared settings as TwinConfig's keywords, the arm file read."""
        return {
            "task": self.task,
            "fps": self.fps,
            "depth": self.depth,
            "segmentation": self.segmentation,
            "appearance": self.appearance,
            "appearance_ranges": self.appearance_ranges,
            "look_seed": self.look_seed,
            "arm": self.arm,
            "arm_params": self.played_arm(prefix),
            "arm_ranges": self.arm_ranges,
            "arm_seed": self.arm_seed,
        }


def renamed_size(config, prefix: str, old: tuple[str, str]) -> None:
    """A deprecated spelling of the cameras' size (`old`: its height and width fields, None unless given) moved to
    observation_height/observation_width, with one line saying the new name."""
    for old_name, new_name in zip(old, ("observation_height", "observation_width"), strict=True):
        value = getattr(config, old_name)
        if value is None:
            continue
        logging.getLogger(__name__).warning(
            "--%s%s is now --%s%s; the old name will go", prefix, old_name, prefix, new_name
        )
        setattr(config, new_name, value)
        setattr(config, old_name, None)
