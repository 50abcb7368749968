"""How each episode of an arm_conditions cell ended: the cell's lerobot-eval command run again in this process with
the twin watched at every step, and each episode's grasp told in millimetres.

    .venv/bin/python benchmarks/arm_family_grasps.py \
        --cell=outputs/arm/tuning/clearance3_scaled/demo_scaled3_s11/unseen_family

lerobot-eval keeps each episode's return and success; why an episode failed (the jaws never on the cube, closed
above its centre with the fixed finger on its top, or the cube lost on the way up) is in the twin's state, which it
does not keep. This runs the command at the top of the cell's log (`<cell>.log`, as arm_conditions writes it) again,
into `--output_dir` (its videos included), with the twin's env class watched: after every step, where the grasp point
is from the cube's centre, which fingers touch the cube, how high the cube is and how far it has tipped. The twin
and the policy are deterministic given the command, so the run gives the cell's successes again, episode by
episode; a mismatch is reported (another machine kind's floating point can differ).

Each episode is put in one class:
- `lifted`: the cell's success (grasped, the cube's bottom 5 cm over the table);
- `no grasp`: both fingers never touched the cube at once;
- `not off the table`: grasped, but the cube never rose 1 cm;
- `dropped`: grasped and risen at least 1 cm, but never to 5 cm while held.
The columns give what tells them apart, from when both fingers first touch the cube: the grasp point's height over
the cube's centre (the fixed finger on the cube's top reads about its half-size or more) and its offset along the
jaws' closing direction (positive: towards the moving jaw, the cube nearer the fixed finger); then the cube's largest
tilt, the jaws' closest reading (near 0: closed on nothing), and whether the policy re-opened the jaws after the grasp
(its gripper target rising 5 units over its lowest since then: how many steps after the grasp, and how wide).
"""

import json
import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from lerobot.configs import parser

from so101_run_infra.atomic import write_json, write_text
from so101_run_infra.cli import prepare_command_line

LIFT_M = 0.05  # the twin's LiftCube success height (simulation.LIFT_HEIGHT)
OFF_TABLE_M = 0.01
CLASSES = ("lifted", "no grasp", "not off the table", "dropped")
# one row per step: grasp point minus cube centre (m) along the jaws' closing direction (from the fixed finger to the
# moving jaw) and up; fixed finger on the cube, moving finger on the cube, lift height (m), gripper reading
# (0-100), cube tilt (degrees), the gripper's target sent (0-100)
STEP_FIELDS = ("along", "dz", "fixed", "moving", "lift", "gripper", "tilt", "command")
REOPEN_UNITS = 5.0  # a re-open: the gripper's target rising this far over its lowest since the first grasp


@dataclass
class ArmFamilyGraspsConfig:
    # an arm_conditions cell (a folder holding eval_info.json, its log `<cell>.log` beside it)
    cell: Path | None = None
    # where the replay's lerobot-eval output, grasps.json and grasps.md go; None: `<cell>_grasps` beside the cell
    output_dir: Path | None = None

    def __post_init__(self) -> None:
        if self.cell is None:
            raise ValueError("--cell is missing: give an arm_conditions cell, outputs/arm/<run>/<row>_s<seed>/<column>")


def cell_command(cell: Path) -> tuple[list[str], list[bool]]:
    """The lerobot-eval flags at the top of the cell's log (without --output_dir) and the cell's successes."""
    info, log = cell / "eval_info.json", cell.with_suffix(".log")
    for path in (info, log):
        if not path.is_file():
            raise FileNotFoundError(f"--cell {cell}: {path} is missing (an arm_conditions cell has both)")
    words = shlex.split(log.read_text(errors="replace").replace("\r", "\n").splitlines()[0])
    if not words or not words[0].endswith("lerobot-eval"):
        raise ValueError(f"{log}: its first line is not a lerobot-eval command (arm_conditions writes it there)")
    flags = [w for w in words[1:] if not w.startswith("--output_dir=")]
    return flags, json.loads(info.read_text())["per_task"][0]["metrics"]["successes"]


def watch_twin(episodes: list[dict]) -> None:
    """Record the twin's state after every step of SO101TwinEnv into `episodes`, one dict per reset, keyed by the
    episode's seed. The env class is wrapped here, not changed, because lerobot-eval builds the env itself."""
    from lerobot_env_so101_twin import env as twin_env

    reset, step = twin_env.SO101TwinEnv.reset, twin_env.SO101TwinEnv.step

    def watched_reset(self, *args, **kwargs):
        out = reset(self, *args, **kwargs)
        episodes.append({"seed": self.twin.episode_seed, "half_size_mm": 1000 * self.twin.cube_half_size,
                         "arm": self.twin.arm_record().get("params", {}), "steps": []})  # fmt: skip
        return out

    def watched_step(self, action):
        out = step(self, action)
        twin = self.twin
        offset = twin.grasp_point - twin.cube_position
        along = float(offset @ twin.closing_direction)
        _, x, y, _ = twin.cube_quat
        tilt = float(np.degrees(np.arccos(np.clip(1 - 2 * (x * x + y * y), -1.0, 1.0))))
        fixed, moving = twin._touching(twin._static_finger_geoms), twin._touching(twin._moving_finger_geoms)
        episodes[-1]["steps"].append([along, float(offset[2]), float(fixed), float(moving), twin.lift_height(),
                                      float(twin.follower_positions()[5]), tilt, float(action[5])])  # fmt: skip
        return out

    twin_env.SO101TwinEnv.reset, twin_env.SO101TwinEnv.step = watched_reset, watched_step


