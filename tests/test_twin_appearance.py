"""The twin's appearance levels: `none` is the plain twin, `shifted` a per-episode visual shift and `unseen` one from
ranges no other level draws, both leaving the physics, the cube poses and the ground-truth segmentation exact."""

from __future__ import annotations

import numpy as np
import pytest

from lerobot_env_so101_twin.appearance import AppearanceRanges
from lerobot_env_so101_twin.expert import ScriptedExpert
from lerobot_env_so101_twin.simulation import TwinConfig, TwinSimulation
from so101_core import BACKGROUND, CUBE

SIZE = {"front": (48, 64), "wrist": (48, 64)}


def make_twin(appearance: str = "none", **ranges) -> TwinSimulation:
    config = TwinConfig(
        cameras=dict(SIZE), segmentation=True, appearance=appearance, appearance_ranges=AppearanceRanges(**ranges)
    )
    return TwinSimulation(config)


def rollout(twin: TwinSimulation, seed: int, steps: int = 40) -> tuple[np.ndarray, np.ndarray]:
    twin.reset(seed)
    expert = ScriptedExpert(twin)
    for _ in range(steps):
        twin.apply_action(expert.action())
        twin.step()
    return twin.cube_position, twin.joint_positions()


@pytest.mark.parametrize("level", ["shifted", "unseen"])
def test_a_look_changes_pixels_not_physics_nor_cube_poses(level):
    plain, shifted = make_twin("none"), make_twin(level)
    for seed in (1000, 1001):
        plain.reset(seed)
        shifted.reset(seed)
        assert np.array_equal(plain.cube_start, shifted.cube_start)  # one --seed, the same poses in both looks
        a, b = plain.render(), shifted.render()
        for camera in SIZE:
            assert np.abs(a[camera].rgb.astype(int) - b[camera].rgb).mean() > 10
        cube_a, joints_a = rollout(plain, seed)
        cube_b, joints_b = rollout(shifted, seed)
        np.testing.assert_array_equal(cube_a, cube_b)  # the extra geoms are visual only
        np.testing.assert_array_equal(joints_a, joints_b)


def test_shifted_is_reproducible_per_episode_seed():
    one, two = make_twin("shifted"), make_twin("shifted")
    one.reset(7)
    two.reset(8)
    two.reset(7)
    for camera in SIZE:
        np.testing.assert_array_equal(one.render()[camera].rgb, two.render()[camera].rgb)
    two.reset(8)
    assert not np.array_equal(one.render()["front"].rgb, two.render()["front"].rgb)


@pytest.mark.parametrize("level", ["shifted", "unseen"])
def test_segmentation_stays_exact_under_the_shift(level):
    # Without camera jitter: the table cover (0.2 mm above the table top) moves a pixel or two of the table's and the
    # cube's silhouettes, labelled table as they show the cover; distractors add background only.
    from so101_core import TABLE

    plain = make_twin("none")
    still = make_twin(level, camera_pos_std=0.0, camera_rot_std_deg=0.0, fovy_std_deg=0.0, distractors=(0, 0))
    busy = make_twin(level, camera_pos_std=0.0, camera_rot_std_deg=0.0, fovy_std_deg=0.0, distractors=(4, 4))
    for seed in range(1000, 1004):
        for twin in (plain, still, busy):
            twin.reset(seed)
        a, b, c = plain.render(), still.render(), busy.render()
        for camera in SIZE:
            edge = a[camera].segmentation != b[camera].segmentation
            assert edge.sum() <= 4 and (b[camera].segmentation[edge] == TABLE).all()
            changed = b[camera].segmentation != c[camera].segmentation
            assert (c[camera].segmentation[changed] == BACKGROUND).all()
            assert ((b[camera].segmentation == CUBE) & ~changed).sum() == (c[camera].segmentation == CUBE).sum()
    placed = busy.appearance._unseen_distractors if level == "unseen" else busy.appearance._distractors
    assert (busy.model.geom_pos[placed][:, 2] > 0).all()  # all four on the table


def test_distractors_keep_clear_of_the_cube():
    twin = make_twin("shifted", distractors=(4, 4))
    ranges = twin.appearance.ranges
    for seed in range(20):
        twin.reset(seed)
        ids = twin.appearance._distractors
        xy = twin.model.geom_pos[ids][:, :2]
        half = twin.model.geom_size[ids][:, 0]
        distance = np.linalg.norm(xy - twin.cube_start[:2], axis=1)
        assert (distance >= ranges.distractor_clearance + half - 1e-9).all()


def test_unknown_appearance_level_is_refused_everywhere():
    from lerobot_env_so101_twin.config_env import SO101TwinEnvConfig
    from lerobot_env_so101_twin.config_robot import SO101TwinConfig

    with pytest.raises(ValueError, match=r"--env.appearance='dusk' is not an appearance level; choose one of"):
        SO101TwinEnvConfig(appearance="dusk")
    with pytest.raises(ValueError, match=r"--robot.appearance='dusk'.*\['none', 'shifted', 'unseen'\]"):
        SO101TwinConfig(appearance="dusk")
    with pytest.raises(ValueError, match="appearance range light_intensity"):
        SO101TwinEnvConfig(appearance="shifted", appearance_ranges=AppearanceRanges(light_intensity=(0.9, 0.1)))


