"""`so101-twin-identify`: the twin's arm fitted to a user's own demonstrations (lerobot_env_so101_twin.identify).

    so101-twin-identify --dataset.repo_id=local/my_demos --dataset.root=data/my_demos --output_dir=outputs/my_arm

Writes, whole or not at all, into --output_dir:
    arm.json        the identified arm (ArmParams' fields): --env.arm_path / --robot.arm_path play it
    report.json     every parameter with its standard error and whether the recording identifies it, the joints'
                    tracking error of held-out episodes before (the nominal twin) and after, what was left out
    tracking.png    recorded against replayed joints, nominal and identified, for the worst held-out episode
    identify.json   the settings it was made with: run again, it does nothing; other settings are refused
"""

import dataclasses
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from lerobot.configs import parser

from so101_core import JOINT_NAMES, MOTOR_KEYS
from so101_run_infra.atomic import atomic_folder, write_json
from so101_run_infra.cli import SettingsRefused, prepare_command_line
from so101_run_infra.dataset_ref import DatasetRef
from so101_run_infra.runs import made_here

from ..arm import LIMITS, ArmParams, check_control_fps
from ..identify import (
    FITTED,
    Episode,
    Replay,
    contact_frames,
    disagree,
    fit,
    jitter_upper_bound,
    parameter_names,
    unpack,
)
from ..scene import CUBE_HALF_SIZE, CUBE_MASS_KG

logger = logging.getLogger(__name__)
RECORD = "identify.json"
MIN_MOVING_FRAMES = 60  # two seconds at 30 fps of joints actually moving


@dataclass
class CubeMeasured:
    """The user's cube, measured by hand: the joints never show it (the frames that touch it are left out)."""

    mass_g: float | None = None  # its mass on a kitchen scale, grams; None: the twin's 30 g
    size_mm: float | None = None  # its edge, millimetres; None: the twin's 30 mm

    def factors(self) -> dict[str, float]:
        """arm.json's cube factors (times the twin's cube), refused before any work where the twin cannot play
        them."""
        out = {}
        for flag, value, nominal, key in (("mass_g", self.mass_g, CUBE_MASS_KG * 1e3, "cube_mass"),
                                          ("size_mm", self.size_mm, 2e3 * CUBE_HALF_SIZE, "cube_size")):  # fmt: skip
            if value is None:
                continue
            lo, hi = LIMITS[key]
            if not np.isfinite(value) or not lo <= value / nominal <= hi:
                raise SettingsRefused(f"--cube.{flag}={value}: the twin plays a cube of {lo * nominal:g} to "
                                      f"{hi * nominal:g} ({lo:g} to {hi:g} times its own {nominal:g})")  # fmt: skip
            out[key] = value / nominal
        return out


