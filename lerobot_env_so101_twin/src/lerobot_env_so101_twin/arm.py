"""The arm the twin plays: its servos, its loop, the cube it lifts and the camera it sees through.

A real SO-101 is not the twin's ideal arm. Its STS3215 servos differ in gain, damping and force limit from arm to arm
and with the supply voltage, its gears have play (backlash), its calibration's zero is not the twin's, a target
reaches the servos some time after the frame it was computed from, the loop runs slower than the physics, and its
camera blurs, changes exposure, adds noise and compresses. `ArmParams` is one such arm; its defaults are the ideal arm
the twin always played, and with them the twin is unchanged bit for bit.

Levels, as the looks are a family (`appearance.py`):
- `none`: one fixed arm, `ArmParams` as given (the ideal arm unless set);
- `varied`: an arm drawn per episode from `ArmRanges`, from the episode's seed;
- `unseen`: an arm drawn from bands outside `varied`'s, factor by factor, that no recording, training or tuning
  draws from: what a user's own arm is to a policy trained in the twin.
`arm_seed` holds one drawn arm for every episode, as a user's arm is one arm.

How each factor acts (`TwinSimulation` applies them):
- gain, damping, force: the MJCF's position servo (kp, its velocity term kv and the joint's damping) and its force
  limit, scaled per joint; `gripper_force` scales the gripper's, which is its closing force on the cube;
- backlash: a play of that width on each body joint's target (the output shaft settles anywhere within the gap on
  the side it came from), a model rather than a second joint, so the `none` arm keeps the MJCF's kinematic tree;
- calibration: the follower reads, and is commanded in, its own zero: reading = true + offset, true target = command
  - offset;
- latency (with jitter): a target takes effect that long after the frame it answers, in simulated time, in order;
- control_fps: the policy acts at this rate and each target is held for fps / control_fps physics periods;
- cube: mass, friction and size, scaled;
- camera: motion blur from the camera's own motion over the exposure, a gain on the image, sensor noise and JPEG
  compression. Ground truth (depth, segmentation) stays exact.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

ARM_LEVELS = ("none", "varied", "unseen")
ARM_STREAM = 0xA2A  # mixed into the seed: arm draws never move the cube-pose, look or noise streams
CAMERA_STREAM = 0xCA3  # the camera's per-frame noise, from the episode's seed
BODY_JOINTS = 5
JOINTS = 6


def _per_joint(values: list[float] | tuple[float, ...], count: int, flag: str) -> np.ndarray:
    """One value for every joint, or one per joint."""
    array = np.asarray(values, dtype=np.float64).reshape(-1)
    if array.size == 1:
        return np.repeat(array, count)
    if array.size != count:
        raise ValueError(f"--{flag} takes one value or {count} (one per joint), got {array.size}: {list(values)}")
    return array


# what the twin's physics can play, per parameter (times nominal, degrees, milliseconds)
LIMITS: dict[str, tuple[float, float]] = {
    "gain": (0.05, 3.0),
    "damping": (0.0, 5.0),
    "force": (0.1, 3.0),
    "gripper_force": (0.1, 3.0),
    "backlash_deg": (0.0, 5.0),
    "calibration_deg": (-10.0, 10.0),
    "latency_ms": (0.0, 1000.0),
    "latency_jitter_ms": (0.0, 200.0),
    "cube_mass": (0.1, 5.0),
    "cube_friction": (0.1, 3.0),
    "cube_size": (0.7, 1.3),
    "camera_exposure_ms": (0.0, 100.0),
    "camera_gain": (0.1, 4.0),
    "camera_noise": (0.0, 50.0),
}


@dataclass
class ArmParams:
    """One arm. Every multiplier is relative to the twin's MJCF (TheRobotStudio's STS3215 model); defaults: the ideal
    arm. Lists take one value for every joint or one per joint."""

    # servo position gain (kp), times; 6 joints
    gain: list[float] = field(default_factory=lambda: [1.0])
    # the servo's velocity term and the joint's damping, times; 6 joints
    damping: list[float] = field(default_factory=lambda: [1.0])
    # force limit of the 5 body joints, times
    force: list[float] = field(default_factory=lambda: [1.0])
    # the gripper's force limit (its closing force on the cube), times
    gripper_force: float = 1.0
    # play in each of the 5 body joints, degrees
    backlash_deg: list[float] = field(default_factory=lambda: [0.0])
    # the follower's zero minus the twin's, 6 joints, in follower units (degrees; 0-100 for the gripper)
    calibration_deg: list[float] = field(default_factory=lambda: [0.0])
    # from the frame a target answers to the target at the servos, milliseconds (simulated time)
    latency_ms: float = 0.0
    # standard deviation of the latency, milliseconds; targets still arrive in order
    latency_jitter_ms: float = 0.0
    # the loop's rate (actions per second); None: the physics rate (fps). Must divide fps
    control_fps: int | None = None
    cube_mass: float = 1.0  # times
    cube_friction: float = 1.0  # times (sliding friction)
    cube_size: float = 1.0  # times (edge length)
    # camera motion blur: exposure time over which the camera's own motion smears the image, milliseconds
    camera_exposure_ms: float = 0.0
    camera_gain: float = 1.0  # image brightness, times (exposure and analogue gain together)
    camera_noise: float = 0.0  # sensor noise, standard deviation in 0-255 units, scaled by the square root of the gain
    camera_jpeg_quality: int | None = None  # JPEG quality 1-100 of each frame, as an MJPEG webcam sends; None: none

    def validate(self, fps: int = 30, prefix: str = "arm_params") -> None:
        """Refuse what the twin's physics cannot hold, naming the flag and what is allowed."""
        checks = {
            "gain": _per_joint(self.gain, JOINTS, f"{prefix}.gain"),
            "damping": _per_joint(self.damping, JOINTS, f"{prefix}.damping"),
            "force": _per_joint(self.force, BODY_JOINTS, f"{prefix}.force"),
            "gripper_force": np.array([self.gripper_force]),
            "backlash_deg": _per_joint(self.backlash_deg, BODY_JOINTS, f"{prefix}.backlash_deg"),
            "calibration_deg": _per_joint(self.calibration_deg, JOINTS, f"{prefix}.calibration_deg"),
            "latency_ms": np.array([self.latency_ms]),
            "latency_jitter_ms": np.array([self.latency_jitter_ms]),
            "cube_mass": np.array([self.cube_mass]),
            "cube_friction": np.array([self.cube_friction]),
            "cube_size": np.array([self.cube_size]),
            "camera_exposure_ms": np.array([self.camera_exposure_ms]),
            "camera_gain": np.array([self.camera_gain]),
            "camera_noise": np.array([self.camera_noise]),
        }
        for name, values in checks.items():
            lo, hi = LIMITS[name]
            if not np.all(np.isfinite(values)) or values.min() < lo or values.max() > hi:
                raise ValueError(
                    f"--{prefix}.{name}={_show(getattr(self, name))} is outside what the twin can play: "
                    f"allowed {lo} to {hi}"
                )
        check_control_fps(self.control_fps, fps, f"{prefix}.control_fps")
        if self.camera_jpeg_quality is not None and not 1 <= self.camera_jpeg_quality <= 100:
            raise ValueError(f"--{prefix}.camera_jpeg_quality={self.camera_jpeg_quality} must be 1-100 (or None)")

    @property
    def is_ideal(self) -> bool:
        return self == ArmParams() or self.as_dict() == ArmParams().as_dict()

    def as_dict(self) -> dict:
        """Plain JSON values, every per-joint list at its full length: what a recording or a report stores."""
        out = dataclasses.asdict(self)
        for name, count in (("gain", JOINTS), ("damping", JOINTS), ("force", BODY_JOINTS)):
            out[name] = _per_joint(out[name], count, name).tolist()
        out["backlash_deg"] = _per_joint(out["backlash_deg"], BODY_JOINTS, "backlash_deg").tolist()
        out["calibration_deg"] = _per_joint(out["calibration_deg"], JOINTS, "calibration_deg").tolist()
        return out

    @classmethod
    def from_dict(cls, values: dict) -> ArmParams:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown arm parameters {unknown}; an arm has {sorted(known)}")
        return cls(**values)

    # the per-joint arrays the twin applies
    def gains(self) -> np.ndarray:
        return _per_joint(self.gain, JOINTS, "gain")

    def dampings(self) -> np.ndarray:
        return _per_joint(self.damping, JOINTS, "damping")

    def forces(self) -> np.ndarray:
        """(6,) force-limit multipliers: the body joints', then the gripper's."""
        return np.append(_per_joint(self.force, BODY_JOINTS, "force"), self.gripper_force)

    def backlash_rad(self) -> np.ndarray:
        """(6,) play in radians; the gripper has none."""
        return np.append(np.deg2rad(_per_joint(self.backlash_deg, BODY_JOINTS, "backlash_deg")), 0.0)

    def calibration(self) -> np.ndarray:
        return _per_joint(self.calibration_deg, JOINTS, "calibration_deg")

    @property
    def has_camera_effects(self) -> bool:
        return (
            self.camera_exposure_ms > 0
            or self.camera_gain != 1.0
            or self.camera_noise > 0
            or self.camera_jpeg_quality is not None
        )


