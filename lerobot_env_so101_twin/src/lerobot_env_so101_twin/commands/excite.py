"""`so101-twin-excite`: the optional excitation motion for so101-twin-identify, run on the follower and recorded.

    so101-twin-excite --robot.type=so101_follower --robot.port=/dev/ttyACM0 --robot.id=my_follower \\
        --robot.max_relative_target=5 --dataset.repo_id=local/my_excitation --dataset.root=data/my_excitation
    so101-twin-identify --dataset.repo_id=local/my_excitation --dataset.root=data/my_excitation --output_dir=...

Demonstrations alone are enough to identify an arm; this motion (lerobot_env_so101_twin.excitation) tells the fit
more in 100 s, for a user willing to let the arm move on its own. Before it moves, the command reads the arm's pose,
plans the motion from it, and refuses a plan that leaves the joint limits (the follower's calibration, less a margin)
or moves faster than --max_step a frame (at most --robot.max_relative_target: a follower that keeps up never clips
it); it
then asks for the workspace to be clear. The gripper stays open.

The recording is a LeRobot dataset with `action` (the targets the follower was sent, as it returned them) and
`observation.state`, one episode per part of the motion, written whole or not at all; run again with the same
settings, it does nothing. `--robot.type=so101_twin` runs it on the twin: a dry run, and how the suite tests it.
"""

import json
import logging
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from lerobot.configs import parser
from lerobot.robots import RobotConfig

from so101_core import JOINT_NAMES, MOTOR_KEYS
from so101_core.joint_limits import TWIN_JOINT_LIMITS, follower_limits, read_joint_limits
from so101_run_infra.atomic import replace_folder, staging_folder, write_json, write_jsonl
from so101_run_infra.cli import SettingsRefused, prepare_command_line
from so101_run_infra.dataset_ref import DatasetRef
from so101_run_infra.runs import as_json, made_here

from ..excitation import ExcitationShape, check_plan, plan

logger = logging.getLogger(__name__)
RECORD = "meta/so101_twin_excite.json"  # the settings the recording was made with
REPORT = "meta/so101_twin_excite_report.json"  # its parts, frames, clipped targets, limits and start pose
ARMS_FILE = "meta/so101_twin_arms.jsonl"  # on the twin: the arm it played, as so101-twin-record writes it
TASK = "Excitation for so101-twin-identify"
# The gripper's open range (0-100): at 30 its jaws are ~4.5 cm apart, wider than the cube; the excitation never closes
GRIPPER_OPEN_MIN = 30.0