@dataclass
class IdentifyConfig:
    # the demonstrations: a LeRobot recording of an SO-101 (real or twin) with `action` and `observation.state`
    dataset: DatasetRef = field(default_factory=DatasetRef)
    output_dir: Path | None = None  # where arm.json, report.json and tracking.png go (written whole)
    # the recording's episodes to use (None: all)
    episodes: list[int] | None = None
    # optional: the recording so101-twin-excite made on the same arm (--excitation.repo_id, --excitation.root), every
    # episode of it fitted along with the demonstrations (none held out: the held-out demonstrations score the fit)
    excitation: DatasetRef = field(default_factory=DatasetRef)
    # every n-th episode (from the first) is held out of the fit, to score the tracking error on; 0: none held out
    holdout_every: int = 5
    # gripper units (0-100) its reading may stay above its target before the frame counts as holding something
    contact_threshold: float = 3.0
    # the latency grid's reach and step, milliseconds
    latency_max_ms: float = 200.0
    latency_step_ms: float = 1000.0 / 60
    # least-squares evaluations (each a Jacobian's worth of replays): a cap on the time it takes
    max_nfev: int = 30
    # The least squares starts from the latency grid's best and from one recording period either side of it, a
    # fifth of --max_nfev each, and goes on from the start that replays best: the grid is searched with the nominal
    # servos, where an arm slower than nominal looks like extra latency. 1: from the grid's best only
    latency_starts: int = 3
    # CMA-ES replays that search every parameter at once before the least squares, which then finishes from the
    # best with a third of --max_nfev (and --latency_starts is not used): a saturating servo replays like a weaker
    # one with more latency, and only a global search tells them apart. 0: the least squares alone
    search_evals: int = 700
    seed: int = 0  # the global search's random seed
    # A second global search from the next seed, this many replays, finished by the least squares as the first is;
    # the better of the two is the arm. A parameter the two disagree on beyond the targets (15% on a servo factor,
    # 0.3 degrees of play, 0.5 of calibration) is reported as not identified where the other ended about as good
    # (within --as_good), and as not confirmed where it ended worse. 0: none
    second_search_evals: int = 350
    # how much larger the other search's squared errors may be and still count as about as good (a fraction)
    as_good: float = 0.1
    threads: int = 2  # MuJoCo rollout threads
    # The loop rate the identified arm plays in: the rate your policy reaches on the arm's computer (lerobot-rollout's
    # --fps, or what its log says it reached), a divisor of the recording's fps. Written to arm.json, not fitted:
    # demonstrations show the teleoperation loop, not the policy's. None: a target every period
    control_fps: int | None = None
    # the cube your demonstrations lift, weighed and measured (--cube.mass_g, --cube.size_mm): written to arm.json as
    # the twin's cube, not fitted. On a hidden arm they were what the fitted arm lacked most (docs/results.md)
    cube: CubeMeasured = field(default_factory=CubeMeasured)

    def __post_init__(self) -> None:
        if self.output_dir is None:
            raise ValueError("--output_dir is required: where arm.json and the report go")
        self.output_dir = Path(self.output_dir)
        if self.holdout_every < 0 or self.holdout_every == 1:
            raise ValueError(f"--holdout_every={self.holdout_every}: 0 (no held-out episodes) or at least 2")
        if self.max_nfev < 1 or self.threads < 1 or self.latency_step_ms <= 0 or self.latency_max_ms < 0:
            raise ValueError("--max_nfev and --threads must be >= 1, --latency_step_ms > 0, --latency_max_ms >= 0")
        if self.second_search_evals < 0 or self.as_good < 0:
            raise ValueError(f"--second_search_evals={self.second_search_evals} and --as_good={self.as_good} must "
                             "be >= 0")  # fmt: skip
        if self.search_evals < 0:
            raise ValueError(f"--search_evals={self.search_evals}: 0 (the least squares alone) or more replays")
        if self.latency_starts < 1:
            raise ValueError(f"--latency_starts={self.latency_starts}: at least 1 (the latency grid's best)")


def load_recording(
    ref: DatasetRef, flag: str, episodes: list[int] | None, contact_threshold: float
) -> tuple[list[Episode], int]:
    """A recording's episodes, refused before any work when it cannot be replayed (naming `--<flag>` and what is
    missing)."""
    meta = ref.metadata()
    where = f"{ref.repo_id} ({ref.root})"
    for key in ("action", "observation.state"):
        if key not in meta.features:
            raise SettingsRefused(f"--{flag} {where} has no '{key}': identification replays the recorded targets "
                                  "('action') against where the follower was ('observation.state')")  # fmt: skip
        names = meta.features[key].get("names")
        names = next(iter(names.values())) if isinstance(names, dict) else names
        if list(names or []) != list(MOTOR_KEYS):
            raise SettingsRefused(f"--{flag} {where}: '{key}' names {names}, not an SO-101's {list(MOTOR_KEYS)}")
    fps = meta.fps
    if not isinstance(fps, int) or not 5 <= fps <= 250:
        raise SettingsRefused(f"--{flag} {where} runs at {fps} fps: the twin replays whole frames of 5-250 fps")
    table = ref.open().hf_dataset.with_format("numpy")
    state = np.asarray(table["observation.state"], dtype=np.float64)
    action = np.asarray(table["action"], dtype=np.float64)
    index = np.asarray(table["episode_index"])
    out = []
    present = np.unique(index)
    missing = sorted(set(episodes or []) - set(present.tolist()))
    if missing:
        raise SettingsRefused(f"--episodes names {missing}, which --{flag} {where} does not hold")
    for k in present if episodes is None else sorted(episodes):
        rows = index == k
        s, a = state[rows], action[rows]
        used = ~contact_frames(s, a, contact_threshold)
        used[0] = False  # the start state is given, not replayed
        out.append(Episode(int(k), s, a, used))
    return out, fps


