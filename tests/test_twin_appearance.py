"""The twin's appearance levels: `none` is the plain twin, `shifted` a per-episode visual shift that leaves the
physics, the cube poses and the ground-truth segmentation exact."""

from __future__ import annotations

import numpy as np
import pytest

from lerobot_env_so101_twin.appearance import AppearanceRanges
from lerobot_env_so101_twin.expert import ScriptedExpert
from lerobot_env_so101_twin.twin import SO101Twin, TwinConfig
from so101_core import BACKGROUND, CUBE

SIZE = {"front": (48, 64), "wrist": (48, 64)}


def make_twin(appearance: str = "none", **ranges) -> SO101Twin:
    config = TwinConfig(
        cameras=dict(SIZE), segmentation=True, appearance=appearance, appearance_ranges=AppearanceRanges(**ranges)
    )
    return SO101Twin(config)


def rollout(twin: SO101Twin, seed: int, steps: int = 40) -> tuple[np.ndarray, np.ndarray]:
    twin.reset(seed)
    expert = ScriptedExpert(twin)
    for _ in range(steps):
        twin.apply_action(expert.action())
        twin.step()
    return twin.cube_position, twin.joint_positions()


def test_shifted_changes_pixels_not_physics_nor_cube_poses():
    plain, shifted = make_twin("none"), make_twin("shifted")
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


def test_segmentation_stays_exact_under_the_shift():
    # Without camera jitter: the table cover (0.2 mm above the table top) moves a pixel or two of the table's and the
    # cube's silhouettes, labelled table as they show the cover; distractors add background only.
    from so101_core import TABLE

    plain = make_twin("none")
    still = make_twin("shifted", camera_pos_std=0.0, camera_rot_std_deg=0.0, fovy_std_deg=0.0, distractors=(0, 0))
    busy = make_twin("shifted", camera_pos_std=0.0, camera_rot_std_deg=0.0, fovy_std_deg=0.0, distractors=(4, 4))
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
    assert (busy.model.geom_pos[busy.appearance._distractors][:, 2] > 0).all()  # all four on the table


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
    from lerobot_env_so101_twin.config_so101_twin import SO101TwinConfig
    from lerobot_env_so101_twin.env_config import SO101TwinEnvConfig

    with pytest.raises(ValueError, match=r"--env.appearance='dusk' is not an appearance level; choose one of"):
        SO101TwinEnvConfig(appearance="dusk")
    with pytest.raises(ValueError, match=r"--robot.appearance='dusk'.*\['none', 'shifted'\]"):
        SO101TwinConfig(appearance="dusk")
    with pytest.raises(ValueError, match="appearance range light_intensity"):
        SO101TwinEnvConfig(appearance="shifted", appearance_ranges=AppearanceRanges(light_intensity=(0.9, 0.1)))


def test_env_config_passes_the_level_to_the_gym_env():
    from lerobot_env_so101_twin.env_config import SO101TwinEnvConfig
    from lerobot_env_so101_twin.gym_env import SO101TwinEnv

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
