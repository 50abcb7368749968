"""`so101-seg-autolabel`: a recording's frames labelled by the twin at their joint positions, scored against the
twin's own segmentation of the same frames; the grasp read from the gripper trace; refusals before any work; a
finished run said and left alone, a killed one resumed, another settings' folder refused; and the twin's look seed."""

import json
import sys
from pathlib import Path
from unittest.mock import patch

import numpy as np
import pytest
import torch
from clitools import TASK, run_cli
from PIL import Image
from run_again import mtimes

from lerobot_env_so101_twin.simulation import TwinConfig, TwinSimulation
from so101_run_infra.cli import OutputRefused, SettingsRefused
from so101_segmenter.classes import BACKGROUND, CUBE, MOVING_FINGER, STATIC_FINGER, TABLE
from so101_segmenter.dataset_index import DatasetIndex
from so101_twin_data.autolabel_config import FitConfig
from so101_twin_data.autolabel_fit import PARKED, UPRIGHT, class_agreement, fit_cameras, fit_held, fit_standing
from so101_twin_data.autolabel_scene import LabelScene
from so101_twin_data.autolabel_scores import boundary_band, confusion, iou_report
from so101_twin_data.cube_colour import CubeColour, soft_overlap
from so101_twin_data.grasp import DROPPED, NO_GRASP, NOT_FOUND, PUSHED, GraspConfig, find_grasp

SIZE = (72, 96)


# ----- the grasp, from the gripper trace alone ------------------------------------------------------------------------
def trace(*segments: tuple[float, float, int]) -> np.ndarray:
    """A gripper trace from (start, end, frames) linear segments."""
    return np.concatenate([np.linspace(a, b, n) for a, b, n in segments])


def test_a_stop_short_of_closed_is_the_grasp_and_the_closing_before_it_is_found():
    g = trace((20, 45, 10), (45, 45, 20), (45, 13, 6), (13, 13, 30))
    found = find_grasp(g, GraspConfig())
    assert found.grasp == 35 and found.closing == 30 and found.lost is None  # 30: the last frame still open
    assert found.reason(0) is None and found.held(35) and not found.held(34)


def test_closing_on_nothing_an_idle_half_open_gripper_and_a_drop():
    cfg = GraspConfig()
    assert find_grasp(trace((20, 45, 10), (45, 0.5, 8), (0.5, 0.5, 30)), cfg).grasp is None  # shut: nothing held
    assert find_grasp(trace((20, 20, 60)), cfg).grasp is None  # never closed from anything
    dropped = find_grasp(trace((45, 45, 5), (45, 13, 5), (13, 13, 20), (13, 2, 4), (2, 2, 10)), cfg)
    assert dropped.grasp == 9 and dropped.lost == 30 + 1  # the first frame more than 3 below the hold
    assert dropped.reason(29) is None and dropped.reason(31) == DROPPED
    dropped.pushed = (2, 5)
    assert dropped.reason(1) is None and dropped.reason(4) == PUSHED and dropped.reason(5) is None
    dropped.unsure = True  # where the cube stood not found: the frames before the grasp go, the held ones stay
    assert dropped.reason(8) == NOT_FOUND and dropped.reason(9) is None
    assert find_grasp(trace((20, 20, 5)), cfg).reason(0) == NO_GRASP


def test_the_band_and_the_scores_by_hand():
    mask = np.ones((6, 6), np.uint8)
    mask[:, 3:] = 2
    assert boundary_band(mask, 1)[:, 2:4].all() and not boundary_band(mask, 1)[:, [0, 1, 4, 5]].any()
    assert not boundary_band(mask, 0).any()
    label = mask.copy()
    label[0, 0] = 0  # unlabeled: not scored
    label[5, 5] = 1  # one table pixel called background
    scores = iou_report(confusion(label, mask))
    assert scores["per_class_iou"]["background"] == pytest.approx(17 / 18)  # 17 right of 17 + 1 wrong
    assert scores["per_class_iou"]["table"] == pytest.approx(17 / 18)
    assert scores["per_class_iou"]["cube"] is None


