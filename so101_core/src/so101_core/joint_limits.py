"""Joint limits in the SO-101 follower's units (degrees for the body joints, 0-100 for the gripper), from where a real
arm's limits are written down: LeRobot's calibration file of the follower, or the output of
`lerobot-find-joint-limits`. The twin's MJCF ranges are here too, as the limits of the twin only.

Standard library only (json, re), like the rest of `so101_core`: the policies' processors read these on the arm's
computer, where no simulator is installed.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from .robot import GRIPPER_JOINT, JOINT_NAMES

# The SO-101 twin's MJCF joint ranges (TheRobotStudio's so101_new_calib.xml, converted to follower units and rounded;
# tests/test_real_arm_rollout.py compares them with `SO101Twin().joint_limits`). The limits of the twin, not of any
# real arm: a real follower's calibrated ranges differ from arm to arm.
TWIN_JOINT_LIMITS: tuple[tuple[float, float], ...] = (
    (-110.0, 110.0),
    (-100.0, 100.0),
    (-96.83, 96.83),
    (-95.0, 95.0),
    (-157.21, 162.79),
    (0.0, 100.0),
)
TWIN_SOURCE = "the so101_twin's MJCF ranges"

# The STS3215's encoder resolution (LeRobot's feetech MODEL_RESOLUTION["sts3215"]): ticks per turn.
STS3215_RESOLUTION = 4096


def check_joint_limits(limits: object, source: str) -> list[list[float]]:
    """`limits` as 6 [low, high] float pairs with low < high, one per joint of JOINT_NAMES; a ValueError naming
    `source` and the offending value otherwise."""
    if not isinstance(limits, list | tuple) or len(limits) != len(JOINT_NAMES):
        raise ValueError(f"joint limits from {source} need {len(JOINT_NAMES)} (low, high) pairs, got {limits!r}")
    pairs = []
    for name, pair in zip(JOINT_NAMES, limits, strict=True):
        if not isinstance(pair, list | tuple) or len(pair) != 2 or not float(pair[0]) < float(pair[1]):
            raise ValueError(f"joint limits from {source}: {name} needs (low, high) with low < high, got {pair!r}")
        pairs.append([float(pair[0]), float(pair[1])])
    return pairs


def calibration_dir() -> Path:
    """LeRobot's calibration folder, found as LeRobot 0.6.1 finds it (lerobot.utils.constants): $HF_LEROBOT_CALIBRATION,
    else $HF_LEROBOT_HOME/calibration, else $HF_HOME/lerobot/calibration (HF_HOME: ~/.cache/huggingface)."""
    if os.getenv("HF_LEROBOT_CALIBRATION"):
        return Path(os.environ["HF_LEROBOT_CALIBRATION"]).expanduser()
    hf_home = Path(os.getenv("HF_HOME", "~/.cache/huggingface")).expanduser()
    return Path(os.getenv("HF_LEROBOT_HOME", hf_home / "lerobot")).expanduser() / "calibration"


def calibration_path(robot_id: str, robot_name: str = "so_follower") -> Path:
    """Where `lerobot-calibrate --robot.type=so101_follower --robot.id=<robot_id>` saved the follower's calibration
    (LeRobot's SO follower class is named "so_follower", for the so100 and so101 alike)."""
    return calibration_dir() / "robots" / robot_name / f"{robot_id}.json"


def follower_limits(
    robot_id: str, calibration_dir: str | Path | None = None, flag: str = "--robot.id", instead: str = ""
) -> tuple[list[list[float]], Path]:
    """The limits of the follower `robot_id` from its LeRobot calibration (in `calibration_dir` when given, as
    --robot.calibration_dir, else LeRobot's folder) and that file's path. A missing file is a FileNotFoundError naming
    `flag` and the path, and what else the command takes (`instead`)."""
    path = Path(calibration_dir).expanduser() / f"{robot_id}.json" if calibration_dir else calibration_path(robot_id)
    if not path.is_file():
        raise FileNotFoundError(
            f"no calibration for {flag}={robot_id}: {path} does not exist (lerobot-calibrate "
            f"--robot.type=so101_follower --robot.id=<id> writes it{'; or give ' + instead if instead else ''})"
        )
    return limits_from_calibration(path), path


def limits_from_calibration(path: str | Path, use_degrees: bool = True) -> list[list[float]]:
    """The follower's reachable range per joint, in the units its bus reports, from LeRobot's calibration file.

    LeRobot stores each motor's `range_min`/`range_max` in encoder ticks (the range `lerobot-calibrate` recorded
    while the joints were moved end to end; it also writes them into the servos' position limits). The bus maps
    a tick `t` of a body joint to `(t - mid) * 360 / (resolution - 1)` degrees, `mid` the middle of the range
    (`use_degrees=True`, LeRobot's default for the so101), or to -100..100 across the range otherwise; the gripper
    to 0..100 across its range. So each body joint spans +-half its range around 0, whatever its drive mode.
    """
    path = Path(path)
    try:
        calibration = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"cannot read the follower's calibration {path}: {err}") from err
    missing = [name for name in JOINT_NAMES if name not in calibration]
    if missing:
        raise ValueError(f"calibration {path} has no motor {missing}; it has {sorted(calibration)}")
    limits = []
    for name in JOINT_NAMES:
        motor = calibration[name]
        low, high = motor.get("range_min"), motor.get("range_max")
        if not isinstance(low, int | float) or not isinstance(high, int | float) or not low < high:
            raise ValueError(f"calibration {path}: {name} needs range_min < range_max, got {low!r} and {high!r}")
        if name == GRIPPER_JOINT:
            limits.append([0.0, 100.0])
        elif use_degrees:
            half = (high - low) / 2 * 360 / (STS3215_RESOLUTION - 1)
            limits.append([round(-half, 2), round(half, 2)])
        else:
            limits.append([-100.0, 100.0])
    return check_joint_limits(limits, f"calibration {path}")


