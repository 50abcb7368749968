"""What an arm family's failures have in common: the episodes of `benchmarks/arm_conditions.py` cells under a family
(`--env.arm=unseen` or `varied`), pooled, split at each drawn factor's median, with the success of either half.

    .venv/bin/python benchmarks/arm_family_split.py \
        --cells='[outputs/arm/step_from_sent/lead_sent_s1/unseen_family,outputs/arm/step_from_sent/lead_sent_s2/unseen_family]'

The twin logs each episode's arm as it resets it (`so101_twin episode seed S: arm {...}` in lerobot-eval's log, which
arm_conditions keeps beside the cell as `<cell>.log`); the cell's eval_info.json holds each episode's success in the
order of its seeds, `--seed`, `--seed`+1, ... A factor drawn per joint is split at the median of its joints' mean
absolute value (calibration offsets of either sign count by their size). A split is an association over the
episodes, not an effect: the family draws every factor at once, so one that costs shows beside any it happens to
travel with, and cells of one seed (`--seed`) draw the same arms, so pooling training seeds repeats them (the table
counts the distinct arms). A factor alone at a set value is arm_conditions' own column.
"""

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from lerobot.configs import parser

from so101_run_infra.atomic import write_text
from so101_run_infra.cli import prepare_command_line
from so101_run_infra.stats import newcombe, wilson

ARM_LINE = re.compile(r"so101_twin episode seed (\d+): arm (\{.*\})")


@dataclass
class ArmFamilySplitConfig:
    # arm_conditions cells under an arm family (folders holding eval_info.json, each with its log beside it), pooled
    cells: list[Path] = field(default_factory=list)
    # the factors to split by (keys of the arm's params: cube_size, latency_ms, ...); empty: every one that varies
    factors: list[str] = field(default_factory=list)
    # where the table goes as markdown too; None: printed only
    output_path: Path | None = None

    def __post_init__(self) -> None:
        if not self.cells:
            raise ValueError("--cells is empty: give '[outputs/arm/<run>/<row>_<seed>/unseen_family,...]'")


def cell_episodes(cell: Path) -> list[tuple[bool, dict]]:
    """Each episode's success and the arm the twin drew for it, in the cell's episode order."""
    info, log = cell / "eval_info.json", cell.with_suffix(".log")
    for path in (info, log):
        if not path.is_file():
            raise FileNotFoundError(f"--cells entry {cell}: {path} is missing (an arm_conditions cell has both)")
    successes = json.loads(info.read_text())["per_task"][0]["metrics"]["successes"]
    text = log.read_text(errors="replace").replace("\r", "\n")
    seed = re.search(r"--seed=(\d+)", text.splitlines()[0])
    if seed is None:
        raise ValueError(f"{log}: its first line is not the lerobot-eval command with --seed=N")
    arms: dict[int, dict] = {}
    for match in ARM_LINE.finditer(text):  # later lines of one seed are the vector env's resets past the episode
        arms.setdefault(int(match.group(1)), json.loads(match.group(2))["params"])
    first = int(seed.group(1))
    missing = [first + i for i in range(len(successes)) if first + i not in arms]
    if missing:
        raise ValueError(
            f"{log}: no arm logged for episode seeds {missing[:5]} (was the cell run under an arm family?)"
        )
    return [(bool(s), arms[first + i]) for i, s in enumerate(successes)]


def factor_value(value: float | list[float]) -> float:
    return float(np.mean(np.abs(value))) if isinstance(value, list) else float(value)


def split_table(episodes: list[tuple[bool, dict]], factors: list[str]) -> str:
    keys = factors or sorted(episodes[0][1])
    unknown = [k for k in keys if k not in episodes[0][1]]
    if unknown:
        raise ValueError(
            f"--factors has {unknown}, which the arm record does not hold; it holds {sorted(episodes[0][1])}"
        )
    success = np.array([s for s, _ in episodes])
    arms = len({json.dumps(arm, sort_keys=True) for _, arm in episodes})
    lines = [f"{len(episodes)} episodes of {arms} distinct arms, {int(success.sum())} lifted; each factor split at "
             "its median", "",
             "| factor | median | at or below: lifted | above: lifted | above minus below (Newcombe 95%) |",
             "|---|---:|---|---|---|"]  # fmt: skip
    for key in keys:
        values = np.array([factor_value(arm[key]) for _, arm in episodes])
        median = float(np.median(values))
        low = values <= median
        if low.all():  # one value for every episode: nothing to split (a 10 Hz loop on every `unseen` arm)
            lines.append(f"| {key} | {median:.3g} | all the same | | |")
            continue
        below, above = (wilson(int(success[m].sum()), int(m.sum())) for m in (low, ~low))
        lines.append(f"| {key} | {median:.3g} | {below} | {above} | {newcombe(above, below)} |")
    return "\n".join(lines) + "\n"


@parser.wrap()
def arm_family_split(cfg: ArmFamilySplitConfig) -> str:
    episodes = [episode for cell in cfg.cells for episode in cell_episodes(Path(cell))]
    text = split_table(episodes, cfg.factors)
    if cfg.output_path is not None:
        write_text(Path(cfg.output_path), text)
    print(text)
    return text


def main() -> None:
    prepare_command_line()
    arm_family_split()


if __name__ == "__main__":
    main()
