"""`--robot.type=so101_twin`: the twin as a LeRobot robot, a drop-in for `so101_follower`."""

from __future__ import annotations

from dataclasses import dataclass

from lerobot.robots.config import RobotConfig

from .twin_setup import TwinCameras, renamed_size


@RobotConfig.register_subclass("so101_twin")
@dataclass
class SO101TwinConfig(RobotConfig, TwinCameras):
    id: str | None = "twin"
    # deprecated spellings of observation_height/observation_width (the env's, and LeRobot's): still read, with a
    # line saying the new name
    camera_height: int | None = None
    camera_width: int | None = None
    # Same meaning as so101_follower's: caps how far (deg, or 0-100 for the gripper) a target may be from the
    # present position. Targets outside the joint limits are always clipped, and both are logged.
    max_relative_target: float | None = None
    # Standard deviation (follower units) of Ornstein-Uhlenbeck noise added to the executed targets, not to the
    # recorded actions: demonstrations then show the expert correcting drift (DART). 0 turns it off.
    action_noise_std: float = 0.0
    action_noise_tau_s: float = 0.3
    # Keep time: the physics follows the wall clock, advancing between two calls by the time that really passed and
    # holding the last target meanwhile, as a real servo does while the loop reads, thinks and sleeps. A
    # lerobot-rollout dry run then shows what the arm does at the rate this computer reaches. false: each
    # send_action advances exactly 1/fps s, whatever the loop took (simulated time, as lerobot-record's twin needs)
    wall_clock: bool = False
    # With wall_clock: a JSON file written at disconnect with every loop step's wall times (capture, target sent,
    # period), so a dry run measures its own latency from a frame's capture to its target at the servos
    timing_path: str | None = None
    seed: int = 0  # episode k of a session starts from seed + k
    # Start a new scene (arm at rest, new cube pose) whenever lerobot-record starts an episode.
    reset_on_new_episode: bool = True

    def __post_init__(self):
        renamed_size(self, "robot.", ("camera_height", "camera_width"))
        if self.max_relative_target is not None and self.max_relative_target <= 0:
            raise ValueError(f"--robot.max_relative_target must be positive, got {self.max_relative_target}")
        if self.action_noise_std < 0 or self.action_noise_tau_s <= 0:
            raise ValueError("--robot.action_noise_std must be >= 0 and --robot.action_noise_tau_s > 0")
        if self.timing_path is not None and not self.wall_clock:
            raise ValueError("--robot.timing_path measures wall-clock loop times: give --robot.wall_clock=true with it")
        self.check_cameras("robot.")