def _show(value) -> str:
    return str(list(value)) if isinstance(value, (list, tuple)) else str(value)


def check_control_fps(control_fps: int | None, fps: int, flag: str = "arm_params.control_fps") -> None:
    if control_fps is None:
        return
    if not isinstance(control_fps, int) or control_fps <= 0 or control_fps > fps or fps % control_fps:
        allowed = [r for r in range(fps, 0, -1) if fps % r == 0]
        raise ValueError(
            f"--{flag}={control_fps}: the loop's rate must divide the physics rate fps={fps} (a target is held a "
            f"whole number of periods) and not exceed it; allowed {allowed}"
        )


def check_arm_level(level: str, flag: str = "arm") -> None:
    if level not in ARM_LEVELS:
        raise ValueError(f"--{flag}={level!r} is not an arm level; choose one of {list(ARM_LEVELS)}")


def check_arm_settings(level: str, params: ArmParams, arm_seed: int | None, prefix: str = "") -> None:
    """A drawn family and a fixed arm exclude each other; an arm seed needs a family to draw from."""
    check_arm_level(level, f"{prefix}arm")
    if arm_seed is not None and level == "none":
        raise ValueError(
            f"--{prefix}arm_seed={arm_seed} fixes a drawn arm, and arm 'none' draws none: give --{prefix}arm=varied "
            "or unseen with it"
        )
    if level != "none" and not params.is_ideal:
        raise ValueError(
            f"--{prefix}arm={level} draws the arm per episode; --{prefix}arm_params sets one fixed arm and needs "
            f"--{prefix}arm=none"
        )