def episode_row(steps: np.ndarray) -> dict:
    """One episode's class and grasp figures from its steps (rows of STEP_FIELDS)."""
    col = {name: steps[:, i] for i, name in enumerate(STEP_FIELDS)}
    held = (col["fixed"] > 0) & (col["moving"] > 0)
    lifted_held = col["lift"][held]
    if not held.any():
        kind = "no grasp"
    elif (lifted_held > LIFT_M).any():
        kind = "lifted"
    elif col["lift"].max() < OFF_TABLE_M:
        kind = "not off the table"
    else:
        kind = "dropped"
    first = int(np.argmax(held)) if held.any() else None
    reopen, reopen_to = None, None
    if first is not None:
        command = col["command"][first:]
        rise = command - np.minimum.accumulate(command)
        if (rise >= REOPEN_UNITS).any():
            reopen = int(np.argmax(rise >= REOPEN_UNITS))
            reopen_to = round(float(command[reopen:].max()), 1)
    return {
        "class": kind,
        "first_grasp_step": first,
        "grasp_height_mm": None if first is None else round(1000 * float(col["dz"][first]), 1),
        "grasp_along_mm": None if first is None else round(1000 * float(col["along"][first]), 1),
        "max_lift_mm": round(1000 * float(col["lift"].max()), 1),
        "max_tilt_deg": round(float(col["tilt"].max()), 1),
        "min_gripper": round(float(col["gripper"].min()), 1),
        "reopen_steps": reopen,
        "reopen_to": reopen_to,
    }


def grasps_table(rows: list[dict]) -> str:
    lines = ["| episode | cell's success | class | cube size | friction | gripper force | first grasp: step, height "
             "over centre, along the closing jaws (mm) | cube's half-size (mm) | max lift (mm) | max tilt (°) | "
             "jaws' closest | re-opened: steps after the grasp, to |",
             "|---:|---|---|---:|---:|---:|---|---:|---:|---:|---:|---|"]  # fmt: skip
    for r in rows:
        arm, first = r["arm"], r["first_grasp_step"]
        grasp = "-" if first is None else f"{first}, {r['grasp_height_mm']:+.0f}, {r['grasp_along_mm']:+.0f}"
        cube = f"{arm.get('cube_size', 1.0):.3f} | {arm.get('cube_friction', 1.0):.2f}"
        reopen = "-" if r["reopen_steps"] is None else f"{r['reopen_steps']}, {r['reopen_to']:.0f}"
        lines.append(
            f"| {r['episode']} | {'yes' if r['cell_success'] else 'no'} | {r['class']} | {cube} | "
            f"{arm.get('gripper_force', 1.0):.2f} | {grasp} | "
            f"{r['half_size_mm']:.1f} | {r['max_lift_mm']:.0f} | {r['max_tilt_deg']:.0f} | {r['min_gripper']:.1f} | "
            f"{reopen} |"
        )
    counts = {k: sum(r["class"] == k for r in rows) for k in CLASSES}
    lines += ["", ", ".join(f"{k}: {n}" for k, n in counts.items())]
    return "\n".join(lines) + "\n"


@parser.wrap()
def arm_family_grasps(cfg: ArmFamilyGraspsConfig) -> list[dict]:
    cell = Path(cfg.cell)
    flags, successes = cell_command(cell)
    out = Path(cfg.output_dir) if cfg.output_dir is not None else cell.with_name(cell.name + "_grasps")
    seed = next((int(m.group(1)) for f in flags if (m := re.fullmatch(r"--seed=(\d+)", f))), None)
    if seed is None:
        raise ValueError(f"{cell.with_suffix('.log')}: its command has no --seed=N; the episodes are its seed onwards")
    episodes: list[dict] = []
    watch_twin(episodes)
    from lerobot.scripts import lerobot_eval

    sys.argv = ["lerobot-eval", *flags, f"--output_dir={out / 'eval'}"]
    lerobot_eval.main()
    by_seed = {}
    for episode in episodes:  # later resets of one seed are the vector env's, past the episode
        by_seed.setdefault(episode["seed"], episode)
    rows = []
    for i, success in enumerate(successes):
        episode = by_seed.get(seed + i)
        if episode is None or not episode["steps"]:
            raise RuntimeError(f"the replay of {cell} ran no episode with seed {seed + i}")
        row = episode_row(np.asarray(episode["steps"]))
        rows.append({"episode": i, "seed": seed + i, "cell_success": bool(success), "arm": episode["arm"],
                     "half_size_mm": episode["half_size_mm"], **row})  # fmt: skip
    mismatched = [r["episode"] for r in rows if (r["class"] == "lifted") != r["cell_success"]]
    text = grasps_table(rows)
    if mismatched:
        text += f"\nThe replay differs from the cell at episodes {mismatched} (another kind's floating point?)\n"
    write_json(out / "grasps.json", rows)
    write_text(out / "grasps.md", text)
    print(text)
    return rows


def main() -> None:
    prepare_command_line(plugins=True)
    arm_family_grasps()


if __name__ == "__main__":
    main()