_FIND_JOINT_LIMITS_LINE = re.compile(r"^\s*(max_pos|min_pos)\s*=\s*\[([^\]]*)\]", re.MULTILINE)


def limits_from_find_joint_limits(path: str | Path) -> list[list[float]]:
    """The range the joints were moved through, from the saved output of `lerobot-find-joint-limits` (its lines
    `max_pos = [...]` and `min_pos = [...]`, one value per motor in the follower's order and units; LeRobot's
    heading calls them radians, but they are the bus's values: degrees and gripper 0-100)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise ValueError(f"cannot read the lerobot-find-joint-limits output {path}: {err}") from err
    found = {
        key: [float(v) for v in values.split(",") if v.strip()] for key, values in _FIND_JOINT_LIMITS_LINE.findall(text)
    }
    if set(found) != {"max_pos", "min_pos"}:
        raise ValueError(
            f"{path} is not lerobot-find-joint-limits output: it needs the lines 'max_pos = [...]' and "
            f"'min_pos = [...]', found {sorted(found) or 'neither'}"
        )
    if len(found["min_pos"]) != len(JOINT_NAMES) or len(found["max_pos"]) != len(JOINT_NAMES):
        raise ValueError(
            f"{path}: min_pos has {len(found['min_pos'])} values and max_pos {len(found['max_pos'])}; the SO-101 "
            f"follower has {len(JOINT_NAMES)} motors {list(JOINT_NAMES)}"
        )
    return check_joint_limits(list(zip(found["min_pos"], found["max_pos"], strict=True)), f"{path}")


def read_joint_limits(path: str | Path) -> list[list[float]]:
    """Limits from a follower calibration (a .json file) or a saved `lerobot-find-joint-limits` output (any other)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"joint limits file {path} does not exist: give the follower's calibration (lerobot-calibrate writes "
            f"{calibration_path('<robot id>')}) or a saved lerobot-find-joint-limits output"
        )
    return limits_from_calibration(path) if path.suffix == ".json" else limits_from_find_joint_limits(path)