def load_arm(path: str, flag: str = "arm_path") -> ArmParams:
    """An arm file (so101-twin-identify's `arm.json`: ArmParams' fields as JSON), refused naming the flag and file."""
    import json
    from pathlib import Path

    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"--{flag}={path}: no such file (so101-twin-identify writes <output_dir>/arm.json)")
    try:
        arm = ArmParams.from_dict(json.loads(file.read_text()))
    except (ValueError, TypeError) as err:
        raise ValueError(f"--{flag}={path} is not an arm file: {err}") from None
    return arm


def read_arm_path(arm_path: str | None, level: str, params: ArmParams, prefix: str) -> tuple[ArmParams, str | None]:
    """A config's (arm_params, arm_path) once its `--<prefix>arm_path` is read: the file's arm when it is there, the
    path kept for first use when an earlier command has yet to write it."""
    from pathlib import Path

    if arm_path is None:
        return params, None
    if level != "none" or not params.is_ideal:
        raise ValueError(
            f"--{prefix}arm_path plays one identified arm: it needs --{prefix}arm=none and no --{prefix}arm_params"
        )
    if Path(arm_path).is_file():  # loaded: a saved config holds the arm itself
        return load_arm(arm_path, f"{prefix}arm_path"), None
    return params, arm_path


def validate_arm(
    level: str, params: ArmParams, ranges: ArmRanges, arm_seed: int | None, fps: int, prefix: str = ""
) -> None:
    """The arm settings of a twin, env or robot config, refused with the flag's name (`prefix`: "env.", ...)."""
    check_arm_settings(level, params, arm_seed, prefix)
    params.validate(fps, f"{prefix}arm_params")
    if level != "none":
        ranges.validate(fps, f"{prefix}arm_ranges")