def load_episodes(cfg: IdentifyConfig) -> tuple[list[Episode], int]:
    """The demonstrations' episodes, refused before any work when they cannot be replayed."""
    episodes, fps = load_recording(cfg.dataset.require("dataset"), "dataset", cfg.episodes, cfg.contact_threshold)
    moving = sum(int((np.abs(np.diff(e.state, axis=0)).max(axis=1) > 0.1).sum()) for e in episodes)
    if moving < MIN_MOVING_FRAMES:
        raise SettingsRefused(f"--dataset {cfg.dataset.repo_id} ({cfg.dataset.root}) has {moving} frames where a "
                              f"joint moves: identification needs at least {MIN_MOVING_FRAMES}")  # fmt: skip
    return episodes, fps


def load_excitation(cfg: IdentifyConfig, fps: int) -> list[Episode]:
    """The excitation's episodes (none without --excitation.repo_id), at the demonstrations' fps."""
    if not cfg.excitation.repo_id:
        return []
    episodes, rate = load_recording(cfg.excitation, "excitation", None, cfg.contact_threshold)
    if rate != fps:
        raise SettingsRefused(f"--excitation {cfg.excitation.repo_id} runs at {rate} fps, the demonstrations at {fps}: "
                              f"record it with so101-twin-excite --fps={fps}")  # fmt: skip
    return episodes


def split(episodes: list[Episode], every: int) -> tuple[list[Episode], list[Episode]]:
    if every == 0 or len(episodes) < 2:
        return episodes, []
    held = [e for i, e in enumerate(episodes) if i % every == 0]
    return [e for i, e in enumerate(episodes) if i % every != 0], held


NAMES = [*parameter_names(), "latency_ms"]
NOT_IDENTIFIED_WHY = (
    "the recording tells less about it than the prior at the nominal arm: its value is the prior's as much as the "
    "recording's, within the prior's spread of nominal"
)
JITTER_WHY = (
    "the replay is deterministic: the residual it leaves would take {bound:.0f} ms of jitter to explain, but what the "
    "fit missed counts the same (latency_jitter_upper_bound_ms); arm.json plays none"
)
CUBE_WHY = (
    "the joints do not show the cube: the frames that touch it are left out. arm.json plays the twin's cube; "
    "give --cube.{flag}"
)


# A second search finished as the first is, that ends about as good, shows an arm the recording does not tell
# apart. One that ends worse shows nothing either way: it may sit in a worse basin or on a slope, so a value the two
# disagree on is not claimed (the report then errs on the side of caution)
SECOND_AS_GOOD = (
    "a second global search, finished as the first, ended about as good ({ratio:.2f} of the identified "
    "arm's squared errors) at {value:.2f}: the recording does not tell the two arms apart"
)
SECOND_WORSE = (
    "not confirmed: a second global search, finished as the first, ended at {ratio:.2f} of the identified "
    "arm's squared errors with {value:.2f}; whether an arm that replays as well puts it there too, the "
    "two searches do not show"
)
UNREACHED = 0.01  # a force limit the identified servo exceeds on fewer of the replay's steps than this is unseen
UNREACHED_WHY = ("the identified servo asks for more than this limit on {share:.1f}% of the replay's steps: the "
                 "recording shows only that the limit is above what it needed")  # fmt: skip
