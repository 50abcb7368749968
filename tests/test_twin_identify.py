"""so101-twin-identify: the replay against the twin itself, the fit against a known arm, the command's files, its
refusals and its run-again behaviour, and the identified arm played by the recorder."""

from __future__ import annotations

import dataclasses
import json

import mujoco
import numpy as np
import pytest
from clitools import TASK, run_cli

from lerobot_env_so101_twin.arm import ARM_STREAM, ArmParams, load_arm
from lerobot_env_so101_twin.expert import EXPERTS
from lerobot_env_so101_twin.identify import (
    Episode,
    Replay,
    contact_frames,
    fit,
    jitter_upper_bound,
    pack,
    parameter_names,
    unpack,
)
from lerobot_env_so101_twin.simulation import ActuationNoise, TwinConfig, TwinSimulation
from so101_core import JOINT_NAMES

PERIOD_MS = 1000.0 / 30
KNOWN = ArmParams(
    gain=[0.7, 1.25, 0.8, 1.2, 0.75, 1.1],
    damping=[1.3],
    backlash_deg=[0.6],
    calibration_deg=[1.0, -1.5, 0.5, 2.0, -1.0, 0.0],
    latency_ms=2 * PERIOD_MS,  # a whole number of physics substeps: the twin rounds a latency to one
)


def demonstrations(arm: ArmParams, episodes: int, frames: int = 150) -> list[Episode]:
    """The reactive expert on the twin playing `arm`, its unsteadiness recorded with the action, contacts off (as the
    replay has them), read as a recording holds them: the follower's reading, then the action sent."""
    twin = TwinSimulation(TwinConfig(cameras={}, arm_params=arm), seed=0)
    twin.model.opt.disableflags |= mujoco.mjtDisableBit.mjDSBL_CONTACT
    out = []
    for k in range(episodes):
        twin.reset(100 + k)
        expert = EXPERTS["reactive"](twin)
        noise = ActuationNoise(1.0, 0.3, 30, 100 + k)
        noise.reset(100 + k)
        states, actions = [], []
        for _ in range(frames):
            states.append(twin.follower_positions())
            actions.append(twin.follower_command(expert.action()) + noise.sample())
            twin.apply_action(actions[-1])
            twin.step()
        s, a = np.array(states), np.array(actions)
        used = ~contact_frames(s, a, 3.0)
        used[0] = False
        out.append(Episode(k, s, a, used))
    return out


def test_the_replay_of_a_twin_recording_with_its_own_arm_is_exact():
    episodes = demonstrations(KNOWN, 3, frames=90)
    replay = Replay(episodes, 30)
    replayed = replay.run(KNOWN)
    recorded = np.stack([e.state for e in episodes])
    np.testing.assert_allclose(replayed, recorded, atol=1e-6)
    assert replay.rmse_per_joint(ArmParams()).mean() > 0.5  # the nominal arm does not


def test_a_jittered_replay_draws_the_twin_s_own_jitter_and_the_residual_bounds_it():
    # the gears' play left out: the twin runs a target through them when it arrives, the replay when it is sent, and
    # the two differ only where jitter makes a target overtake another within one substep
    arm = dataclasses.replace(KNOWN, backlash_deg=[0.0], latency_jitter_ms=20.0)
    episodes = demonstrations(arm, 3, frames=120)
    replay = Replay(episodes[:1], 30)
    # the twin draws each episode's delays from its own stream (arm.py's ARM_STREAM), one per target, in order
    same = replay.run(arm, np.random.default_rng([100, ARM_STREAM, 1]))
    np.testing.assert_allclose(same[0], episodes[0].state, atol=1e-6)
    steady = replay.run(arm)  # no rng: the latency without its jitter
    assert np.abs(steady[0] - episodes[0].state).max() > 0.5
    # a recording the arm replays exactly but for its jitter: the bound lands near the jitter; without jitter, at 0
    bound, spread = jitter_upper_bound(Replay(episodes, 30), dataclasses.replace(arm, latency_jitter_ms=0.0))
    assert 14.0 < bound < 26.0, (bound, spread)
    assert spread["squared_error"][0] == 0.0 and spread["observed_squared_error"] > 0
    exact = demonstrations(dataclasses.replace(arm, latency_jitter_ms=0.0), 2, frames=90)
    assert jitter_upper_bound(Replay(exact, 30), dataclasses.replace(arm, latency_jitter_ms=0.0))[0] < 0.5