# ----- the family ----------------------------------------------------------------------------------------------


@dataclass
class ArmRanges:
    """What `varied` draws (uniformly, per joint where the factor is per joint), and the wider interval `unseen`
    draws from outside it: for each factor `unseen` takes the part of `unseen_<factor>` not in `<factor>`."""

    # servo position gain, times (per joint)
    gain: tuple[float, float] = (0.7, 1.3)
    unseen_gain: tuple[float, float] = (0.5, 1.6)  # unseen: the part outside
    # the servo's velocity term and the joint's damping, times (per joint)
    damping: tuple[float, float] = (0.7, 1.4)
    unseen_damping: tuple[float, float] = (0.5, 2.0)  # unseen: the part outside
    # the body joints' force limit, times (per joint)
    force: tuple[float, float] = (0.8, 1.2)
    unseen_force: tuple[float, float] = (0.6, 1.4)  # unseen: the part outside
    # the gripper's closing force, times
    gripper_force: tuple[float, float] = (0.7, 1.3)
    unseen_gripper_force: tuple[float, float] = (0.5, 1.5)  # unseen: the part outside
    # measured on real STS3215s: 0.87-1.3 degrees (shared/reference, SO-ARM100 #134)
    backlash_deg: tuple[float, float] = (0.0, 0.8)
    unseen_backlash_deg: tuple[float, float] = (0.0, 1.3)  # unseen: the part outside
    # the follower's zero minus the twin's, per joint
    calibration_deg: tuple[float, float] = (-1.5, 1.5)
    unseen_calibration_deg: tuple[float, float] = (-3.0, 3.0)  # unseen: the part outside
    # from the frame to the servos, and its jitter
    latency_ms: tuple[float, float] = (0.0, 50.0)
    unseen_latency_ms: tuple[float, float] = (0.0, 80.0)  # unseen: the part outside
    latency_jitter_ms: tuple[float, float] = (0.0, 8.0)  # varied
    unseen_latency_jitter_ms: tuple[float, float] = (0.0, 15.0)  # unseen: the part outside
    # the loop's rate, drawn from these (each must divide fps)
    control_fps: tuple[int, ...] = (30, 15)  # varied
    unseen_control_fps: tuple[int, ...] = (10,)  # unseen: the part outside
    # the cube's mass, sliding friction and size, times
    cube_mass: tuple[float, float] = (0.7, 1.5)
    unseen_cube_mass: tuple[float, float] = (0.5, 2.0)  # unseen: the part outside
    cube_friction: tuple[float, float] = (0.7, 1.3)  # varied
    unseen_cube_friction: tuple[float, float] = (0.5, 1.5)  # unseen: the part outside
    cube_size: tuple[float, float] = (0.93, 1.07)  # varied
    unseen_cube_size: tuple[float, float] = (0.88, 1.12)  # unseen: the part outside
    # the camera: exposure (motion blur), gain, noise (0-255), JPEG quality
    camera_exposure_ms: tuple[float, float] = (0.0, 8.0)
    unseen_camera_exposure_ms: tuple[float, float] = (0.0, 16.0)  # unseen: the part outside
    camera_gain: tuple[float, float] = (0.8, 1.25)  # varied
    unseen_camera_gain: tuple[float, float] = (0.65, 1.5)  # unseen: the part outside
    camera_noise: tuple[float, float] = (0.0, 3.0)  # varied
    unseen_camera_noise: tuple[float, float] = (0.0, 6.0)  # unseen: the part outside
    camera_jpeg_quality: tuple[float, float] = (70.0, 95.0)  # varied
    unseen_camera_jpeg_quality: tuple[float, float] = (40.0, 95.0)  # unseen: the part outside

    CONTINUOUS: ClassVar[tuple[str, ...]] = (
        "gain", "damping", "force", "gripper_force", "backlash_deg", "calibration_deg", "latency_ms",
        "latency_jitter_ms", "cube_mass", "cube_friction", "cube_size", "camera_exposure_ms", "camera_gain",
        "camera_noise", "camera_jpeg_quality",
    )  # fmt: skip

    def validate(self, fps: int = 30, prefix: str = "arm_ranges") -> None:
        for name in self.CONTINUOUS:
            lo, hi = getattr(self, name)
            ulo, uhi = getattr(self, f"unseen_{name}")
            if not lo <= hi:
                raise ValueError(f"--{prefix}.{name}={(lo, hi)} must satisfy low <= high")
            # `unseen` must hold `varied` inside it and reach past it, or it is not unseen
            if not (ulo <= lo and hi <= uhi) or (ulo == lo and uhi == hi):
                raise ValueError(
                    f"--{prefix}.unseen_{name}={(ulo, uhi)} must contain {name}={(lo, hi)} and reach past it: unseen "
                    f"draws from the part outside"
                )
            # both ends of every range must be an arm the twin can play
            for end in (ulo, uhi):
                probe = _with(name, end)
                try:
                    probe.validate(fps, prefix)
                except ValueError as err:
                    raise ValueError(f"--{prefix}.unseen_{name}={(ulo, uhi)}: {err}") from None
        for name in ("control_fps", "unseen_control_fps"):
            rates = tuple(getattr(self, name))
            if not rates:
                raise ValueError(f"--{prefix}.{name} needs at least one rate")
            for rate in rates:
                check_control_fps(int(rate), fps, f"{prefix}.{name}")
        shared = set(self.control_fps) & set(self.unseen_control_fps)
        if shared:
            raise ValueError(
                f"--{prefix}.unseen_control_fps shares {sorted(shared)} with control_fps: unseen rates are drawn by "
                "no other level"
            )