def test_env_config_passes_the_level_to_the_gym_env():
    from lerobot_env_so101_twin.config_env import SO101TwinEnvConfig
    from lerobot_env_so101_twin.env import SO101TwinEnv

    config = SO101TwinEnvConfig(cameras=["front"], observation_height=48, observation_width=64, appearance="shifted")
    env = SO101TwinEnv(task="LiftCube", **config.gym_kwargs)
    try:
        obs, _ = env.reset(seed=1000)
        plain = make_twin("none")
        plain.reset(1000)
        assert np.abs(obs["pixels"]["front"].astype(int) - plain.render()["front"].rgb).mean() > 10
        assert env.twin.config.appearance == "shifted"
    finally:
        env.close()


def _look(twin: TwinSimulation) -> dict:
    """What a level drew, factor by factor: object colours, the table's texture, the placed distractors' shapes,
    the key light's tilt (the larger x/y component at z = -1) and its least colour channel relative to its largest."""
    import mujoco

    m, a = twin.model, twin.appearance
    colours = [m.geom_rgba[i, :3] for i in (a._cube, a._table, a._floor, *a._arm_geoms)]
    colours += [m.mat_rgba[i, :3] for i in range(m.nmat)]
    placed = [i for i in (*a._distractors, *a._unseen_distractors) if m.geom_pos[i][2] > 0]
    colours += [m.geom_rgba[i, :3] for i in placed]
    direction = m.light_dir[0]
    return {
        "colours": colours,
        "texture": int(m.mat_texid[a._cover_mat, int(mujoco.mjtTextureRole.mjTEXROLE_RGB)]),
        "distractors": placed,
        "tilt": float(np.abs(direction[:2] / -direction[2]).max()),
        "tint": float(m.light_diffuse[0].min() / m.light_diffuse[0].max()),
    }


def test_unseen_draws_never_fall_inside_what_shifted_and_the_segmenter_draw():
    from lerobot_env_so101_twin.appearance import in_unseen_band
    from so101_twin_data.sim_frames import RandomizationConfig

    unseen = make_twin("unseen")
    others = {"shifted": make_twin("shifted"), "segmenter": make_twin("shifted")}
    others["segmenter"].appearance.ranges = RandomizationConfig().scene_ranges()
    ranges = unseen.appearance.ranges
    unseen_textures = set(unseen.appearance._unseen_textures)
    for seed in range(200):
        unseen.reset(seed)
        look = _look(unseen)
        assert all(in_unseen_band(c, ranges) for c in look["colours"]), seed
        assert look["texture"] in unseen_textures
        assert set(look["distractors"]) <= set(unseen.appearance._unseen_distractors) and look["distractors"]
        assert look["tilt"] >= ranges.unseen_light_tilt[0] > ranges.light_tilt
        assert look["tint"] <= ranges.unseen_light_tint[1] / 0.9 < 0.8
        for name, twin in others.items():
            twin.reset(seed)
            if name == "segmenter":  # its per-frame redraw, over its own (wider) ranges
                twin.redraw_appearance(np.random.default_rng(seed))
            look = _look(twin)
            assert not any(in_unseen_band(c, ranges) for c in look["colours"]), (name, seed)
            assert look["texture"] not in unseen_textures
            assert set(look["distractors"]) <= set(twin.appearance._distractors)
            assert look["tilt"] <= twin.appearance.ranges.light_tilt + 1e-9
            assert look["tint"] >= 0.8 - 1e-9


def test_the_fold_keeps_shifted_draws_outside_the_band_and_leaves_others_alone():
    from lerobot_env_so101_twin.appearance import fold_out_of_unseen, in_unseen_band

    ranges = AppearanceRanges()
    rng = np.random.default_rng(0)
    colours = rng.uniform(0.0, 1.0, (5000, 3))
    inside = [c for c in colours if in_unseen_band(c, ranges)]
    assert len(inside) > 200  # the band is a real part of the colour cube
    assert not any(in_unseen_band(fold_out_of_unseen(c, ranges), ranges) for c in inside)
    outside = [c for c in colours if not in_unseen_band(c, ranges)]
    assert all(fold_out_of_unseen(c, ranges) is c for c in outside)


def test_unseen_ranges_that_would_overlap_the_other_levels_are_refused():
    with pytest.raises(ValueError, match="unseen_light_tilt"):
        AppearanceRanges(unseen_light_tilt=(0.5, 1.0)).validate()
    with pytest.raises(ValueError, match="unseen_saturation"):
        AppearanceRanges(unseen_saturation=(0.1, 0.9)).validate()
    with pytest.raises(ValueError, match="unseen_light_tint"):
        AppearanceRanges(unseen_light_tint=(0.5, 0.85)).validate()