# ----- where the cube stood, by its colour ---------------------------------------------------------------------------
def test_the_cube_colour_by_hand():
    label = np.full((8, 8), TABLE, np.uint8)
    label[2:6, 2:6] = CUBE
    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[..., 2] = 200  # the rest blue
    rgb[2:6, 2:6] = (220, 10, 10)  # the cube red
    colour = CubeColour(bins=4)
    colour.add(rgb, label, margin=1)
    # margin 1: the cube's 2x2 core and the 48 pixels two or more off it; (c + 0.5) / (total + 0.5 * 64)
    assert colour.cube.sum() == 4 and colour.rest.sum() == 64 - 36
    p = colour.probability(np.array([[[220, 10, 10], [0, 0, 200], [0, 250, 0]]], np.uint8))[0]
    cube, rest = 4.5 / (4 + 32), 0.5 / (28 + 32)
    assert p[0] == pytest.approx(cube / (cube + rest), rel=1e-6) and p[0] > 0.9
    assert p[1] < 0.1 and p[2] == pytest.approx(0.5 / 36 / (0.5 / 36 + 0.5 / 60), rel=1e-6)
    inter, union = soft_overlap(np.array([[0.5, 1.0], [0.0, 0.25]], np.float32), np.array([[1, 1], [0, 0]]))
    assert (inter, union) == (1.5, 1.75 + 2 - 1.5)


def test_the_standing_fit_finds_a_cube_moved_before_the_grasp():
    """The cube rendered 14 mm and 9 mm off its grasp pose and turned 20 degrees; the fit, started at the grasp pose
    and shown only a noisy map of the moved cube's pixels, finds it within 1.5 mm."""
    scene = LabelScene({"front": SIZE, "wrist": SIZE})
    try:
        joints = np.array([0.0, -30.0, 40.0, 60.0, 0.0, 30.0])  # reaching down in front of the base
        start = scene.grasp_pose(np.array([0.0, 10.0, 10.0, 70.0, 0.0, 30.0]))
        truth = (start[0] + np.array([0.014, -0.009, 0.0]), quat_yaw(start[1], 20.0))
        rng = np.random.default_rng(0)
        samples = []
        for q in (joints, joints + np.array([15.0, 5.0, 0.0, 0.0, 0.0, 0.0])):
            rendered = scene.render(q, *truth)
            maps = {}
            for cam, (mask, _) in rendered.items():
                maps[cam] = np.clip(np.where(mask == CUBE, 0.85, 0.1) + rng.normal(0, 0.05, mask.shape), 0, 1)
            samples.append((q, maps))
        assert sum((m[0] == CUBE).sum() for m in rendered.values()) > 20  # the cube is in view
        pose, report = fit_standing(scene, start, samples, reach=0.03)
        assert np.linalg.norm(pose[0] - truth[0]) < 0.0015, report
        assert report["soft_iou"] > report["soft_iou_at_grasp"] and report["precision"] > 0.7
    finally:
        scene.close()


