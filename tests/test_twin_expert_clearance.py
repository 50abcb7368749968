"""The closed-loop experts' descent with a clearance: the fixed finger stands off the cube's face, whatever its size."""

from __future__ import annotations

import json

import mujoco
import numpy as np
import pytest

from lerobot_env_so101_twin.arm import ArmParams
from lerobot_env_so101_twin.commands.record import TwinDatasetConfig, TwinRecordConfig, _manifest
from lerobot_env_so101_twin.config_teleoperator import SO101TwinExpertConfig
from lerobot_env_so101_twin.expert import ReactiveExpert, rollout_expert
from lerobot_env_so101_twin.simulation import CUBE_HALF_SIZE, TwinConfig, TwinSimulation


def _finger_face(twin: TwinSimulation) -> float:
    """The fixed finger's face towards the moving jaw, from the grasp point along the gripper's closing axis (metres),
    from its collision geometry within 12 mm of the grasp point's height in the gripper: what touches the cube."""
    m, d = twin.model, twin.data
    rot = d.xmat[twin._gripper_body].reshape(3, 3)
    face = -np.inf
    for g in twin._static_finger_geoms:
        if m.geom_type[g] == mujoco.mjtGeom.mjGEOM_MESH:
            start = m.mesh_vertadr[m.geom_dataid[g]]
            local = m.mesh_vert[start : start + m.mesh_vertnum[m.geom_dataid[g]]]
        else:
            local = np.array(np.meshgrid(*[[-1, 1]] * 3)).reshape(3, -1).T * m.geom_size[g]
        in_gripper = (local @ d.geom_xmat[g].reshape(3, 3).T + d.geom_xpos[g] - twin.grasp_point) @ rot
        near = in_gripper[np.abs(in_gripper[:, 2]) < 0.012]
        if len(near):
            face = max(face, float(near[:, 0].max()))
    return face


def _gap_when_closing(cube_size: float, clearance_mm: float | None, seed: int = 1) -> float:
    """Millimetres between the cube's face and the fixed finger's when the expert starts closing (ideal arm)."""
    twin = TwinSimulation(TwinConfig(cameras={}, arm_params=ArmParams(cube_size=cube_size)), seed=0)
    twin.reset(seed)
    expert = ReactiveExpert(twin, clearance_mm=clearance_mm)
    for _ in range(90):
        twin.apply_action(twin.follower_command(expert.action()))
        twin.step()
        if expert.phase == "close":
            cube_face = float((twin.cube_position - twin.grasp_point) @ twin.closing_direction) - twin.cube_half_size
            return 1000.0 * (cube_face - _finger_face(twin))
    raise AssertionError("the expert never started closing")


def test_the_fixed_finger_meets_the_twins_own_cube_at_the_grasp_point():
    """What the clearance is measured from: the finger's face lies CUBE_HALF_SIZE from the grasp point."""
    twin = TwinSimulation(TwinConfig(cameras={}), seed=0)
    twin.reset(0)
    assert -_finger_face(twin) == pytest.approx(CUBE_HALF_SIZE, abs=2e-4)


def test_the_finger_stands_the_clearance_off_the_cube_whatever_its_size():
    """Onto the centre, a cube 10% larger brings the finger's face 1.5 mm further over it (into its top, for a descent
    a little towards the finger); with a clearance the gap is the clearance, for either cube."""
    centre = {size: _gap_when_closing(size, None) for size in (1.0, 1.1)}
    clear = {size: _gap_when_closing(size, 6.0) for size in (1.0, 1.1)}
    assert centre[1.0] - centre[1.1] == pytest.approx(1.5, abs=0.3)
    assert clear[1.0] == pytest.approx(clear[1.1], abs=0.3)
    assert clear[1.0] - centre[1.0] == pytest.approx(6.0, abs=0.5)


def test_a_descent_that_stalls_on_the_cubes_top_lifts_with_a_clearance():
    """An `unseen` arm (episode seed 4: cube 8.5% larger, 60 ms, a 10 Hz loop) where the finger comes to rest on
    the cube's top for the rest of a 10-s episode; aimed past the cube's face, the same episode lifts."""
    twin = TwinSimulation(TwinConfig(cameras={}, arm="unseen"), seed=0)
    stalled, _ = rollout_expert(twin, 4, max_steps=300, kind="predictive")
    lifted, steps = rollout_expert(twin, 4, max_steps=300, kind="predictive", clearance_mm=6.0)
    assert twin.arm.cube_size > 1.07
    assert not stalled
    assert lifted and steps < 150


def test_without_a_clearance_the_commands_are_the_descent_onto_the_centre():
    """clearance None aims at the cube's centre exactly (the recordings made before the option); 0 aims the finger's
    face at the cube's, which differs from it for any cube but the twin's own."""
    twin = TwinSimulation(TwinConfig(cameras={}, arm_params=ArmParams(cube_size=1.1)), seed=0)
    twin.reset(2)
    np.testing.assert_array_equal(ReactiveExpert(twin)._grasp_centre(), twin.cube_position)
    shifted = twin.cube_position - ReactiveExpert(twin, clearance_mm=0.0)._grasp_centre()
    np.testing.assert_allclose(shifted, 0.1 * CUBE_HALF_SIZE * twin.closing_direction, atol=1e-12)


def test_the_teleoperator_refuses_a_clearance_it_cannot_hold_and_records_one_it_takes():
    assert SO101TwinExpertConfig(expert="predictive", clearance_mm=6.0).clearance_mm == 6.0
    with pytest.raises(ValueError, match=r"--teleop.clearance_mm must be in \[0, 15\] mm, got -1"):
        SO101TwinExpertConfig(clearance_mm=-1.0)
    with pytest.raises(ValueError, match=r"--teleop.clearance_mm.*scripted expert has none"):
        SO101TwinExpertConfig(expert="scripted", clearance_mm=3.0)
    # a recording made before the option reads as the descent onto the centre; one with it names it
    without = _manifest(TwinRecordConfig(dataset=TwinDatasetConfig(repo_id="local/x")), 0)
    assert "clearance_mm" not in without["teleop"] and "hover_height" in without["teleop"]
    teleop = SO101TwinExpertConfig(clearance_mm=6.0)
    made = _manifest(TwinRecordConfig(dataset=TwinDatasetConfig(repo_id="local/x"), teleop=teleop), 0)
    assert json.loads(json.dumps(made))["teleop"]["clearance_mm"] == 6.0