def test_the_saturation_share_is_where_mujoco_clips_the_servo_force():
    """The share of steps at the force limit, from the rollout's states, against MuJoCo's own clipped actuator force
    stepped by hand through the same targets."""
    weak = ArmParams(force=[0.6], latency_ms=PERIOD_MS)
    episodes = demonstrations(weak, 1, frames=40)
    replay = Replay(episodes, 30)
    shares = replay.saturation(weak)
    model, data = replay.model, replay.datas[0]
    controls = replay._controls(weak)[0]
    mujoco.mj_setState(model, data, replay._initial_states(weak.calibration())[0], replay.spec)
    act, limit = replay.act, model.actuator_forcerange[replay.act, 1]
    clipped, scored = np.zeros(len(act)), 0
    used = episodes[0].used
    for step, ctrl in enumerate(controls):
        data.ctrl[:] = ctrl
        mujoco.mj_step(model, data)  # actuator_force: from the state the step started in, clipped to its range
        frame = step // replay.n + 1
        if step >= 1 and frame < len(used) and used[frame]:
            clipped += np.isclose(np.abs(data.actuator_force[act]), limit, rtol=1e-9)
            scored += 1
    np.testing.assert_allclose(shares, clipped / scored, atol=1.5 / scored)
    assert shares.max() > 0.05  # this weak arm does reach its limits


def test_a_force_limit_the_servo_never_reaches_is_reported_as_not_identified():
    from lerobot_env_so101_twin.commands.identify import unidentified

    row = {"identified": True, "at_bound": False}
    parameters = {"force": [{**row, "joint": "shoulder_pan"}, {**row, "joint": "shoulder_lift"}],
                  "gain": [{**row, "joint": "shoulder_pan"}]}  # fmt: skip
    out = unidentified(parameters, {"shoulder_pan": 0.002, "shoulder_lift": 0.3})
    assert list(out) == ["force[shoulder_pan]"]  # a gain is not judged by saturation, a reached limit is kept
    assert "0.2% of the replay's steps" in out["force[shoulder_pan]"]


def test_a_parameter_a_second_search_about_as_good_disagrees_on_is_reported_as_not_identified():
    from lerobot_env_so101_twin.commands.identify import unidentified

    row = {"identified": True, "at_bound": False}
    parameters = {
        "gain": [{**row, "joint": "shoulder_pan", "value": 1.0, "second_search": 1.3},  # 30% apart
                 {**row, "joint": "shoulder_lift", "value": 1.0, "second_search": 1.1}],  # within 15%
        "backlash_deg": [{**row, "joint": "shoulder_pan", "value": 1.0, "second_search": 1.2},  # within 0.3 deg
                         {**row, "joint": "shoulder_lift", "value": 1.0, "second_search": 0.6}],
    }  # fmt: skip
    out = unidentified(parameters, {}, {"as_good": True, "cost_ratio": 1.04})
    assert sorted(out) == ["backlash_deg[shoulder_lift]", "gain[shoulder_pan]"]
    assert "1.04 of the identified arm's squared errors" in out["gain[shoulder_pan]"]
    assert "at 1.30" in out["gain[shoulder_pan]"] and "does not tell the two arms apart" in out["gain[shoulder_pan]"]
    # a second search that ended clearly worse is no evidence for either value: what it disagrees on is not claimed,
    # what it agrees on stays identified
    worse = unidentified(parameters, {}, {"as_good": False, "cost_ratio": 1.5})
    assert sorted(worse) == ["backlash_deg[shoulder_lift]", "gain[shoulder_pan]"]
    assert worse["gain[shoulder_pan]"].startswith("not confirmed") and "1.50" in worse["gain[shoulder_pan]"]


def test_a_joint_whose_servo_is_left_open_in_part_claims_neither_its_other_servo_factors_nor_its_calibration():
    from lerobot_env_so101_twin.commands.identify import unidentified

    row = {"identified": True, "at_bound": False}
    parameters = {
        "gain": [{**row, "joint": "wrist_roll", "identified": False}, {**row, "joint": "elbow_flex"}],
        "damping": [{**row, "joint": "wrist_roll"}, {**row, "joint": "elbow_flex"}],
        "force": [{**row, "joint": "wrist_roll"}, {**row, "joint": "elbow_flex"}],
        "backlash_deg": [{**row, "joint": "wrist_roll"}],
        "calibration_deg": [{**row, "joint": "wrist_roll"}, {**row, "joint": "elbow_flex"}],
    }  # fmt: skip
    out = unidentified(parameters, {"wrist_roll": 0.4, "elbow_flex": 0.3})
    # the open gain takes its servo's damping and force limit and the joint's calibration with it; the play is the
    # gears', before the servo, and the other joint's servo is claimed whole
    tied = ["calibration_deg[wrist_roll]", "damping[wrist_roll]", "force[wrist_roll]", "gain[wrist_roll]"]
    assert sorted(out) == tied
    assert out["force[wrist_roll]"].startswith("not confirmed: it trades against gain[wrist_roll]")
    assert out["gain[wrist_roll]"].startswith("the recording tells less about it")  # its own reason stays