def test_the_camera_fit_moves_the_cameras_back_by_the_table_and_background_alone():
    """Both cameras moved off their mounts (millimetres, a degree, the field of view); shown the labels rendered
    there as the segmenter's prediction, the fit without the fingers brings every class back into agreement, the
    fingers included, though it reads only the table and the background: swapping the prediction's two fingers
    changes nothing (with them, it does)."""
    scene = LabelScene({"front": SIZE, "wrist": SIZE})
    try:
        moved = {"front": np.array([0.006, -0.004, 0.0, 1.5, 0.0, -1.0, 2.0]),
                 "wrist": np.array([-0.004, 0.008, 0.0, 0.0, 1.0, 0.0, -1.5])}  # fmt: skip
        poses = [np.array([0.0, -30.0, 40.0, 60.0, 0.0, 30.0]), np.array([20.0, 10.0, 10.0, 70.0, 0.0, 30.0]),
                 np.array([-25.0, -10.0, 30.0, 50.0, 40.0, 10.0])]  # fmt: skip
        scene.set_camera_offsets(moved)
        truth = [(q, {c: m for c, (m, _) in scene.render(q, PARKED, UPRIGHT).items()}) for q in poses]
        swap = np.arange(256, dtype=np.uint8)
        swap[[STATIC_FINGER, MOVING_FINGER]] = MOVING_FINGER, STATIC_FINGER
        swapped = [(q, {c: swap[m] for c, m in p.items()}) for q, p in truth]
        every = (BACKGROUND, TABLE, STATIC_FINGER, MOVING_FINGER)

        def agreement(offsets):
            scene.set_camera_offsets(offsets)
            rendered = [scene.render(q, PARKED, UPRIGHT) for q, _ in truth]
            pairs = zip(rendered, truth, strict=True)
            return min(class_agreement(r[c][0], p[c], every) for r, (_, p) in pairs for c in p)

        offsets, before, after = fit_cameras(scene, truth, FitConfig(camera_fingers=False))
        assert all(after[c] > before[c] for c in after), (before, after)
        at_mount = agreement({c: np.zeros(7) for c in moved})
        assert agreement(offsets) > 0.8 and agreement(offsets) > at_mount + 0.3, (at_mount, offsets)
        assert agreement(fit_cameras(scene, swapped, FitConfig(camera_fingers=False))[0]) == agreement(offsets)
    finally:
        scene.close()


def test_the_held_fit_finds_where_between_the_jaws_the_cube_sits():
    """A lift rendered with the cube 2 mm along the closing direction and 5 mm along the faces off where the jaws'
    mean grasp puts it; the fit, shown noisy maps of those frames, finds the shift within 1 mm."""
    scene = LabelScene({"front": SIZE, "wrist": SIZE})
    try:
        reach = np.array([0.0, 10.0, 10.0, 70.0, 0.0, 30.0])
        joints = np.stack([reach + np.array([0.0, -2.0 * k, 0.0, 0.0, 0.0, 0.0]) for k in range(8)])  # lifting
        grasp = find_grasp(np.full(8, 30.0), GraspConfig())  # a stand-in: held from frame 0
        grasp.grasp, grasp.length = 0, 8
        centres, quats = scene.cube_poses(joints, grasp, (0.002, -0.005))
        rng = np.random.default_rng(1)
        samples = []
        for t in (0, 3, 7):
            rendered = scene.render(joints[t], centres[t], quats[t])
            samples.append((t, {cam: np.clip(np.where(m == CUBE, 0.85, 0.1) + rng.normal(0, 0.05, m.shape), 0, 1)
                                for cam, (m, _) in rendered.items()}))  # fmt: skip
        shift, before, after = fit_held(scene, joints, grasp, samples, (0.0, 0.0), (0.004, 0.008))
        assert np.allclose(shift, (0.002, -0.005), atol=0.001) and after > before, (shift, before, after)
    finally:
        scene.close()


def quat_yaw(quat: np.ndarray, degrees: float) -> np.ndarray:
    half = np.deg2rad(degrees) / 2
    w, z = np.cos(half), np.sin(half)
    a = quat
    return np.array([w * a[0] - z * a[3], w * a[1] - z * a[2], w * a[2] + z * a[1], w * a[3] + z * a[0]])


