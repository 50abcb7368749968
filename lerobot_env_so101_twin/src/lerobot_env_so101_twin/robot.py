"""The twin as a LeRobot `Robot`: same observation and action features as `so101_follower`.

`lerobot-record`, `lerobot-rollout` and `lerobot-teleoperate` drive it exactly as they drive the real arm. Each
`send_action` advances the physics by one control period (1/fps s); `get_observation` renders the cameras.

Scene resets: a person resets the real scene between episodes. The twin does it when `lerobot-record` announces
an episode ("Recording episode N", which it logs through `log_say`): the arm goes to rest and the cube to the
pose drawn from `seed + N`, so episode N is reproducible and a re-recorded episode gets the same scene.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from functools import cached_property

import numpy as np
from lerobot.robots.robot import Robot

from so101_core import MOTOR_KEYS, segmentation_to_code

from .config_robot import SO101TwinConfig
from .simulation import ActuationNoise, TwinConfig
from .simulation import TwinSimulation as Twin

logger = logging.getLogger(__name__)

_EPISODE_ANNOUNCEMENT = re.compile(r"^Recording episode (\d+)")
_active: dict[str | None, SO101Twin] = {}
_active_lock = threading.Lock()


def active_twin(robot_id: str | None = None) -> SO101Twin:
    """The connected twin robot with this id (or the only one), for teleoperators that read its state."""
    with _active_lock:
        if robot_id is not None:
            if robot_id not in _active:
                raise RuntimeError(
                    f"no connected so101_twin robot with id {robot_id!r}; connected: {sorted(map(str, _active))}"
                )
            return _active[robot_id]
        if len(_active) != 1:
            raise RuntimeError(
                f"the so101_twin expert needs exactly one connected so101_twin robot in this process, found "
                f"{len(_active)}: use --robot.type=so101_twin (or pass --teleop.robot_id)"
            )
        return next(iter(_active.values()))


class _EpisodeAnnouncementHandler(logging.Handler):
    def __init__(self, robot: SO101Twin):
        super().__init__(level=logging.INFO)
        self.robot = robot

    def emit(self, record: logging.LogRecord) -> None:
        match = _EPISODE_ANNOUNCEMENT.match(str(record.msg))
        if match:
            self.robot.reset_scene(self.robot.config.seed + int(match.group(1)))


class SO101Twin(Robot):
    config_class = SO101TwinConfig
    name = "so101_twin"

    def __init__(self, config: SO101TwinConfig):
        super().__init__(config)
        self.config = config
        self.twin: Twin | None = None
        self.scene_version = 0  # bumped at every scene reset, so teleoperators can restart their script
        self._handler: _EpisodeAnnouncementHandler | None = None
        self.last_clip_report = None
        self.actions_sent = 0  # since connect(): with the fps, what a dry run's log reports at the end
        self.observations_read = 0  # since connect(): a control loop's steps, whether or not it sent an action

    @cached_property
    def cameras(self) -> dict[str, tuple[int, int]]:
        return {name: (self.config.observation_height, self.config.observation_width) for name in self.config.cameras}

    @property
    def _motors_ft(self) -> dict[str, type]:
        return dict.fromkeys(MOTOR_KEYS, float)

    @property
    def observation_features(self) -> dict:
        features: dict = dict(self._motors_ft)
        h, w = self.config.observation_height, self.config.observation_width
        for cam in self.config.cameras:
            features[cam] = (h, w, 3)
        for cam in self.config.cameras:
            if self.config.depth:
                features[f"{cam}_depth"] = (h, w, 1)
            if self.config.segmentation:
                features[f"{cam}_segmentation"] = (h, w, 1)
        return features

    @property
    def action_features(self) -> dict:
        return self._motors_ft

    @property
    def is_connected(self) -> bool:
        return self.twin is not None

    @property
    def is_calibrated(self) -> bool:
        return True  # the twin's joints are calibrated by construction (so101_new_calib zero pose)

    def calibrate(self) -> None:
        pass

    def configure(self) -> None:
        pass

    def connect(self, calibrate: bool = True) -> None:
        if self.is_connected:
            raise RuntimeError(f"{self} is already connected")
        cfg = self.config
        self.twin = Twin(
            TwinConfig(cameras=dict(self.cameras), **cfg.setup("robot.")),
            seed=cfg.seed,
        )
        self._clock: float | None = None  # wall-clock time the physics has reached (wall_clock mode)
        self._wall_start: float | None = None
        self._captures: list[float] = []  # wall times of every get_observation (wall_clock mode)
        # (wall time, the capture it followed, the arm's latency in ms) of every send_action
        self._sends: list[tuple[float, float, float]] = []
        self._noise = ActuationNoise(cfg.action_noise_std, cfg.action_noise_tau_s, cfg.fps, cfg.seed)
        self.actions_sent = 0
        self.observations_read = 0
        with _active_lock:
            if cfg.id in _active:
                self.twin.close()
                self.twin = None
                raise RuntimeError(f"an so101_twin robot with id {cfg.id!r} is already connected in this process")
            _active[cfg.id] = self
        if cfg.reset_on_new_episode:
            self._handler = _EpisodeAnnouncementHandler(self)
            logging.getLogger().addHandler(self._handler)
        logger.info("%s connected (task %s, cameras %s)", self, cfg.task, dict(self.cameras))

    def reset_scene(self, seed: int | None = None) -> None:
        self._require_connected()
        self.twin.reset(seed)
        self._noise.reset(seed)
        self._clock = None
        self.scene_version += 1
        logger.info("%s: new scene, seed %s, cube at %s", self, seed, np.round(self.twin.cube_position, 3).tolist())

    def _require_connected(self) -> None:
        if self.twin is None:
            raise RuntimeError(f"{self} is not connected: call connect() first")

    def _keep_time(self) -> None:
        """wall_clock: advance the physics by the wall time since it last caught up, holding the servos' targets, as
        a real arm moves on while the loop reads, thinks and sleeps."""
        now = time.perf_counter()
        if self._clock is None:
            self._clock = now
            self._wall_start = self._wall_start or now
            return
        timestep = self.twin.model.opt.timestep
        substeps = int((now - self._clock) / timestep)
        if substeps > 0:
            self.twin.advance(substeps)
            self._clock += substeps * timestep
            self.twin.steps = round(self.twin.physics_time * self.config.fps)

    def get_observation(self) -> dict:
        self._require_connected()
        if self.config.wall_clock:
            self._keep_time()
            self._captures.append(time.perf_counter())
        self.observations_read += 1
        obs: dict = self.twin.observation_state()
        if not self.config.cameras:
            return obs
        frames = self.twin.render()
        for cam in self.config.cameras:
            obs[cam] = frames[cam].rgb
        for cam in self.config.cameras:
            if frames[cam].depth is not None:
                obs[f"{cam}_depth"] = frames[cam].depth[..., None]
            if frames[cam].segmentation is not None:
                obs[f"{cam}_segmentation"] = segmentation_to_code(frames[cam].segmentation)
        return obs

    def send_action(self, action: dict) -> dict:
        self._require_connected()
        missing = [k for k in MOTOR_KEYS if k not in action]
        if missing:
            raise KeyError(f"action is missing {missing}; so101_twin expects {list(MOTOR_KEYS)}")
        # execute the float32 value a dataset stores: replaying a recording's actions then reproduces its episodes
        # exactly, where a 1e-7 difference grows to degrees within a second once the jaws touch the cube
        target = np.array([action[k] for k in MOTOR_KEYS], dtype=np.float32).astype(np.float64)
        if self.config.action_noise_std > 0:
            # the injected noise is ours, not the caller's: keep it inside the joint range so it never reads as a
            # clipped command in the log
            limits = self.twin.joint_limits
            noisy = np.clip(target + self._noise.sample(), limits[:, 0], limits[:, 1])
            target = np.where((target >= limits[:, 0]) & (target <= limits[:, 1]), noisy, target)
        if self.config.wall_clock:
            self._keep_time()  # the policy's thinking time passed with the last target still at the servos
            captured = self._captures[-1] if self._captures else float("nan")
            self._sends.append((time.perf_counter(), captured, self.twin.arm.latency_ms))
        report = self.twin.apply_action(target, max_relative_target=self.config.max_relative_target)
        if report.clipped:
            logger.warning(
                "%s: joint targets clipped to the joint limits / max_relative_target: %s",
                self,
                {k: {"requested": round(r, 2), "sent": round(s, 2)} for k, (r, s) in report.clipped.items()},
            )
        self.last_clip_report = report
        self.actions_sent += 1
        if not self.config.wall_clock:
            self.twin.step()
        return dict(zip(MOTOR_KEYS, report.sent.tolist(), strict=True))

    def loop_timing(self) -> dict:
        """The wall-clock loop so far: per step, the time from the frame's capture to its target leaving for the
        servos (plus the arm's latency: at the servos), and the period between captures, in milliseconds."""
        to_servos = [1000.0 * (sent - captured) + latency for sent, captured, latency in self._sends]
        periods = [1000.0 * (b - a) for a, b in zip(self._captures, self._captures[1:], strict=False)]
        return {"fps": self.config.fps, "capture_to_servos_ms": to_servos, "period_ms": periods}

    def _write_timing(self, wall: float) -> None:
        from so101_run_infra.atomic import write_json

        write_json(self.config.timing_path, {**self.loop_timing(), "wall_s": wall, "actions": self.actions_sent})

    def disconnect(self) -> None:
        if self.twin is None:
            return
        if self._handler is not None:
            logging.getLogger().removeHandler(self._handler)
            self._handler = None
        with _active_lock:
            _active.pop(self.config.id, None)
        self.twin.close()
        self.twin = None
        # A dry run's summary: how many actions, the simulated time they took and the cap they ran under, so a run
        # whose rate or max_relative_target differs from the follower command's shows it at the end.
        cfg = self.config
        if cfg.wall_clock:
            wall = time.perf_counter() - self._wall_start if self._wall_start is not None else 0.0
            if cfg.timing_path is not None:
                self._write_timing(wall)
            logger.info(
                "%s disconnected after %d actions in %.1f s of wall clock (%.1f actions/s against --robot.fps=%d, "
                "max_relative_target=%s, arm %s); %d observations",
                self, self.actions_sent, wall, self.actions_sent / wall if wall > 0 else 0.0, cfg.fps,
                cfg.max_relative_target, cfg.arm, self.observations_read,
            )  # fmt: skip
            return
        logger.info(
            "%s disconnected after %d actions (%.1f s simulated at %d fps, max_relative_target=%s); %d observations",
            self, self.actions_sent, self.actions_sent / cfg.fps, cfg.fps, cfg.max_relative_target,
            self.observations_read,
        )  # fmt: skip