# A servo's gain, damping and force limit act together (past a fraction of a degree of error it pushes at its limit
# whatever its gain), and a calibration offset shows only as gravity's pull against that servo: where one of them is
# left open, the best value of the others moves with it. On the hidden arm, wrist roll's force limit replays best at
# the true 0.70 beside the true gain and at 0.55-0.62 beside the fitted one (docs/results.md)
SERVO = ("gain", "damping", "force", "gripper_force")
TIED_WHY = (
    "not confirmed: it trades against {open} of the same joint, which the recording leaves open (a servo's gain, "
    "damping and force limit act together, and a calibration offset shows only against them)"
)


def unidentified(parameters: dict, saturation: dict[str, float], second: dict | None = None) -> dict[str, str]:
    """Parameters the recording leaves open, and why."""
    out, unreached = {}, set()
    for name, rows in parameters.items():
        for r in rows:
            key = f"{name}[{r['joint']}]"
            if not r["identified"]:
                out[key] = NOT_IDENTIFIED_WHY
            elif r["at_bound"]:
                out[key] = "it sits on its bound"
            elif second and disagree(name, r["value"], r["second_search"]):
                out[key] = (SECOND_AS_GOOD if second["as_good"] else SECOND_WORSE).format(
                    ratio=second["cost_ratio"], value=r["second_search"]
                )
            elif name in ("force", "gripper_force") and saturation[r["joint"]] < UNREACHED:
                out[key] = UNREACHED_WHY.format(share=100 * saturation[r["joint"]])
                unreached.add(key)
    # a force limit the servo never reaches ties nothing: it never acts on the replay
    return out | tied(parameters, out, set(out) - unreached)


def tied(parameters: dict, open_: dict[str, str], ambiguous: set[str]) -> dict[str, str]:
    """The servo factors and calibration offset of a joint with a servo factor in `ambiguous` (left open because
    arms that replay alike disagree on it), unless already in `open_`, and why."""
    out = {}
    for name in (*SERVO, "calibration_deg"):
        for r in parameters.get(name, []):
            key = f"{name}[{r['joint']}]"
            left = [f"{n}[{r['joint']}]" for n in SERVO if f"{n}[{r['joint']}]" in ambiguous]
            if key not in open_ and left:
                out[key] = TIED_WHY.format(open=left[0])
    return out


def second_search(info: dict, as_good: float) -> dict | None:
    """The other search's arm and how its squared errors compare with the identified arm's (>= 1)."""
    if "second_search" not in info:
        return None
    x, ratio = info["second_search"], float(info["second_cost_ratio"])
    return {"values": unpack(x[:-1], x[-1]).as_dict(), "cost_ratio": round(ratio, 3), "as_good": ratio <= 1 + as_good}