def _with(name: str, value: float) -> ArmParams:
    if name == "camera_jpeg_quality":
        return ArmParams(camera_jpeg_quality=round(float(value)))
    if name in ("gain", "damping", "force", "backlash_deg", "calibration_deg"):
        return ArmParams(**{name: [float(value)]})
    return ArmParams(**{name: float(value)})


def arm_rng(seed: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), ARM_STREAM])


def _outside(rng: np.random.Generator, inner: tuple[float, float], outer: tuple[float, float], size: int) -> np.ndarray:
    """Uniform over `outer` minus `inner`."""
    below, above = inner[0] - outer[0], outer[1] - inner[1]
    u = rng.uniform(0.0, below + above, size)
    return np.where(u < below, outer[0] + u, inner[1] + (u - below))


def draw_arm(level: str, rng: np.random.Generator, ranges: ArmRanges | None = None) -> ArmParams:
    """One arm of a family (`varied` or `unseen`)."""
    if level not in ARM_LEVELS[1:]:
        raise ValueError(f"draw_arm draws {list(ARM_LEVELS[1:])}, not {level!r}")
    r = ranges or ArmRanges()

    def draw(name: str, size: int = 1) -> np.ndarray:
        inner = tuple(getattr(r, name))
        if level == "varied":
            return rng.uniform(*inner, size)
        return _outside(rng, inner, tuple(getattr(r, f"unseen_{name}")), size)

    rates = r.control_fps if level == "varied" else r.unseen_control_fps
    return ArmParams(
        gain=draw("gain", JOINTS).tolist(),
        damping=draw("damping", JOINTS).tolist(),
        force=draw("force", BODY_JOINTS).tolist(),
        gripper_force=float(draw("gripper_force")[0]),
        backlash_deg=draw("backlash_deg", BODY_JOINTS).tolist(),
        calibration_deg=draw("calibration_deg", JOINTS).tolist(),
        latency_ms=float(draw("latency_ms")[0]),
        latency_jitter_ms=float(draw("latency_jitter_ms")[0]),
        control_fps=int(rates[rng.integers(len(rates))]),
        cube_mass=float(draw("cube_mass")[0]),
        cube_friction=float(draw("cube_friction")[0]),
        cube_size=float(draw("cube_size")[0]),
        camera_exposure_ms=float(draw("camera_exposure_ms")[0]),
        camera_gain=float(draw("camera_gain")[0]),
        camera_noise=float(draw("camera_noise")[0]),
        camera_jpeg_quality=round(float(draw("camera_jpeg_quality")[0])),
    )