def test_the_gripper_s_force_limit_is_fitted_and_its_free_closing_shows_it():
    """The gripper's force limit is one fitted parameter named for the gripper, packed and unpacked as the scalar
    ArmParams holds; a weak gripper saturates as it closes and opens in free air, so the replay picks its force out of
    a grid, no cube needed."""
    weak = dataclasses.replace(KNOWN, gain=[0.7, 1.25, 0.8, 1.2, 0.75, 1.5], gripper_force=0.5)
    names = parameter_names()
    assert names.count("gripper_force[gripper]") == 1 and len(names) == 6 + 6 + 5 + 1 + 5 + 6
    x = pack(weak)
    assert x[names.index("gripper_force[gripper]")] == pytest.approx(np.log(0.5))
    back = unpack(x, weak.latency_ms)
    assert back.gripper_force == pytest.approx(0.5) and isinstance(back.gripper_force, float)
    replay = Replay([dataclasses.replace(e, used=np.r_[False, np.ones(len(e.used) - 1, bool)])
                     for e in demonstrations(weak, 3, frames=120)], 30)  # fmt: skip
    costs = {g: float(np.sum(replay.residuals(dataclasses.replace(weak, gripper_force=g)) ** 2)) for g in
             (0.3, 0.5, 0.8, 1.2)}  # fmt: skip
    assert min(costs, key=costs.get) == 0.5, costs
    assert costs[1.2] > 10 * max(costs[0.5], 1e-9), costs  # a nominal gripper replays it far worse
    assert replay.saturation(weak)[5] > 0.05  # it saturates in free air


def test_contact_frames_are_where_the_gripper_is_held_open():
    state = np.zeros((40, 6))
    action = np.zeros((40, 6))
    state[20:25, 5] = 10.0  # the gripper reads 10 units above its target: something is in the jaws
    frames = contact_frames(state, action, threshold=3.0)
    assert frames[15:30].all() and not frames[:15].any() and not frames[30:].any()


@pytest.mark.slow
def test_the_fit_finds_the_latency_and_tracks_held_out_episodes_far_better_than_the_nominal_twin():
    """The latency within one control period and the held-out joints' error under half the nominal twin's. (How
    close each servo parameter comes is measured, not asserted: docs/results.md, "Your own arm, identified".)"""
    episodes = demonstrations(KNOWN, 5)
    fitted, info = fit(Replay(episodes[:4], 30), np.arange(0.0, 134.0, PERIOD_MS / 2), max_nfev=30)
    assert abs(fitted.latency_ms - KNOWN.latency_ms) <= PERIOD_MS
    held = Replay(episodes[4:], 30)
    assert held.rmse_per_joint(fitted).mean() < 0.5 * held.rmse_per_joint(ArmParams()).mean()
    assert set(info) >= {"gain", "damping", "latency_ms", "identified", "jacobian_column_norm"}
    # the base's calibration offset cancels between reading and command (gravity never loads the base): the
    # recording cannot see it, and the prior keeps it at nominal rather than wherever the solver wandered
    pan = parameter_names().index(f"calibration_deg[{JOINT_NAMES[0]}]")
    assert info["jacobian_column_norm"][pan] < 1e-3 * info["jacobian_column_norm"].max()
    assert not info["identified"][pan] and abs(fitted.calibration_deg[0]) < 0.5
    assert np.isfinite(info["calibration_deg"]).all()  # a posterior spread for it all the same