def report(arm: ArmParams, info: dict, nominal_rmse, fitted_rmse, episodes, fit_set, held, saturation,
           jitter: tuple[float, dict], as_good: float = 0.1) -> dict:  # fmt: skip
    values, out, i = arm.as_dict(), {}, 0
    second = second_search(info, as_good)
    for name, joints, *_ in FITTED:
        rows = []
        for k, j in enumerate(joints):
            identified = bool(info["identified"][i])
            rows.append({
                "joint": JOINT_NAMES[j], "value": float(np.atleast_1d(values[name])[k]), "std": float(info[name][k]),
                "identified": identified, "jacobian_column_norm": float(info["jacobian_column_norm"][i]),
                "at_bound": bool(info["active_bound"][i]),
                "trades_against": NAMES[int(info["partner"][i])],
                "correlation": round(float(info["correlation"][i]), 3),
            })  # fmt: skip
            if second:  # where an arm about as good found it
                rows[-1]["second_search"] = float(np.atleast_1d(second["values"][name])[k])
            i += 1
        out[name] = rows
    left_out = sum(int((~e.used[1:]).sum()) for e in episodes)
    segments = sum(int(np.sum(np.diff(np.r_[0, (~e.used[1:]).astype(int)]) == 1)) for e in episodes)
    return {
        "parameters": out,
        "latency_ms": values["latency_ms"],
        "latency_std_ms": float(info["latency_ms"][0]),
        "latency_trades_against": NAMES[int(info["partner"][-1])],
        "latency_correlation": round(float(info["correlation"][-1]), 3),
        "latency_grid_ms": info["latency_grid_ms"].tolist(),
        "latency_grid_cost": info["latency_costs"].tolist(),
        "not_identified": {
            **unidentified(out, saturation, second),
            "latency_jitter_ms": JITTER_WHY.format(bound=jitter[0]),
        },
        # the jitter that all of the fitted arm's residual would take (an upper bound), and the spread each jitter
        # puts between the arm's replays that it is read from
        "latency_jitter_upper_bound_ms": round(jitter[0], 1),
        # the other global search (finished as the first): its squared errors over the identified arm's, its latency
        "second_search": None
        if second is None
        else {k: second[k] for k in ("cost_ratio", "as_good")} | {"latency_ms": second["values"]["latency_ms"]},
        "latency_jitter_spread": jitter[1],
        # per joint, the share of the replay's physics steps (the fitted episodes, identified arm) in which the servo
        # asks for more than its force limit: a gain shows below the limit, a force limit only at it
        "servo_saturation": saturation,
        "tracking_rmse_held_out": {
            "nominal": dict(zip(JOINT_NAMES, np.round(nominal_rmse, 4).tolist(), strict=True)),
            "identified": dict(zip(JOINT_NAMES, np.round(fitted_rmse, 4).tolist(), strict=True)),
        },
        "episodes": {"fit": [e.index for e in fit_set], "held_out": [e.index for e in held]},
        "contact": {
            "frames_left_out": left_out,
            "segments_left_out": segments,
            "frames_scored": int(sum(int(e.used.sum()) for e in episodes)),
        },
    }