# ----- the look seed -------------------------------------------------------------------------------------------------
def test_a_look_seed_holds_one_look_while_the_cube_moves():
    cams = {"front": (48, 64)}
    twin = TwinSimulation(TwinConfig(cameras=cams, appearance="unseen", look_seed=7), seed=1)
    first, cube = twin.model.mat_rgba.copy(), twin.cube_position
    twin.reset(2)
    assert np.array_equal(twin.model.mat_rgba, first) and not np.allclose(twin.cube_position, cube)
    free = TwinSimulation(TwinConfig(cameras=cams, appearance="unseen"), seed=1)
    free.reset(2)
    assert not np.array_equal(free.model.mat_rgba, first)
    with pytest.raises(ValueError, match="look_seed=7 fixes a drawn look"):
        TwinConfig(cameras=cams, look_seed=7).validate()


# ----- the command, end to end ----------------------------------------------------------------------------------------
def record(root: Path, task: str = "LiftCube", cameras: str = "[front,wrist]", episodes: int = 3) -> Path:
    run_cli(["so101-twin-record", f"--robot.task={task}", f"--robot.cameras={cameras}",
             f"--robot.observation_height={SIZE[0]}", f"--robot.observation_width={SIZE[1]}",
             "--robot.segmentation=true",
             "--robot.seed=11", "--dataset.repo_id=local/autolabel", f"--dataset.root={root}",
             f"--dataset.num_episodes={episodes}", "--dataset.episode_time_s=5", f"--dataset.single_task={TASK}",
             "--num_workers=1"], cwd=root.parent)  # fmt: skip
    return root


def autolabel(root: Path, out: Path, *flags: str, check: bool = True):
    return run_cli(["so101-seg-autolabel", "--dataset.repo_id=local/autolabel", f"--dataset.root={root}",
                    f"--output_dir={out}", "--fit.camera_frames=4", *flags], cwd=out.parent, check=check)  # fmt: skip


@pytest.fixture(scope="module")
def recording(tmp_path_factory) -> Path:
    return record(tmp_path_factory.mktemp("autolabel") / "rec")


@pytest.mark.slow
def test_labels_match_the_twins_own_segmentation_and_train_the_segmenter(recording, tmp_path):
    out = tmp_path / "labels"
    proc = autolabel(recording, out, "--frame_stride=10", "--fit.cameras=false")
    report = json.loads((out / "autolabel_report.json").read_text())
    assert "labelled" in proc.stdout and report["episodes"] == 3
    assert report["frames_labelled"] + sum(report["frames_skipped"].values()) == report["frames_considered"] == 45
    assert report["frames_labelled"] > 0
    # the plain look: the cameras stand where the twin's do, so the arm and table are exact up to the band, and the
    # cube as near as the grasp places it
    scores = report["label_iou"]["with_band"]["per_class_iou"]
    for name in ("table", "static_finger", "moving_finger"):
        assert scores[name] > 0.95, (name, scores)
    assert scores["cube"] > 0.6, scores
    assert report["label_iou"]["with_band"]["miou"] >= report["label_iou"]["without_band"]["miou"]
    index = DatasetIndex.load(out)
    assert len(index.records) == 2 * report["frames_labelled"] and (out / "autolabel_grid.png").is_file()
    masks = [np.asarray(Image.open(out / r.mask)) for r in index.records]
    assert all(m.shape == SIZE for m in masks) and any((m == 0).any() for m in masks)  # the band is unlabeled
    run_cli(["so101-seg-train", f"--data.path={out}", "--model.init_from=shipped", "--model.depth_head=true",
             "--data.img_height=72", "--data.img_width=96", "--epochs=1", "--batch_size=4", "--threads=1",
             "--data.val_fraction=0.3", f"--output_dir={tmp_path / 'seg'}"], cwd=tmp_path)  # fmt: skip
    assert (tmp_path / "seg" / "best" / "model.safetensors").is_file()


