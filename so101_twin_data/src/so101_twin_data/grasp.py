"""When a recorded episode's gripper held the cube, read from the follower's gripper position alone.

A parallel gripper closing on a cube stops short of closed: the cube holds the jaws apart, so the position settles at a
value above the fully closed one and stays there while the arm lifts. Closing on nothing runs on to the closed end;
the cube slipping out lets the jaws close further; opening releases it. So one gripper trace (0-100, the follower's
units) gives, per frame, whether the cube stands where the grasp found it, moves with the gripper, or is lost.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NO_GRASP = "no grasp found"
PUSHED = "cube pushed before the grasp"
DROPPED = "cube dropped"
BEFORE_GRASP = "before the grasp, not asked for"  # --label_before_grasp=false
NOT_FOUND = "where the cube stood not found"  # the standing fit unsure: only the frames from the grasp on
SKIP_REASONS = (NO_GRASP, PUSHED, DROPPED, BEFORE_GRASP, NOT_FOUND)


@dataclass
class GraspConfig:
    """How a grasp shows in the gripper trace; the defaults fit the twin (open ~45, a 3 cm cube holds it at ~13)."""

    # the gripper counts as still while it moves less than this per frame (0-100 units)
    still_per_frame: float = 0.5
    # frames it must stay still, closed on something, for a grasp
    still_frames: int = 5
    # at or below this the gripper is closed on nothing
    closed_below: float = 5.0
    # a grasp is a stop at least this far below the most open position before it (an idle half-open gripper is not)
    closed_by: float = 10.0
    # after the grasp: closing this much further means the cube slipped out, opening this much that it was let go
    hold_tolerance: float = 3.0
    # a frame before the jaws close where the arm cuts this deep (m) into the cube's grasp pose means the cube was
    # not standing there yet: pushed on the way in
    push_depth_m: float = 0.003

    def validate(self) -> None:
        for name in ("still_per_frame", "closed_by", "hold_tolerance", "push_depth_m"):
            if getattr(self, name) <= 0:
                raise ValueError(f"--grasp.{name} must be > 0, got {getattr(self, name)}")
        if self.still_frames < 2:
            raise ValueError(f"--grasp.still_frames must be >= 2, got {self.still_frames}")


@dataclass
class EpisodeGrasp:
    """An episode's frames by what the cube does: standing (before `grasp`), held (`grasp` .. `lost`), lost after."""

    length: int
    grasp: int | None = None  # first frame the jaws hold the cube
    closing: int | None = None  # first frame of the closing motion that ended in the grasp
    lost: int | None = None  # first frame the cube is no longer held (None: held to the end)
    pushed: tuple[int, int] = (0, 0)  # frames in [start, stop) are skipped: the cube was pushed before the grasp
    unsure: bool = False  # where the cube stood is not known: the frames before the grasp are skipped

    def held(self, frame: int) -> bool:
        return self.grasp is not None and frame >= self.grasp and (self.lost is None or frame < self.lost)

    def reason(self, frame: int) -> str | None:
        """Why a frame cannot be labelled, or None when it can."""
        if self.grasp is None:
            return NO_GRASP
        if self.pushed[0] <= frame < self.pushed[1]:
            return PUSHED
        if self.unsure and frame < self.grasp:
            return NOT_FOUND
        if self.lost is not None and frame >= self.lost:
            return DROPPED
        return None


def find_grasp(gripper: np.ndarray, cfg: GraspConfig) -> EpisodeGrasp:
    """The first grasp in a gripper trace (T,) and, after it, the first frame the cube is lost."""
    g = np.asarray(gripper, dtype=np.float64).reshape(-1)
    found = EpisodeGrasp(length=len(g))
    steps = np.abs(np.diff(g))
    k = cfg.still_frames
    for t in range(len(g) - k + 1):
        window = g[t : t + k]
        if steps[t : t + k - 1].max(initial=0.0) >= cfg.still_per_frame or window.min() <= cfg.closed_below:
            continue
        opened = int(np.argmax(g[: t + 1]))
        if g[opened] - g[t] < cfg.closed_by:
            continue
        found.grasp = t
        # the closing motion: back from the stop while the gripper was closing
        closing = t
        while closing > 0 and g[closing - 1] - g[closing] > cfg.still_per_frame / 2:
            closing -= 1
        found.closing = closing
        hold = float(np.median(window))
        away = np.flatnonzero(np.abs(g[t + k :] - hold) > cfg.hold_tolerance)
        found.lost = t + k + int(away[0]) if away.size else None
        return found
    return found
