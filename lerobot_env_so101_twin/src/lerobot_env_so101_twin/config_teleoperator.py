"""`--teleop.type=so101_twin_expert`: the twin's scripted expert as a LeRobot teleoperator."""

from __future__ import annotations

from dataclasses import dataclass

from lerobot.teleoperators.config import TeleoperatorConfig

from .expert import validate_clearance


@TeleoperatorConfig.register_subclass("so101_twin_expert")
@dataclass
class SO101TwinExpertConfig(TeleoperatorConfig):
    # id of the so101_twin robot to read (None: the only one connected in the process)
    robot_id: str | None = None
    # "reactive": closed loop, re-decides from the measured arm and cube every step and recovers from a missed
    # grasp, so demonstrations recorded with --robot.action_noise_std show recoveries (DART).
    # "scripted": a time-indexed plan made once per episode (open loop).
    # "predictive": the reactive expert stepping from its own last target on an arm with latency (knowing the arm's
    # true latency), so its demonstrations keep the ideal arm's pace; on an arm without latency, the reactive one.
    expert: str = "reactive"
    hover_height: float = 0.06  # metres above the cube before descending
    lift_height: float = 0.10  # metres the cube is raised to
    speed: float = 1.0  # >1 plays the script faster
    # The closed-loop experts' descent: the gripper's fixed finger stands this many mm off the cube's face, whatever
    # the cube's size, and the closing jaw pushes the cube onto it (chosen on tuning seeds, where 6-8 mm lift the
    # most on the `unseen` family; docs/results.md). None: onto the cube's centre, where that finger's face meets the
    # twin's own cube's (the recordings made before it, the demo's among them).
    clearance_mm: float | None = None
    # A person's own unsteadiness on the leader arm: Ornstein-Uhlenbeck noise (follower units) added to the expert's
    # command and recorded with it, unlike --robot.action_noise_std (DART), which the recorded action leaves out.
    # What a recording for so101-twin-identify holds: the action is what the follower was sent.
    noise_std: float = 0.0
    noise_tau_s: float = 0.3

    def __post_init__(self):
        if self.expert not in ("reactive", "scripted", "predictive"):
            raise ValueError(f"--teleop.expert must be 'reactive', 'scripted' or 'predictive', got {self.expert!r}")
        validate_clearance(self.clearance_mm, self.expert, "--teleop.clearance_mm")
        if self.speed <= 0:
            raise ValueError(f"--teleop.speed must be positive, got {self.speed}")
        if self.noise_std < 0 or self.noise_tau_s <= 0:
            raise ValueError("--teleop.noise_std must be >= 0 and --teleop.noise_tau_s > 0")
        if not 0.0 < self.lift_height < 0.3:
            raise ValueError(f"--teleop.lift_height must be in (0, 0.3) m, got {self.lift_height}")
