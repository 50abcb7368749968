"""What the joints cannot tell `so101-seg-autolabel`, fitted by agreement with the current segmenter.

Two things: where each camera really is (a remounted camera sits millimetres and a degree or two off the twin's, and
at 96x128 that moves a finger by several pixels), and where along the jaws the cube sits (the jaws fix it along their
closing direction, not along their faces). Both are fitted by rendering the twin's labels and comparing them with
the segmenter's prediction on the recorded frames: the cameras on the table and the background, which holds the arm's
links, so the arm's outline against the table places them, and on the fingers unless told not to; the cube is left
out. Then the cube's place on its own class. A plain coordinate search: a handful of parameters, each render a few
milliseconds, and no gradient through a rasteriser.
"""

from __future__ import annotations

import mujoco
import numpy as np

from so101_segmenter.classes import BACKGROUND, CUBE, MOVING_FINGER, STATIC_FINGER, TABLE

from .autolabel_config import FitConfig
from .autolabel_scene import LabelScene
from .cube_colour import soft_overlap

CAMERA_CLASSES = (BACKGROUND, TABLE)
FINGERS = (STATIC_FINGER, MOVING_FINGER)
PARKED = np.array([0.0, 0.0, -2.0])  # the cube below the floor, out of every view
UPRIGHT = np.array([1.0, 0.0, 0.0, 0.0])


def class_agreement(label: np.ndarray, predicted: np.ndarray, classes: tuple[int, ...]) -> float:
    """Mean IoU of `label` against `predicted` over those of `classes` either shows, cube pixels of either left out
    (unless the cube is one of the classes)."""
    keep = np.ones(label.shape, dtype=bool) if CUBE in classes else (label != CUBE) & (predicted != CUBE)
    scores = []
    for c in classes:
        a, b = (label == c) & keep, (predicted == c) & keep
        union = np.count_nonzero(a | b)
        if union:
            scores.append(np.count_nonzero(a & b) / union)
    return float(np.mean(scores)) if scores else 0.0


def _camera_scores(
    scene: LabelScene, samples: list[tuple[np.ndarray, dict[str, np.ndarray]]], classes: tuple[int, ...]
) -> dict[str, float]:
    totals = dict.fromkeys(scene.camera_ids, 0.0)
    for joints, predicted in samples:
        rendered = scene.render(joints, PARKED, UPRIGHT)
        for cam in totals:
            totals[cam] += class_agreement(rendered[cam][0], predicted[cam], classes) / len(samples)
    return totals


def fit_cameras(
    scene: LabelScene, samples: list[tuple[np.ndarray, dict[str, np.ndarray]]], cfg: FitConfig
) -> tuple[dict[str, np.ndarray], dict[str, float], dict[str, float]]:
    """Each camera's offset (7,) from its mount (see `LabelScene.set_camera_offsets`) that best agrees with the
    segmenter on `samples` (believed joint positions, camera -> predicted ids); also the agreement before and after.
    The cameras are searched side by side: one render scores a step of every camera."""
    classes = CAMERA_CLASSES + FINGERS if cfg.camera_fingers else CAMERA_CLASSES
    offsets = {cam: np.zeros(7) for cam in scene.camera_ids}
    scene.set_camera_offsets(offsets)
    before = _camera_scores(scene, samples, classes)
    best = dict(before)
    base = np.array([cfg.camera_step[0]] * 3 + [cfg.camera_step[1]] * 3 + [cfg.camera_step[2]])
    limit = np.array([cfg.camera_limit[0]] * 3 + [cfg.camera_limit[1]] * 3 + [cfg.camera_limit[2]])
    for level in range(4):
        step = base / 2**level
        improved = True
        while improved:
            improved = False
            for k in range(7):
                for sign in (1.0, -1.0):
                    trial = {cam: o.copy() for cam, o in offsets.items()}
                    for o in trial.values():
                        o[k] = np.clip(o[k] + sign * step[k], -limit[k], limit[k])
                    scene.set_camera_offsets(trial)
                    scores = _camera_scores(scene, samples, classes)
                    for cam, score in scores.items():
                        if score > best[cam] + 1e-4:
                            offsets[cam], best[cam], improved = trial[cam], score, True
    scene.set_camera_offsets(offsets)
    return offsets, before, dict(best)


def fit_cube(
    scene: LabelScene, grasp_joints: np.ndarray, samples: list[tuple[np.ndarray, dict[str, np.ndarray]]], cfg: FitConfig
) -> tuple[tuple[float, float], float, float]:
    """The cube's shift from its grasp pose (along the closing direction, along the faces; m) whose standing cube best
    matches the segmenter's cube on `samples` (frames before the grasp); the agreement before and after."""

    def score(shift: tuple[float, float]) -> float:
        centre, quat = scene.shifted_grasp_pose(grasp_joints, shift)
        total = 0.0
        for joints, predicted in samples:
            rendered = scene.render(joints, centre, quat)
            total += sum(class_agreement(rendered[c][0], predicted[c], (CUBE,)) for c in predicted)
        return total / max(1, len(samples) * len(scene.camera_ids))

    return _grid_search(score, (0.0, 0.0), cfg.cube_range)