def autolabel_here(capsys, root: Path, out: Path, *flags: str) -> str:
    """so101-seg-autolabel's own entry, in this process (the command's imports paid once); what it printed."""
    from so101_twin_data.autolabel import autolabel_cli

    threads = torch.get_num_threads()
    argv = ["so101-seg-autolabel", "--dataset.repo_id=local/autolabel", f"--dataset.root={root}",
            f"--output_dir={out}", "--fit.camera_frames=4", *flags]  # fmt: skip
    capsys.readouterr()
    try:
        with patch.object(sys, "argv", argv):
            autolabel_cli()
    finally:
        torch.set_num_threads(threads)  # the segmenter sets its own; the tests after it keep theirs
    return capsys.readouterr().out


@pytest.mark.slow
def test_run_again_finished_killed_and_over_other_settings(recording, tmp_path, capsys):
    out = tmp_path / "labels"
    autolabel_here(capsys, recording, out, "--frame_stride=15")
    full = json.loads((out / "index.json").read_text())
    assert "already labelled with these settings" in autolabel_here(capsys, recording, out, "--frame_stride=15")
    # a folder labelled before a setting existed counts as labelled with its default
    settings = json.loads((out / "autolabel_settings.json").read_text())
    del settings["cube_band_px"]
    (out / "autolabel_settings.json").write_text(json.dumps(settings))
    assert "already labelled" in autolabel_here(capsys, recording, out, "--frame_stride=15")
    # labels made before the colour fits existed were made without them
    for key in ("held", "standing"):
        del settings["fit"][key]
    (out / "autolabel_settings.json").write_text(json.dumps(settings))
    with pytest.raises(OutputRefused, match=r"fit\.standing: saved False, now True"):
        autolabel_here(capsys, recording, out, "--frame_stride=15")
    without = autolabel_here(capsys, recording, out, "--frame_stride=15", "--fit.standing=false", "--fit.held=false")
    assert "already labelled" in without
    fits = {**settings["fit"], "held": True, "standing": True}
    (out / "autolabel_settings.json").write_text(json.dumps({**settings, "fit": fits}))
    fit = json.loads((out / "camera_fit.json").read_text())
    assert fit["frames"] == 4 and all(fit["agreement_after"][c] >= fit["agreement_before"][c] for c in fit["offsets"])
    # killed after the first episode: the report never written, the index naming one episode
    first = min(f["episode"] for f in full["frames"])
    partial = {**full, "frames": [f for f in full["frames"] if f["episode"] == first]}
    (out / "index.json").write_text(json.dumps(partial))
    (out / "autolabel_report.json").unlink()
    autolabel_here(capsys, recording, out, "--frame_stride=15")
    assert json.loads((out / "index.json").read_text())["frames"] == full["frames"]
    before = mtimes(out)
    # the installed command: other settings refused in one line, exit code 1, no traceback, nothing touched
    refused = autolabel(recording, out, "--frame_stride=5", check=False)
    assert refused.returncode != 0 and "frame_stride: saved 15, now 5" in refused.stderr
    assert "Traceback" not in refused.stderr and mtimes(out) == before, refused.stderr[-3000:]
    strange = tmp_path / "strange"
    strange.mkdir()
    (strange / "notes.txt").write_text("mine")
    with pytest.raises(OutputRefused, match="did not write"):
        autolabel_here(capsys, recording, strange)


@pytest.mark.slow
def test_refuses_before_any_work(recording, tmp_path, capsys):
    refused = autolabel(recording, tmp_path / "a", "--cameras=[front,top]", check=False)
    assert refused.returncode != 0 and "only its cameras 'front' and 'wrist'" in refused.stderr
    reach = record(tmp_path / "reach", task="ReachCube", cameras="[wrist]", episodes=1)
    with pytest.raises(SettingsRefused, match="shows a grasp"):
        autolabel_here(capsys, reach, tmp_path / "b", "--cameras=[wrist]")
    with pytest.raises(SettingsRefused, match="the recording has no such camera"):
        autolabel_here(capsys, reach, tmp_path / "c", "--cameras=[front]")
    for name in ("a", "b", "c"):
        assert not (tmp_path / name).exists()  # refused before anything was written