@pytest.mark.slow
def test_the_least_squares_goes_on_from_the_latency_start_that_replays_best():
    """Three starts a period apart around the grid's best, each probed, and the fit goes on from the cheapest: on a
    slow arm with jitter and play, as a real one, that basin holds the true latency."""
    import re

    slow = ArmParams(gain=[0.55], damping=[1.5], backlash_deg=[1.1], latency_ms=75.0, latency_jitter_ms=15.0)
    said: list[str] = []
    fitted, _ = fit(Replay(demonstrations(slow, 3), 30), np.arange(0.0, 200.0, PERIOD_MS / 2), max_nfev=5,
                    progress=said.append, starts=3, start_spacing_ms=PERIOD_MS)  # fmt: skip
    grid_best = float(re.search(r"best (\d+) ms", said[0]).group(1))
    probes = [(float(ms), float(cost)) for ms, cost in re.findall(r"(\d+) ms: ([\d.]+)", said[1])]
    assert [ms for ms, _ in probes] == pytest.approx([grid_best - PERIOD_MS, grid_best, grid_best + PERIOD_MS], abs=1)
    chosen = float(re.search(r"on from (\d+) ms", said[1]).group(1))
    assert chosen == min(probes, key=lambda p: p[1])[0]
    assert abs(fitted.latency_ms - slow.latency_ms) <= PERIOD_MS


@pytest.mark.slow
def test_the_global_search_finds_a_saturating_arm_s_latency():
    """A strong servo at a low force limit (it saturates whenever it moves), found by CMA-ES over every parameter and
    the least squares after it: the latency within a third of a period, the held-out episodes replayed far better
    than by the nominal twin. (Against the least squares alone on a hidden arm: docs/results.md.)"""
    strong = ArmParams(gain=[1.5], force=[0.7], damping=[1.4], backlash_deg=[0.8], latency_ms=75.0)
    episodes = demonstrations(strong, 5)
    said: list[str] = []
    fitted, info = fit(Replay(episodes[:4], 30), np.arange(0.0, 200.0, PERIOD_MS / 2), max_nfev=3,
                       progress=said.append, search_evals=300, check_evals=60)  # fmt: skip
    assert any(line.startswith("CMA-ES: ") and "replays, cost" in line for line in said), said
    # the second search is finished by the least squares too, and the arm is the better of the two
    finished = [line for line in said if line.startswith("second search, finished")]
    assert len(finished) == 1 and info["second_cost_ratio"] >= 1.0
    assert info["second_search"].shape == (len(parameter_names()) + 1,)
    assert abs(fitted.latency_ms - strong.latency_ms) <= PERIOD_MS / 3
    held = Replay(episodes[4:], 30)
    assert held.rmse_per_joint(fitted).mean() < 0.3 * held.rmse_per_joint(ArmParams()).mean()


def _record(root, *flags, episodes=4, seconds=2.0):
    run_cli(
        [
            "so101-twin-record",
            "--robot.cameras=[]",
            "--teleop.noise_std=1.0",
            "--dataset.repo_id=local/identify",
            f"--dataset.root={root}",
            f"--dataset.num_episodes={episodes}",
            f"--dataset.episode_time_s={seconds}",
            f"--dataset.single_task={TASK}",
            "--num_workers=1",
            "--fail_fast_episodes=0",
            *flags,
        ],
        cwd=root.parent,
    )