def _grid_search(score, centre: tuple[float, float], reach: tuple[float, float]):
    """The best of a 5 x 11 grid of shifts within `reach` of `centre`, then of a finer 3 x 3 grid (half its
    spacing) around it; the score at `centre` and at the best."""
    before = score(centre)
    best, best_shift = before, centre
    us = centre[0] + np.linspace(-reach[0], reach[0], 5)
    vs = centre[1] + np.linspace(-reach[1], reach[1], 11)
    for _ in range(2):
        for u in us:
            for v in vs:
                s = score((float(u), float(v)))
                if s > best + 1e-4:
                    best, best_shift = s, (float(u), float(v))
        du, dv = (us[1] - us[0]) / 2 if len(us) > 1 else 0.0, (vs[1] - vs[0]) / 2 if len(vs) > 1 else 0.0
        us, vs = best_shift[0] + np.array([-du, 0.0, du]), best_shift[1] + np.array([-dv, 0.0, dv])
    return best_shift, before, best


def fit_held(
    scene: LabelScene,
    joints: np.ndarray,
    grasp,
    samples: list[tuple[int, dict[str, np.ndarray]]],
    start: tuple[float, float],
    reach: tuple[float, float],
) -> tuple[tuple[float, float], float, float]:
    """Where between the jaws the held cube sits: the shift of its grasp pose (along the closing direction, along the
    faces; m, see `LabelScene.shifted_grasp_pose`) within `reach` of `start` whose carried cube best overlaps the
    cube's colour on `samples` (frames of the episode from the grasp on, camera -> P(cube) per pixel), pooled over
    frames and cameras (a soft IoU); the soft IoU at `start` and at the shift. The jaws fix it to a few millimetres
    along the closing direction and not at all along their faces (4.5 mm spread in the twin's own grasps)."""

    def score(shift: tuple[float, float]) -> float:
        centres, quats = scene.cube_poses(joints, grasp, shift)
        inter = union = 0.0
        for t, probability in samples:
            rendered = scene.render(joints[t], centres[t], quats[t])
            for cam, p in probability.items():
                i, u = soft_overlap(p, rendered[cam][0] == CUBE)
                inter, union = inter + i, union + u
        return inter / max(union, 1e-9)

    return _grid_search(score, start, reach)


def _standing_pose(scene: LabelScene, start: tuple[np.ndarray, np.ndarray], move: np.ndarray):
    """`start` (centre, quaternion) moved on the table by (dx, dy m, dyaw degrees)."""
    centre, quat = start
    turn = np.array([np.cos(np.deg2rad(move[2]) / 2), 0.0, 0.0, np.sin(np.deg2rad(move[2]) / 2)])
    out = np.zeros(4)
    mujoco.mju_mulQuat(out, turn, quat)
    return centre + np.array([move[0], move[1], 0.0]), out


def fit_standing(
    scene: LabelScene,
    start: tuple[np.ndarray, np.ndarray],
    samples: list[tuple[np.ndarray, dict[str, np.ndarray]]],
    reach: float,
) -> tuple[tuple[np.ndarray, np.ndarray], dict]:
    """Where the cube stood before the arm reached it: `start` moved on the table by up to `reach` (m) and turned
    about its vertical, to best overlap the cube's colour on `samples` (believed
    joint positions, camera -> P(cube) per pixel) pooled over frames and cameras (a soft IoU). A grid over the
    square, then a pattern search over (x, y, yaw) that halves its steps. Returns the pose and the fit's scores:
    the soft IoU at `start` and at the pose, and `precision`, the share of the rendered cube that looks like it."""

    def overlap(move: np.ndarray) -> tuple[float, float, float]:
        centre, quat = _standing_pose(scene, start, move)
        inter = union = area = 0.0
        for joints, probability in samples:
            rendered = scene.render(joints, centre, quat)
            for cam, p in probability.items():
                cube = rendered[cam][0] == CUBE
                i, u = soft_overlap(p, cube)
                inter, union, area = inter + i, union + u, area + float(cube.sum())
        return inter / max(union, 1e-9), inter / max(area, 1e-9), area

    best_move, (best, _, _) = np.zeros(3), overlap(np.zeros(3))
    before = best
    for dx in np.linspace(-reach, reach, 9):
        for dy in np.linspace(-reach, reach, 9):
            score = overlap(np.array([dx, dy, 0.0]))[0]
            if score > best + 1e-6:
                best, best_move = score, np.array([dx, dy, 0.0])
    step = np.array([reach / 8, reach / 8, 10.0])
    for _ in range(4):
        improved = True
        while improved:
            improved = False
            for k in range(3):
                for sign in (1.0, -1.0):
                    trial = best_move.copy()
                    trial[k] += sign * step[k]
                    if k < 2 and abs(trial[k]) > reach:
                        continue
                    score = overlap(trial)[0]
                    if score > best + 1e-6:
                        best, best_move, improved = score, trial, True
        step = step / 2
    _, precision, area = overlap(best_move)
    report = {
        "soft_iou_at_grasp": before,
        "soft_iou": best,
        "precision": precision,
        "cube_pixels": area,
        "move_mm_deg": [round(1000 * best_move[0], 1), round(1000 * best_move[1], 1), round(best_move[2], 1)],
    }
    return _standing_pose(scene, start, best_move), report