@dataclass
class ExciteConfig:
    # the follower: so101_follower (the real arm, use_degrees=true) or so101_twin (a dry run in the twin)
    robot: RobotConfig | None = None
    # where the recording goes: --dataset.repo_id and --dataset.root (a new folder, written whole)
    dataset: DatasetRef = field(default_factory=DatasetRef)
    fps: int = 30  # targets per second, the rate the recording replays at
    # the raised pose the motion happens around, follower units (degrees; the gripper 0-100, open): clear of the
    # table with every joint's steps added
    center: list[float] = field(default_factory=lambda: [0.0, -30.0, 40.0, 60.0, 0.0, 60.0])
    # per joint, how far from the centre the steps go (degrees; the gripper's in its 0-100 units)
    amplitude: list[float] = field(default_factory=lambda: [20.0, 20.0, 20.0, 20.0, 30.0, 25.0])
    # the largest change of a target from one frame to the next (degrees): 1 at 30 fps is 30 degrees/s, slow enough
    # that a follower lagging 75 ms behind its targets stays within a max_relative_target of 5 (faster, the follower
    # clips the targets, and the motion is not the one planned)
    max_step: float = 1.0
    hold_s: float = 0.6  # how long each step is held, so the servo settles
    chirp_s: float = 5.0  # each joint's chirp
    chirp_hz: list[float] = field(default_factory=lambda: [0.3, 2.0])  # the chirp's first and last frequency
    multisine_s: float = 10.0  # every joint at once
    # degrees kept from each joint limit (the follower's calibrated range, or the file below)
    margin: float = 5.0
    # the arm's limits: a follower calibration (.json) or a saved lerobot-find-joint-limits output. None: the
    # calibration lerobot-calibrate wrote for --robot.id (so101_follower), the twin's MJCF ranges (so101_twin)
    joint_limits_file: str | None = None
    # wait for the wall clock between targets; false only for a robot that keeps its own time (the twin, without
    # --robot.wall_clock), where it records as fast as the physics runs
    pace: bool = True
    # the workspace is clear and the arm free to move: skip the question asked before the arm moves
    yes: bool = False

    def __post_init__(self) -> None:
        if self.robot is None:
            raise ValueError("--robot.type is required: so101_follower (your arm) or so101_twin (a dry run)")
        if self.robot.type not in ("so101_follower", "so100_follower", "so101_twin"):
            raise ValueError(f"--robot.type={self.robot.type}: the excitation is planned for an SO-101 follower "
                             "(so101_follower, so100_follower) or its twin (so101_twin)")  # fmt: skip
        if getattr(self.robot, "use_degrees", True) is False:
            raise ValueError("--robot.use_degrees=false: the excitation is planned in degrees; give "
                             "--robot.use_degrees=true (so101-twin-identify reads degrees too)")  # fmt: skip
        self.dataset.require("dataset", root=True)
        for name in ("center", "amplitude"):
            if len(getattr(self, name)) != len(JOINT_NAMES):
                raise ValueError(f"--{name} needs {len(JOINT_NAMES)} values, one per joint {list(JOINT_NAMES)}, "
                                 f"got {getattr(self, name)}")  # fmt: skip
        if any(a <= 0 for a in self.amplitude):
            raise ValueError(f"--amplitude must be positive for every joint, got {self.amplitude}")
        if not 5 <= self.fps <= 250:
            raise ValueError(f"--fps={self.fps}: 5-250 (so101-twin-identify replays whole frames of 5-250 fps)")
        if self.max_step <= 0 or self.hold_s <= 0 or self.chirp_s <= 0 or self.multisine_s <= 0 or self.margin < 0:
            raise ValueError("--max_step, --hold_s, --chirp_s and --multisine_s must be positive, --margin >= 0")
        if len(self.chirp_hz) != 2 or not 0 < self.chirp_hz[0] < self.chirp_hz[1] <= self.fps / 4:
            raise ValueError(f"--chirp_hz needs [first, last] with 0 < first < last <= fps/4, got {self.chirp_hz}")
        limit = self.robot.max_relative_target
        if isinstance(limit, dict):
            limit = min(limit.values())
        if limit is not None and self.max_step > limit:
            raise ValueError(f"--max_step={self.max_step} exceeds --robot.max_relative_target={limit}: the follower "
                             "would clip the motion, and the recording no longer says what the servos were "
                             "sent; lower --max_step")  # fmt: skip
        if self.center[5] - self.amplitude[5] < GRIPPER_OPEN_MIN or self.center[5] + self.amplitude[5] > 100:
            raise ValueError(f"--center[5]={self.center[5]} +- --amplitude[5]={self.amplitude[5]} moves the gripper "
                             f"out of its open range [{GRIPPER_OPEN_MIN:.0f}, 100]: the excitation never closes "
                             "it")  # fmt: skip

    def shape(self) -> ExcitationShape:
        return ExcitationShape(
            center=tuple(self.center), amplitude=tuple(self.amplitude), max_step=self.max_step, hold_s=self.hold_s,
            chirp_s=self.chirp_s, chirp_hz=(self.chirp_hz[0], self.chirp_hz[1]), multisine_s=self.multisine_s,
            fps=self.fps,
        )  # fmt: skip

    def limits(self) -> tuple[np.ndarray, str]:
        """The arm's joint limits and where they come from; a clear error before the arm moves."""
        if self.joint_limits_file is not None:
            return np.array(read_joint_limits(self.joint_limits_file)), self.joint_limits_file
        if self.robot.type == "so101_twin":
            return np.array(TWIN_JOINT_LIMITS), "the twin's MJCF ranges"
        if self.robot.id is None:
            raise ValueError("--robot.id is required: the arm's limits come from its calibration (or give "
                             "--joint_limits_file)")  # fmt: skip
        limits, path = follower_limits(self.robot.id, self.robot.calibration_dir, "--robot.id", "--joint_limits_file")
        return np.array(limits), str(path)


def settings(cfg: ExciteConfig) -> dict:
    robot = {k: v for k, v in asdict(cfg.robot).items() if k not in ("port", "calibration_dir", "cameras")}
    return as_json({"robot_type": cfg.robot.type, "robot": robot, "repo_id": cfg.dataset.repo_id, **{
        k: v for k, v in asdict(cfg).items() if k not in ("robot", "dataset", "pace", "yes")}})  # fmt: skip


def confirm(cfg: ExciteConfig, seconds: float, ranges: str) -> None:
    print(f"[excite] the arm will move on its own for {seconds:.0f} s: {ranges}; gripper open, at most "
          f"{cfg.max_step} degrees a frame at {cfg.fps} fps", flush=True)  # fmt: skip
    if cfg.yes:
        return
    if not sys.stdin.isatty():
        raise SettingsRefused("the arm moves on its own: confirm the workspace is clear with --yes=true")
    answer = input("[excite] Is the workspace clear, the arm free to move, your hand near its power? [y/N] ")
    if answer.strip().lower() not in ("y", "yes"):
        raise SettingsRefused("not confirmed: the arm did not move")


def _features(robot) -> dict:
    from lerobot.utils.constants import ACTION, OBS_STR
    from lerobot.utils.feature_utils import hw_to_dataset_features

    state = {k: robot.observation_features[k] for k in MOTOR_KEYS}
    return {**hw_to_dataset_features(robot.action_features, ACTION), **hw_to_dataset_features(state, OBS_STR)}


