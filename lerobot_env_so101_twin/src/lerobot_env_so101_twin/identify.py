"""System identification of a user's arm from the demonstrations they record anyway.

A recording holds, frame by frame, the target sent to the follower (`action`) and where the follower was
(`observation.state`). Replaying the recorded targets in the twin from each episode's recorded start state and
fitting the arm (arm.py's `ArmParams`) that makes the twin's joints follow the recorded ones identifies the follower:
per joint its servo gain, damping, force limit, backlash and calibration offset, and for the whole loop its latency.

How:
- the replay is open loop, as the recording's targets were absolute, batched over episodes in MuJoCo's own threaded
  `rollout` (C), without contacts: the cube and the table are not what is identified;
- frames where the gripper is held open by something (the recorded gripper stays above its target) are left out,
  with a margin, in every joint: that is the cube in the hand, whose load the replay does not carry;
- a target's way to the servos (latency, then the gears' play) depends on the targets alone, not the state, so it is
  computed once per parameter set in numpy; a fractional latency blends the switching substep, so the fit is smooth
  in it;
- latency is searched on a grid first (the error has local minima a period apart); then CMA-ES (`cma`) searches every
  parameter at once, latency included, and scipy's bounded least squares (trust region reflective) finishes from its
  best, both under a Gaussian prior at the nominal arm. The global search is there because the servos saturate: past
  a fraction of a degree of error an STS3215 pushes at its force limit whatever its gain, so a slow arm can be
  replayed by a weak linear servo with extra latency as well as by a strong saturating one, and a local solver
  started at the nominal arm stays in the first basin (a gain traded for latency). The uncertainty is the posterior
  covariance s^2 (J^T J)^-1 at the solution (the prior's rows in J), and a parameter on which the recording's
  Jacobian column is smaller than the prior's is reported as not identified by this recording, with that evidence.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import mujoco
import numpy as np
from mujoco import rollout
from scipy.optimize import least_squares

from so101_core import JOINT_NAMES

from .arm import BODY_JOINTS, JOINTS, ArmParams
from .arm_physics import play
from .simulation import TwinConfig, TwinSimulation

# The parameters fitted, in order: (name in ArmParams, the joints it has, log-scaled, lower bound, upper bound). The
# gripper's force limit is its own field; it shows as the body joints' do, in how fast the gripper closes and opens
# in free air, where its servo saturates
ALL, BODY = tuple(range(JOINTS)), tuple(range(BODY_JOINTS))
FITTED = (
    ("gain", ALL, True, 0.2, 3.0),
    ("damping", ALL, True, 0.1, 5.0),
    ("force", BODY, True, 0.1, 3.0),
    ("gripper_force", (JOINTS - 1,), True, 0.1, 3.0),
    ("backlash_deg", BODY, False, 0.0, 5.0),
    ("calibration_deg", ALL, False, -10.0, 10.0),
)
# how far each plausibly moves from nominal: the prior's spread and the searches' first step (log factors, degrees)
SPREAD = {"gain": 0.3, "damping": 0.3, "force": 0.3, "gripper_force": 0.3, "backlash_deg": 0.5, "calibration_deg": 2.0}
CONTACT_MARGIN = 5  # frames left out on either side of a contact
# How close two arms must agree on a parameter to count as the same: the identification's targets (relative for the
# servo factors, degrees for the play and the calibration)
AGREEMENT = {"gain": ("relative", 0.15), "damping": ("relative", 0.15), "force": ("relative", 0.15),
             "gripper_force": ("relative", 0.15), "backlash_deg": ("absolute", 0.3),
             "calibration_deg": ("absolute", 0.5)}  # fmt: skip


def disagree(name: str, a: float, b: float) -> bool:
    kind, tolerance = AGREEMENT[name]
    return abs(b / a - 1) > tolerance if kind == "relative" else abs(b - a) > tolerance


@dataclass
class Episode:
    """One recorded episode: `state` and `action` (T, 6) in follower units; `used` (T,) frames scored."""

    index: int
    state: np.ndarray
    action: np.ndarray
    used: np.ndarray


def contact_frames(state: np.ndarray, action: np.ndarray, threshold: float) -> np.ndarray:
    """(T,) frames where the gripper is held open by something: its reading stays `threshold` units (0-100) above its
    target, widened by CONTACT_MARGIN frames on each side."""
    blocked = state[:, 5] - action[:, 5] > threshold
    if not blocked.any():
        return blocked
    kernel = np.ones(2 * CONTACT_MARGIN + 1, dtype=bool)
    return np.convolve(blocked, kernel, mode="same") > 0


def pack(arm: ArmParams) -> np.ndarray:
    values = arm.as_dict()
    out = []
    for name, joints, log, _, _ in FITTED:
        v = np.atleast_1d(np.asarray(values[name], dtype=np.float64))[: len(joints)]
        out.append(np.log(v) if log else v)
    return np.concatenate(out)


def unpack(x: np.ndarray, latency_ms: float, base: ArmParams | None = None) -> ArmParams:
    values = (base or ArmParams()).as_dict()
    i = 0
    for name, joints, log, _, _ in FITTED:
        v = x[i : i + len(joints)]
        v = (np.exp(v) if log else v).tolist()
        values[name] = v if isinstance(values[name], list) else v[0]  # a per-joint list, or one value
        i += len(joints)
    values["latency_ms"] = float(latency_ms)
    return ArmParams.from_dict(values)


def bounds() -> tuple[np.ndarray, np.ndarray]:
    lo, hi = [], []
    for _, joints, log, low, high in FITTED:
        lo += [np.log(low) if log else low] * len(joints)
        hi += [np.log(high) if log else high] * len(joints)
    return np.array(lo), np.array(hi)


def parameter_names() -> list[str]:
    return [f"{name}[{JOINT_NAMES[j]}]" for name, joints, *_ in FITTED for j in joints]


def per_parameter(values: dict[str, float], last: list[float] | None = None) -> np.ndarray:
    """One value per fitted parameter, in FITTED's order, from one value per kind (`last`: appended, the latency's)."""
    return np.array([values[name] for name, joints, *_ in FITTED for _ in joints] + (last or []))


class Replay:
    """Open-loop replays of recorded episodes in the twin without its cube, for any arm."""

    def __init__(self, episodes: list[Episode], fps: int, threads: int = 2) -> None:
        self.episodes = episodes
        self.twin = TwinSimulation(TwinConfig(cameras={}, fps=fps))
        model = self.twin.model
        # no contacts at all: the cube leaves the replay, and a finger grazing the table, which a recording of a
        # real arm cannot tell apart, makes the replay chaotic in the parameters (a finite difference sees noise)
        model.opt.disableflags |= mujoco.mjtDisableBit.mjDSBL_CONTACT
        self.model = model
        self.n = self.twin.n_substeps
        self.datas = [mujoco.MjData(model) for _ in range(max(1, threads))]
        self.length = max(len(e.state) for e in episodes)
        self.spec = mujoco.mjtState.mjSTATE_FULLPHYSICS
        self.nstate = mujoco.mj_stateSize(model, self.spec)
        self.qpos = 1 + np.asarray(self.twin._joint_qpos)  # the state vector starts with the time
        self.act = np.asarray(self.twin._actuators)
        self.ctrl_spec = mujoco.mjtState.mjSTATE_CTRL

    def _initial_states(self, calibration: np.ndarray) -> np.ndarray:
        data, twin = self.datas[0], self.twin
        states = np.zeros((len(self.episodes), self.nstate))
        for k, e in enumerate(self.episodes):
            mujoco.mj_resetData(self.model, data)
            data.qpos[twin._joint_qpos] = twin.to_radians(e.state[0] - calibration)
            data.qpos[twin._cube_qpos : twin._cube_qpos + 3] = [2.0, 2.0, 0.0]  # far away, colliding with nothing
            data.ctrl[self.act] = twin.to_radians(e.state[0] - calibration)
            mujoco.mj_forward(self.model, data)
            mujoco.mj_getState(self.model, data, states[k], self.spec)
        return states

    def _controls(self, arm: ArmParams, rng: np.random.Generator | None = None) -> np.ndarray:
        """(episodes, frames * n, nu) the servos' targets per substep: the recorded targets through the gears'
        play, switching `latency` after the frame they were sent at (a fractional substep blends). With `rng`, each
        target's latency is drawn with the arm's jitter, in order, as the twin's `TargetPath` draws it."""
        calibration, width = arm.calibration(), arm.backlash_rad()
        delay = arm.latency_ms / 1000.0 / self.model.opt.timestep
        jitter = arm.latency_jitter_ms / 1000.0 / self.model.opt.timestep if rng is not None else 0.0
        steps = self.length * self.n
        controls = np.zeros((len(self.episodes), steps, self.model.nu))
        for k, e in enumerate(self.episodes):
            # the follower clips its targets to its joint limits, in its own calibration, as the twin does
            sent = np.clip(e.action, self.twin.joint_limits[:, 0], self.twin.joint_limits[:, 1])
            targets = self.twin.to_radians(sent - calibration)  # (T, 6)
            if np.any(width > 0):
                held = self.twin.to_radians(e.state[0] - calibration)
                for t in range(len(targets)):
                    held = targets[t] = play(held, targets[t], width)
            start = self.twin.to_radians(e.state[0] - calibration)
            padded = np.vstack([targets, np.repeat(targets[-1:], self.length - len(targets), axis=0)])
            switch = np.arange(self.length) * self.n + delay  # the substep each target takes over
            if jitter > 0:  # one bus: a later target never overtakes an earlier one
                drawn = np.arange(self.length) * self.n + np.maximum(0.0, delay + rng.normal(0.0, jitter, self.length))
                switch = np.maximum.accumulate(np.round(drawn))
            # per substep, the index of the last target switched in (-1: the start pose still held)
            s = np.arange(steps)
            last = np.searchsorted(switch, s, side="right") - 1
            ctrl = np.where(last[:, None] >= 0, padded[np.maximum(last, 0)], start)
            # the substep in which a switch falls holds the new target for the part of it after the switch
            frac = switch - np.floor(switch)
            for t in np.flatnonzero(frac > 1e-9):
                at = int(np.floor(switch[t]))
                if at < steps:
                    before = padded[t - 1] if t > 0 else start
                    ctrl[at] = (1 - frac[t]) * padded[t] + frac[t] * before
            controls[k][:, self.act] = ctrl
        return controls

    def _rollout(self, arm: ArmParams, rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(episodes, substeps, state) after each physics step, and (episodes, substeps, nu) the targets it took."""
        self.twin._arm_model.apply(arm)  # the replay's model is the twin's
        controls = self._controls(arm, rng)
        states, _ = rollout.rollout(self.model, self.datas, self._initial_states(arm.calibration()), controls,
                                    control_spec=self.ctrl_spec)  # fmt: skip
        return states, controls

    def run(self, arm: ArmParams, rng: np.random.Generator | None = None) -> np.ndarray:
        """(episodes, frames, 6) the replayed follower readings at every frame (frame 0: the start state); with
        `rng`, each target's latency drawn with the arm's jitter."""
        states, _ = self._rollout(arm, rng)
        at_frames = states[:, self.n - 1 :: self.n][:, : self.length - 1]  # after each frame's substeps
        q = at_frames[:, :, self.qpos]
        readings = self.twin.to_follower_units(q) + arm.calibration()
        first = np.stack([e.state[0] for e in self.episodes])[:, None]
        return np.concatenate([first, readings], axis=1)

    def saturation(self, arm: ArmParams) -> np.ndarray:
        """(6,) per joint, the share of the scored frames' physics steps in which the servo, replaying the recording,
        asks for more than its force limit: where its gain shows (below it) and where its force limit does (at it)."""
        states, controls = self._rollout(arm)
        m, a = self.model, self.act
        q = states[:, :-1, self.qpos]  # the state each step starts from (after the one before)
        qdot = states[:, :-1, 1 + m.nq + np.asarray(self.twin._joint_dof)]
        # a position servo: gain * (target - position) - damping * velocity, clipped to its force range
        demand = m.actuator_gainprm[a, 0] * (controls[:, 1:, a] - q) + m.actuator_biasprm[a, 2] * qdot
        saturated = np.abs(demand) > m.actuator_forcerange[a, 1]
        frame = np.arange(1, controls.shape[1]) // self.n + 1  # the frame whose reading each step leads to
        counts, total = np.zeros(len(a)), 0
        for k, e in enumerate(self.episodes):
            scored = np.zeros(len(frame), dtype=bool)
            inside = frame < len(e.state)
            scored[inside] = e.used[frame[inside]]
            counts += saturated[k][scored].sum(axis=0)
            total += int(scored.sum())
        return counts / max(1, total)

    def residuals(self, arm: ArmParams) -> np.ndarray:
        replayed = self.run(arm)
        out = []
        for k, e in enumerate(self.episodes):
            error = replayed[k, : len(e.state)] - e.state
            out.append(error[e.used].ravel())
        return np.concatenate(out)

    def rmse_per_joint(self, arm: ArmParams) -> np.ndarray:
        replayed = self.run(arm)
        errors = [(replayed[k, : len(e.state)] - e.state)[e.used] for k, e in enumerate(self.episodes)]
        return np.sqrt(np.mean(np.concatenate(errors) ** 2, axis=0))


def jitter_upper_bound(replay: Replay, arm: ArmParams, grid_ms: tuple[float, ...] = (2.5, 5, 10, 20, 40, 80),
                    draws: int = 2, seed: int = 0) -> tuple[float, dict[str, list[float]]]:  # fmt: skip
    """The latency jitter it would take to explain all of the fitted arm's residual: the recording's squared error
    against the arm's deterministic replay, matched to what jitter alone puts between the arm's jittered replays and
    that same replay (`draws` of them per value of `grid_ms`, interpolated). Whatever else the residual holds (what
    the fit missed, the readings' own noise) counts as jitter too, so this bounds the jitter from above and does not
    measure it; past the grid's end, its end."""
    base = replay.run(arm)

    def squared(replayed: np.ndarray, other: np.ndarray) -> float:
        return sum(float(np.sum((replayed[k, : len(e.state)] - other[k, : len(e.state)])[e.used] ** 2))
                   for k, e in enumerate(replay.episodes))  # fmt: skip

    recorded = np.stack([np.vstack([e.state, np.repeat(e.state[-1:], replay.length - len(e.state), 0)])
                         for e in replay.episodes])  # fmt: skip
    observed = squared(base, recorded)
    rng = np.random.default_rng(seed)
    spread = [0.0]
    for ms in grid_ms:
        jittered = dataclasses.replace(arm, latency_jitter_ms=float(ms))
        spread.append(float(np.mean([squared(replay.run(jittered, rng), base) for _ in range(draws)])))
    grid = np.array([0.0, *grid_ms])
    curve = np.maximum.accumulate(np.array(spread))  # jitter only adds spread; a draw's noise should not fold it
    jitter = float(np.interp(observed, curve, grid)) if observed < curve[-1] else float(grid[-1])
    return jitter, {"jitter_ms": grid.tolist(), "squared_error": [round(v, 1) for v in spread],
                    "observed_squared_error": round(observed, 1)}  # fmt: skip


def fit(
    replay: Replay,
    latency_grid_ms: np.ndarray,
    max_nfev: int,
    progress=print,
    starts: int = 1,
    start_spacing_ms: float = 1000.0 / 30,
    search_evals: int = 0,
    seed: int = 0,
    check_evals: int = 0,
) -> tuple[ArmParams, dict[str, np.ndarray]]:
    """The arm that best replays the recording, with each parameter's standard error and whether it is identified.

    With `search_evals` > 0, CMA-ES spends that many replays searching every parameter from the nominal servos at the
    latency grid's best, and the least squares finishes from its best with a third of `max_nfev`. Without it, the
    least squares starts from the latency grid's best and, with `starts` > 1, from latencies `start_spacing_ms`
    apart around it: the grid is searched with the nominal servos, and an arm slower than nominal shows there as extra
    latency, a basin the solver does not leave (gain and latency trade off). Each start runs a fifth of `max_nfev`;
    the one that replays best goes on with the rest. With `check_evals` > 0 a second search from another seed spends
    that many replays and is finished by the least squares as the first is; the better of the two is the arm, the
    other (`second_search`, its squared errors over the arm's: `second_cost_ratio` >= 1) shows which parameters an arm
    that replays about as well puts elsewhere."""
    nominal = ArmParams()
    costs = np.array([float(np.sum(replay.residuals(ArmParams(latency_ms=float(ms))) ** 2)) for ms in latency_grid_ms])
    latency = float(latency_grid_ms[int(np.argmin(costs))])
    progress(f"latency grid: best {latency:.0f} ms with the nominal servos")
    lo, hi = bounds()
    lo, hi = np.append(lo, 0.0), np.append(hi, max(float(latency_grid_ms[-1]), latency) + 1.0)
    # A Gaussian prior at the nominal arm, one spread per parameter (log factors, degrees; none on the latency):
    # where the recording says nothing (the base's calibration offset, which gravity never loads, cancels between
    # reading and command) the nominal value stays, instead of whatever the solver last wandered to. Its rows are
    # weighted by the nominal replay's error per frame at the best latency, as if that error were the noise.
    spread = per_parameter(SPREAD)
    prior = pack(dataclasses.replace(nominal, backlash_deg=[0.0]))
    n_data = replay.residuals(ArmParams(latency_ms=latency)).size
    sigma = float(np.sqrt(costs.min() / max(1, n_data)))
    weight = sigma / spread

    def residual(x: np.ndarray) -> np.ndarray:
        return np.concatenate([replay.residuals(unpack(x[:-1], x[-1])), weight * (x[:-1] - prior)])

    # from the nominal arm, the play a little inside its bound (a reflective trust region cannot leave a bound it
    # starts on), each parameter scaled by how far it plausibly moves: log factors, degrees, milliseconds
    servos = pack(dataclasses.replace(nominal, backlash_deg=[0.1]))
    scale = per_parameter({**SPREAD, "calibration_deg": 1.0}, [20.0])

    def solve(x0: np.ndarray, nfev: int):
        # finite differences of 1%: the joints' dry friction makes the replay slightly rough at finer steps
        return least_squares(residual, x0, bounds=(lo, hi), method="trf", max_nfev=nfev, x_scale=scale,
                             diff_step=1e-2)  # fmt: skip

    first = [latency + k * start_spacing_ms for k in range(-(starts // 2), starts - starts // 2)]
    first = [ms for ms in first if lo[-1] <= ms <= hi[-1]]
    start = np.append(servos, latency)
    probe = max(1, max_nfev // 5) if len(first) > 1 and search_evals == 0 else 0
    other = None
    if search_evals > 0:
        origin = start
        start, _ = global_search(residual, origin, (lo, hi), scale, search_evals, seed, progress)
        max_nfev = max(1, max_nfev // 3)
        if check_evals > 0:
            # finished by the least squares as the first is: an unfinished search ends worse than the first for
            # want of steps, and says nothing then about which arms replay about as well
            other, _ = global_search(residual, origin, (lo, hi), scale, check_evals, seed + 1, progress)
            other = solve(other, max_nfev)
            progress(f"second search, finished: {other.nfev} least-squares steps, cost {other.cost:.1f}")
    if probe:
        start = best_start(solve, servos, first, probe, progress)
    solution = solve(start, max(1, max_nfev - probe))
    progress(f"least squares: {solution.nfev + probe * len(first)} steps, cost {solution.cost:.1f} from "
             f"{0.5 * costs.min():.1f}")  # fmt: skip
    second = {}
    if other is not None:
        if other.cost < solution.cost:  # the second search found the better arm: it is the one identified
            solution, other = other, solution
            progress("the second search's arm replays better: it is the arm")
        second = {"second_search": other.x, "second_cost_ratio": float(other.cost / max(solution.cost, 1e-300))}
    arm = unpack(solution.x[:-1], solution.x[-1])
    return arm, {**posterior(solution, n_data, np.append(weight, 0.0)), "latency_grid_ms": latency_grid_ms,
                 "latency_costs": costs, **second}  # fmt: skip


def best_start(solve, servos: np.ndarray, latencies: list[float], steps: int, progress=print) -> np.ndarray:
    """The least squares from the nominal servos at each latency, `steps` each: where the one that replays best
    ended."""
    trials = [solve(np.append(servos, ms), steps) for ms in latencies]
    best = int(np.argmin([t.cost for t in trials]))
    shown = ", ".join(f"{ms:.0f} ms: {t.cost:.1f}" for ms, t in zip(latencies, trials, strict=True))
    progress(f"least squares from {len(latencies)} latencies, {steps} steps each (cost {shown}): on from "
             f"{latencies[best]:.0f} ms")  # fmt: skip
    return trials[best].x


def posterior(solution, n_data: int, prior_column: np.ndarray) -> dict[str, np.ndarray]:
    """From the least squares' solution (the recording's `n_data` residuals first, then the prior's rows, whose
    Jacobian column per parameter is `prior_column`): each parameter's standard error in its own units and the
    evidence on it."""
    x, jac, res = solution.x, solution.jac, solution.fun
    data_jac, data_res = jac[:n_data], res[:n_data]
    s2 = float(data_res @ data_res) / max(1, n_data - x.size)
    # the posterior covariance (the prior's rows included, so every parameter has one); a parameter is identified
    # when the recording's information on it exceeds the prior's
    column = np.sqrt(np.diag(data_jac.T @ data_jac))
    identified = column > prior_column
    cov = s2 * np.linalg.pinv(jac.T @ jac)
    std_x = np.sqrt(np.clip(np.diag(cov), 0.0, None))
    # standard errors in the parameters' own units (log-scaled ones by the delta method)
    std, i = {}, 0
    for name, joints, log, *_ in FITTED:
        count = len(joints)
        values = np.exp(x[i : i + count]) if log else x[i : i + count]
        std[name] = std_x[i : i + count] * (values if log else 1.0)
        i += count
    std["latency_ms"] = std_x[-1:]
    # the parameter each one trades against most: a recording that fixes only a combination of two (a gain and a
    # force limit on a servo that saturates) leaves them correlated near +-1 whatever their standard errors say
    corr = cov / np.maximum(np.outer(std_x, std_x), 1e-300)
    np.fill_diagonal(corr, 0.0)
    partner = np.argmax(np.abs(corr), axis=1)
    return {**std, "jacobian_column_norm": column, "identified": identified, "active_bound": solution.active_mask != 0,
            "partner": partner, "correlation": corr[np.arange(x.size), partner]}  # fmt: skip


def global_search(residual, x0: np.ndarray, box: tuple[np.ndarray, np.ndarray], scale: np.ndarray, evals: int,
                  seed: int, progress=print) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """CMA-ES on the sum of squared residuals, `evals` replays from `x0`, each coordinate in units of `scale` (one
    standard deviation of the first generation), inside the bounds `box`: the best parameters seen, and (generations,
    2) the replays spent and the best cost so far after each generation."""
    import cma

    lo, hi = box
    options = {"bounds": [list((lo - x0) / scale), list((hi - x0) / scale)], "maxfevals": evals, "seed": seed + 1,
               "verbose": -9}  # fmt: skip
    es = cma.CMAEvolutionStrategy(np.zeros(x0.size), 1.0, options)
    shown, trace = 0, []
    while not es.stop():
        z = es.ask()
        es.tell(z, [float(np.sum(residual(x0 + zi * scale) ** 2)) for zi in z])
        trace.append((es.countevals, es.result.fbest))
        if es.countevals >= shown + evals // 5:
            shown = es.countevals
            progress(f"CMA-ES: {es.countevals}/{evals} replays, best cost {0.5 * es.result.fbest:.1f}")
    best = x0 + np.asarray(es.result.xbest) * scale
    progress(f"CMA-ES: {es.countevals} replays, cost {0.5 * es.result.fbest:.1f}, latency {best[-1]:.1f} ms")
    inside = 1e-6 * (hi - lo)  # the least squares that follows cannot leave a bound it starts on
    return np.clip(best, lo + inside, hi - inside), np.array(trace)
