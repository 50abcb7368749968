"""A LeRobot camera that serves recorded frames, for tests that run the stock commands with a camera in-process
(`--robot.cameras={wrist: {type: so101_playback, frames: ...}}`, `--camera.type=so101_playback`): importing this
module registers it, and LeRobot finds PlaybackCamera from PlaybackCameraConfig's name."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from lerobot.cameras import Camera, CameraConfig


@CameraConfig.register_subclass("so101_playback")
@dataclass
class PlaybackCameraConfig(CameraConfig):
    frames: str = ""  # .npy file of (N, H, W, 3) uint8 RGB frames, served in a loop
    fail_after: int = -1  # raise RuntimeError on the read after this many frames; -1: never
    stop_after: int = -1  # then raise KeyboardInterrupt, as an operator's Ctrl-C would; -1: never


class PlaybackCamera(Camera):
    """An OpenCV-style camera that loops over recorded frames (found by LeRobot from PlaybackCameraConfig)."""

    def __init__(self, config: PlaybackCameraConfig):
        super().__init__(config)
        self.config = config
        self.frames = np.load(config.frames)
        self.reads = 0
        self.connected = False

    @property
    def is_connected(self) -> bool:
        return self.connected

    @staticmethod
    def find_cameras() -> list[dict]:
        return []

    def connect(self, warmup: bool = True) -> None:
        self.connected = True

    def read(self) -> np.ndarray:
        if 0 <= self.config.fail_after <= self.reads:
            raise RuntimeError("playback camera unplugged mid-rollout")
        if 0 <= self.config.stop_after <= self.reads:
            raise KeyboardInterrupt  # lerobot-rollout's own way out: tear down, then return
        frame = self.frames[self.reads % len(self.frames)]
        self.reads += 1
        return frame.copy()

    def async_read(self, timeout_ms: float = 200) -> np.ndarray:
        return self.read()

    def read_latest(self, max_age_ms: int = 500) -> np.ndarray:
        return self.read()

    def disconnect(self) -> None:
        self.connected = False