def excite(cfg: ExciteConfig) -> dict:
    from lerobot.datasets import LeRobotDataset
    from lerobot.robots.utils import make_robot_from_config
    from lerobot.utils.robot_utils import precise_sleep

    root = Path(cfg.dataset.root)
    record = settings(cfg)
    if made_here(root, RECORD, record, "so101-twin-excite", "an excitation recording"):
        print(f"{root}: already recorded with these settings; nothing to do")
        return json.loads((root / REPORT).read_text())
    limits, source = cfg.limits()
    robot = make_robot_from_config(cfg.robot)
    missing = [k for k in MOTOR_KEYS if k not in robot.action_features]
    if missing:
        raise SettingsRefused(f"--robot.type={cfg.robot.type} has no {missing}: not an SO-101 follower")
    tmp = staging_folder(root, create=False)  # LeRobotDataset.create makes the folder itself
    robot.connect()
    try:
        start = np.array([robot.get_observation()[k] for k in MOTOR_KEYS], dtype=np.float64)
        # back to where it started, inside the limits: a follower reading a little past its range (its
        # calibration) would have the last targets clipped
        parts = plan(cfg.shape(), start, np.clip(start, limits[:, 0], limits[:, 1]))
        try:
            check_plan(parts, start, limits, cfg.margin, cfg.max_step)
        except ValueError as err:
            raise SettingsRefused(f"{err} (limits: {source})") from None
        total = sum(len(p.targets) for p in parts)
        low = np.min([p.targets.min(axis=0) for p in parts[1:-1]], axis=0)
        high = np.max([p.targets.max(axis=0) for p in parts[1:-1]], axis=0)
        ranges = ", ".join(f"{n} [{a:.0f}, {b:.0f}]" for n, a, b in zip(JOINT_NAMES, low, high, strict=True))
        confirm(cfg, total / cfg.fps, ranges)
        dataset = LeRobotDataset.create(cfg.dataset.repo_id, cfg.fps, root=tmp, robot_type=robot.name,
                                        features=_features(robot), use_videos=False)  # fmt: skip
        period, frames, clipped = 1.0 / cfg.fps, 0, 0
        began = time.perf_counter()
        for k, part in enumerate(parts):
            for target in part.targets:
                tick = time.perf_counter()
                obs = robot.get_observation()
                sent = robot.send_action(dict(zip(MOTOR_KEYS, target.tolist(), strict=True)))
                sent = np.array([sent[key] for key in MOTOR_KEYS], dtype=np.float32)
                clipped += int(np.any(np.abs(sent - target) > 1e-3))
                state = np.array([obs[key] for key in MOTOR_KEYS], dtype=np.float32)
                dataset.add_frame({"observation.state": state, "action": sent, "task": TASK})
                frames += 1
                if cfg.pace:
                    precise_sleep(max(0.0, period - (time.perf_counter() - tick)))
            dataset.save_episode()
            print(f"[excite] part {k + 1}/{len(parts)} {part.name}: {len(part.targets)} frames "
                  f"({frames}/{total}, {time.perf_counter() - began:.0f} s)", flush=True)  # fmt: skip
        dataset.finalize()
        arm_record = getattr(getattr(robot, "twin", None), "arm_record", None)
        if arm_record is not None:  # the twin: the arm it played, to compare an identification with
            write_jsonl(tmp / ARMS_FILE, [{"episode_index": k, **arm_record()} for k in range(len(parts))])
        result = {**record, "episodes": [p.name for p in parts], "frames": frames, "clipped_frames": clipped,
                  "limits_source": source, "start_pose": start.tolist()}  # fmt: skip
        write_json(tmp / REPORT, result)
        write_json(tmp / RECORD, record)
    finally:
        if robot.is_connected:
            robot.disconnect()
    replace_folder(tmp, root)
    if clipped:
        # max_relative_target caps a target at that far from where the joint is: a joint that lags, or that its
        # servo cannot hold up against gravity (the force limit, which is worth seeing)
        logger.warning("the follower clipped %d of %d targets (max_relative_target from where the joint was); the "
                       "recording holds what it was sent", clipped, frames)  # fmt: skip
    print(f"[excite] {root}: {frames} frames in {len(parts)} episodes ({math.ceil(frames / cfg.fps)} s). Identify: "
          f"so101-twin-identify --dataset.repo_id={cfg.dataset.repo_id} --dataset.root={root} "
          "--output_dir=<folder>")  # fmt: skip
    return result


@parser.wrap()
def excite_cli(cfg: ExciteConfig) -> dict:
    return excite(cfg)


def main() -> None:
    import lerobot.robots.so_follower  # noqa: F401  registers so101_follower, as lerobot-record imports it

    prepare_command_line(plugins=True)
    excite_cli()


if __name__ == "__main__":
    main()