@pytest.mark.slow
def test_the_command_writes_the_arm_report_and_plot_runs_again_and_refuses(tmp_path):
    data = tmp_path / "demos"
    _record(data, "--robot.arm_params.latency_ms=67", "--robot.arm_params.gain=[0.7]")
    out = tmp_path / "my_arm"
    flags = ["so101-twin-identify", "--dataset.repo_id=local/identify", f"--dataset.root={data}",
             f"--output_dir={out}", "--max_nfev=2", "--search_evals=40", "--second_search_evals=20",
             "--holdout_every=4", "--latency_step_ms=33.3333", "--control_fps=10", "--cube.mass_g=54",
             "--cube.size_mm=33"]  # fmt: skip
    run_cli(flags, cwd=tmp_path)
    arm = load_arm(str(out / "arm.json"))
    report = json.loads((out / "report.json").read_text())
    assert abs(arm.latency_ms - 67) <= PERIOD_MS
    assert arm.control_fps == 10  # the policy loop's rate, as given: written, not fitted
    # the cube as weighed and measured, times the twin's 30 g and 30 mm: written, not fitted
    assert arm.cube_mass == pytest.approx(1.8) and arm.cube_size == pytest.approx(1.1) and arm.cube_friction == 1.0
    slower = run_cli([*flags[:3], f"--output_dir={tmp_path / 'seven'}", "--control_fps=7"], cwd=tmp_path, check=False)
    assert slower.returncode != 0 and "--control_fps=7: the loop's rate must divide" in slower.stderr
    assert "Traceback" not in slower.stderr and not (tmp_path / "seven").exists()
    assert report["episodes"] == {"fit": [1, 2, 3], "held_out": [0]}
    assert set(report["tracking_rmse_held_out"]) == {"nominal", "identified"}
    assert [r["joint"] for r in report["parameters"]["gripper_force"]] == ["gripper"]  # fitted, as the body's
    assert "cube_mass" not in report["not_identified"]
    assert report["cube"]["factors"] == {"cube_mass": pytest.approx(1.8), "cube_size": pytest.approx(1.1)}
    # the twin's recorder plays the nominal arm here, without jitter: only what the fit missed is left to bound it
    assert "latency_jitter_ms" in report["not_identified"]
    assert 0 <= report["latency_jitter_upper_bound_ms"] <= report["latency_jitter_spread"]["jitter_ms"][-1]
    assert set(report["servo_saturation"]) == set(JOINT_NAMES)
    assert all(0 <= v <= 1 for v in report["servo_saturation"].values())
    assert all(row["trades_against"] != f"gain[{row['joint']}]" for row in report["parameters"]["gain"])
    # the other search, finished as the identified arm's: it replays no better, and where it put every parameter
    second = report["second_search"]
    assert second["cost_ratio"] >= 1 and second["as_good"] == (second["cost_ratio"] <= 1.1)
    assert all("second_search" in row for rows in report["parameters"].values() for row in rows)
    assert (out / "tracking.png").stat().st_size > 10_000
    # run again: nothing to do, exit 0, one line
    again = run_cli(flags, cwd=tmp_path, check=False)
    assert again.returncode == 0 and "already identified" in again.stdout
    # other settings over it: refused in one line, naming the setting
    other = run_cli([*flags, "--contact_threshold=5"], cwd=tmp_path, check=False)
    assert other.returncode != 0 and "contact_threshold" in other.stderr and "Traceback" not in other.stderr
    # the identified arm, played by the recorder
    _record(tmp_path / "replayed", f"--robot.arm_path={out / 'arm.json'}", episodes=1, seconds=0.5)
    rows = (tmp_path / "replayed" / "meta" / "so101_twin_arms.jsonl").read_text().splitlines()
    assert json.loads(rows[0])["params"] == arm.as_dict()


def test_a_recording_that_barely_moves_or_a_cube_the_twin_cannot_play_is_refused_before_any_work(tmp_path):
    data = tmp_path / "still"
    _record(data, episodes=1, seconds=0.3)
    command = ["so101-twin-identify", "--dataset.repo_id=local/identify", f"--dataset.root={data}",
               f"--output_dir={tmp_path / 'out'}"]  # fmt: skip
    result = run_cli(command, cwd=tmp_path, check=False)
    assert result.returncode != 0 and "frames where a joint moves" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "out").exists()
    # the cube is checked before the recording is read: 50 mm is 1.67 times the twin's cube, past its 1.3
    big = run_cli([*command, "--cube.size_mm=50"], cwd=tmp_path, check=False)
    assert big.returncode != 0 and "--cube.size_mm=50.0: the twin plays a cube of 21 to 39" in big.stderr
    assert "Traceback" not in big.stderr and not (tmp_path / "out").exists()


def test_an_arm_file_is_played_as_arm_params_and_refused_when_it_is_not_one(tmp_path):
    from lerobot_env_so101_twin.config_env import SO101TwinEnvConfig

    path = tmp_path / "arm.json"
    path.write_text(json.dumps(KNOWN.as_dict()))
    cfg = SO101TwinEnvConfig(arm_path=str(path))
    assert cfg.arm_params.as_dict() == KNOWN.as_dict() and cfg.arm_path is None
    with pytest.raises(ValueError, match=r"--env\.arm_path .* needs --env\.arm=none"):
        SO101TwinEnvConfig(arm_path=str(path), arm="varied")
    path.write_text(json.dumps({"gain": [1.0], "wheels": 4}))
    with pytest.raises(ValueError, match=r"--env\.arm_path=.*not an arm file.*wheels"):
        SO101TwinEnvConfig(arm_path=str(path))
    later = SO101TwinEnvConfig(arm_path=str(tmp_path / "missing.json"))  # an earlier command may yet write it
    with pytest.raises(FileNotFoundError, match=r"--env\.arm_path=.*no such file"):
        later.gym_kwargs  # noqa: B018 (the env is built from these: refused before any episode)