def plot(path: Path, episode: Episode, nominal: np.ndarray, fitted: np.ndarray, fps: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = np.arange(len(episode.state)) / fps
    fig, axes = plt.subplots(2, 3, figsize=(13, 6), sharex=True)
    for j, ax in enumerate(axes.ravel()):
        ax.plot(t, episode.state[:, j], "k", lw=1.6, label="recorded")
        ax.plot(t, nominal[: len(t), j], "C0", lw=1, label="nominal twin")
        ax.plot(t, fitted[: len(t), j], "C3", lw=1, label="identified twin")
        ax.plot(t, episode.action[:, j], "0.6", lw=0.8, ls="--", label="target")
        ax.fill_between(t, *ax.get_ylim(), where=~episode.used, color="0.9", step="mid", label="left out (contact)")
        ax.set_title(JOINT_NAMES[j])
    axes[0, 0].legend(fontsize=7)
    fig.suptitle(f"episode {episode.index}: recorded joints against the replayed ones (s)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def identify(cfg: IdentifyConfig) -> dict:
    left = ("dataset", "output_dir", "threads", "excitation")
    settings = {"dataset": str(cfg.dataset.repo_id), "root": str(cfg.dataset.root), **{
        k: v for k, v in asdict(cfg).items() if k not in left}}  # fmt: skip
    if cfg.control_fps is None:  # as identifications made before the field recorded it
        del settings["control_fps"]
    if cfg.latency_starts == 1:  # the fit made before the field: such a folder is its run again
        del settings["latency_starts"]
    if cfg.search_evals == 0:  # the least squares alone, as fits made before the global search
        del settings["search_evals"], settings["seed"], settings["second_search_evals"], settings["as_good"]
    elif cfg.second_search_evals == 0:  # one global search, as fits made before the second
        del settings["second_search_evals"], settings["as_good"]
    else:  # a folder whose second search was left unfinished was made another way
        settings["second_search"] = "finished"
    if cfg.cube.mass_g is None and cfg.cube.size_mm is None:  # the twin's cube, as identifications before the flags
        del settings["cube"]
    if cfg.excitation.repo_id:
        settings["excitation"] = {"repo_id": cfg.excitation.repo_id, "root": str(cfg.excitation.root)}
    if made_here(cfg.output_dir, RECORD, settings, "so101-twin-identify", "an identification"):
        print(f"{cfg.output_dir}: already identified with these settings (arm.json); nothing to do")
        return json.loads((cfg.output_dir / "report.json").read_text())
    start = time.perf_counter()
    cube = cfg.cube.factors()
    episodes, fps = load_episodes(cfg)
    try:  # before the fit: the arm file must play at the recording's fps
        check_control_fps(cfg.control_fps, fps, "control_fps")
    except ValueError as err:
        raise SettingsRefused(str(err)) from None
    excitation = load_excitation(cfg, fps)
    fit_set, held = split(episodes, cfg.holdout_every)
    fit_set = fit_set + excitation
    print(f"[identify] {len(episodes)} episodes at {fps} fps: {len(fit_set) - len(excitation)} fitted, {len(held)} "
          f"held out" + (f"; {len(excitation)} of the excitation fitted too" if excitation else ""),
          flush=True)  # fmt: skip
    grid = np.arange(0.0, cfg.latency_max_ms + 1e-9, cfg.latency_step_ms)
    replay = Replay(fit_set, fps, cfg.threads)
    arm, info = fit(replay, grid, cfg.max_nfev,
                    progress=lambda m: print(f"[identify] {m}", flush=True), starts=cfg.latency_starts,
                    start_spacing_ms=1000.0 / fps, search_evals=cfg.search_evals, seed=cfg.seed,
                    check_evals=cfg.second_search_evals)  # fmt: skip
    scored = Replay(held or fit_set, fps, cfg.threads)
    nominal_rmse, fitted_rmse = scored.rmse_per_joint(ArmParams()), scored.rmse_per_joint(arm)
    shares = replay.saturation(arm)
    saturation = {j: round(float(v), 4) for j, v in zip(JOINT_NAMES, shares, strict=True)}
    jitter = jitter_upper_bound(replay, arm, seed=cfg.seed)
    result = report(arm, info, nominal_rmse, fitted_rmse, episodes + excitation, fit_set, held, saturation, jitter,
                    cfg.as_good)  # fmt: skip
    if excitation:  # the fit set's list names the demonstrations; the excitation's episodes are its own
        result["episodes"]["fit"] = [e.index for e in fit_set[: len(fit_set) - len(excitation)]]
        result["episodes"]["excitation"] = [e.index for e in excitation]
    result["cube"] = {"measured": asdict(cfg.cube), "factors": cube}
    for key in ("cube_mass", "cube_size"):
        if key not in cube:
            result["not_identified"][key] = CUBE_WHY.format(flag="mass_g" if key == "cube_mass" else "size_mm")
    arm = dataclasses.replace(arm, **cube)
    result["seconds"] = round(time.perf_counter() - start, 1)
    nominal, fitted = scored.run(ArmParams()), scored.run(arm)
    errors = [np.sqrt(np.mean((fitted[k, : len(e.state)] - e.state)[e.used] ** 2)) for k, e in
              enumerate(scored.episodes)]  # fmt: skip
    worst = int(np.argmax(errors))
    with atomic_folder(cfg.output_dir) as out:
        write_json(out / "arm.json", {**arm.as_dict(), "control_fps": cfg.control_fps})
        write_json(out / "report.json", result)
        plot(out / "tracking.png", scored.episodes[worst], nominal[worst], fitted[worst], fps)
        write_json(out / RECORD, settings)
    drop = 1 - fitted_rmse.mean() / nominal_rmse.mean()
    print(f"[identify] {cfg.output_dir}/arm.json in {result['seconds']:.0f} s; held-out tracking error "
          f"{nominal_rmse.mean():.2f} -> {fitted_rmse.mean():.2f} (follower units, {100 * drop:.0f}% lower); latency "
          f"{arm.latency_ms:.0f} ms; play it with --env.arm_path / --robot.arm_path")  # fmt: skip
    return result


@parser.wrap()
def identify_cli(cfg: IdentifyConfig) -> dict:
    return identify(cfg)


def main() -> None:
    prepare_command_line()
    identify_cli()


if __name__ == "__main__":
    main()
