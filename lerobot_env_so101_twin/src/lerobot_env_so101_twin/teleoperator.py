"""The scripted expert as a `Teleoperator`: `lerobot-record --robot.type=so101_twin --teleop.type=so101_twin_expert`.

It is a privileged teleoperator: it reads the cube's pose from the so101_twin robot connected in the same process
(lerobot-record builds both), so it only pairs with that robot. Its actions are the follower's absolute joint
targets, as a leader arm's would be.
"""

from __future__ import annotations

import numpy as np
from lerobot.teleoperators.teleoperator import Teleoperator

from so101_core import MOTOR_KEYS

from .config_teleoperator import SO101TwinExpertConfig
from .expert import EXPERTS, ReactiveExpert, ScriptedExpert
from .robot import active_twin
from .simulation import ActuationNoise


class SO101TwinExpert(Teleoperator):
    config_class = SO101TwinExpertConfig
    name = "so101_twin_expert"

    def __init__(self, config: SO101TwinExpertConfig):
        super().__init__(config)
        self.config = config
        self._connected = False
        self._robot = None
        self._expert: ReactiveExpert | ScriptedExpert | None = None
        self._scene_version = -1

    @property
    def action_features(self) -> dict:
        return dict.fromkeys(MOTOR_KEYS, float)

    @property
    def feedback_features(self) -> dict:
        return {}

    @property
    def is_connected(self) -> bool:
        return self._connected

    @property
    def is_calibrated(self) -> bool:
        return True

    def calibrate(self) -> None:
        pass

    def configure(self) -> None:
        pass

    def connect(self, calibrate: bool = True) -> None:
        # lerobot-record connects the teleoperator before the robot: the twin is looked up at the first action.
        self._connected = True

    def get_action(self) -> dict[str, float]:
        if not self._connected:
            raise RuntimeError(f"{self} is not connected")
        robot = active_twin(self.config.robot_id)
        if robot is not self._robot or robot.scene_version != self._scene_version:
            self._robot = robot
            self._scene_version = robot.scene_version
            self._noise = ActuationNoise(self.config.noise_std, self.config.noise_tau_s, robot.config.fps)
            self._noise.reset(robot.twin.episode_seed)
            closed_loop = {} if self.config.clearance_mm is None else {"clearance_mm": self.config.clearance_mm}
            self._expert = EXPERTS[self.config.expert](
                robot.twin,
                hover_height=self.config.hover_height,
                lift_height=self.config.lift_height,
                speed=self.config.speed,
                **closed_loop,
            )
        # the expert sees the true arm, as a person does: it commands through the follower's calibration
        command = robot.twin.follower_command(self._expert.action())
        if self.config.noise_std > 0:
            limits = robot.twin.joint_limits
            command = np.clip(command + self._noise.sample(), limits[:, 0], limits[:, 1])
        return dict(zip(MOTOR_KEYS, command.tolist(), strict=True))

    def send_feedback(self, feedback: dict) -> None:
        pass

    def disconnect(self) -> None:
        self._connected = False
        self._robot = None
        self._expert = None
