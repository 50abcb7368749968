"""so101-twin-record split over the tasks of a SLURM array: what `so101-submit --stage=record` runs.

so101-submit starts this module by name (as it starts HLRP's stages: it imports no twin), with so101-twin-record's own
flags and three of its own:

    python -m lerobot_env_so101_twin.commands.record_array --array_tasks=N <so101-twin-record flags>
        the plan, on the submitting machine: refuse bad input, say so if the root is already recorded with these
        settings, else stage the recording exactly as so101-twin-record does and print the plan (one line)
    python -m lerobot_env_so101_twin.commands.record_array --array_tasks=N --array_task=I --array_claim=T <flags>
        task I of N: record the shards of its contiguous group not yet finished in the staging folder, then, when
        every shard of the recording is there, merge them into the root as so101-twin-record does. Of the tasks
        that find every shard there, the one that claims `merge-T` in the staging folder merges; the others exit.

The staging folder, its manifest, the shards and the merge are so101-twin-record's own (record.py), so an array
stopped halfway resumes when it is submitted again, or when so101-twin-record runs with the same settings on one
machine, and both say "already recorded" once the root is there.
"""

import json
import logging
import sys
from pathlib import Path

from lerobot.configs import parser
from lerobot.utils.utils import init_logging

from so101_run_infra.atomic import claim_once
from so101_run_infra.cli import SettingsRefused, prepare_command_line

from .record import (
    MANIFEST,
    Shard,
    TwinRecordConfig,
    _already_recorded,
    _manifest,
    _merge,
    _prepare,
    _Run,
    _run_shards,
    shards_for,
)

logger = logging.getLogger(__name__)

ARRAY_FLAGS = ("array_tasks", "array_task", "array_claim")
PLAN_PREFIX = "so101-record-plan: "  # the plan's line on stdout, which LeRobot's and the recorder's output share


def _finished(stage: Path, shard: Shard) -> bool:
    return (stage / shard.name / "meta" / "info.json").exists()  # what so101-twin-record counts as finished


def array_size(cfg: TwinRecordConfig, tasks: int | None) -> int:
    """The array's number of tasks: `tasks`, which must divide the recording's shards into equal groups, or, when
    None, one task per shard."""
    shards = len(shards_for(0, cfg.dataset.num_episodes, cfg.episodes_per_shard))
    if tasks is None:
        return shards
    if tasks < 1 or shards % tasks:
        divisors = ", ".join(str(d) for d in range(1, shards + 1) if shards % d == 0)
        raise SettingsRefused(
            f"--array_tasks={tasks} does not divide the recording's {shards} shards (--dataset.num_episodes="
            f"{cfg.dataset.num_episodes} in shards of --episodes_per_shard={cfg.episodes_per_shard}): use one of "
            f"{divisors}"
        )
    return tasks


def task_shards(shards: list[Shard], task: int, tasks: int) -> list[Shard]:
    """Task `task`'s contiguous group of the recording's `shards` (`tasks` divides their number)."""
    per_task = len(shards) // tasks
    return shards[task * per_task : (task + 1) * per_task]


def plan(cfg: TwinRecordConfig, tasks: int | None) -> dict:
    """Check the array and stage the recording as so101-twin-record would (refusing a root or staging folder it would
    refuse); the array's size and what is already recorded. Run before anything is submitted."""
    if cfg.dataset.push_to_hub:
        raise SettingsRefused(
            "--dataset.push_to_hub=true is not for an array (its tasks run where there may be no network): record "
            "without it, then push the merged root from a machine that can reach the Hub"
        )
    size = array_size(cfg, tasks)
    done = _already_recorded(cfg)
    if done is not None:
        return {**done, "root": str(cfg.root.resolve()), "tasks": 0}
    cfg.driver.check()
    run = _prepare(cfg)
    return {
        "root": str(cfg.root.resolve()),
        "already_recorded": False,
        "tasks": size,
        "shards": len(run.shards),
        "finished_shards": sum(_finished(run.stage, s) for s in run.shards),
    }


def staged_run(cfg: TwinRecordConfig) -> _Run | None:
    """The recording `plan` staged for `cfg` (its manifest must match); None when nothing is staged."""
    stage = cfg.root.with_name(f".{cfg.root.name}.partial")  # the folder record._prepare stages in
    try:
        staged = json.loads((stage / MANIFEST).read_text())
    except FileNotFoundError:
        return None
    first_episode = staged.get("first_episode", 0)
    if staged != _manifest(cfg, first_episode):
        raise SettingsRefused(
            f"{stage} holds a recording staged with other settings: this task's flags differ from the array's "
            "submission; submit the array again"
        )
    log_dir = Path(cfg.log_dir) if cfg.log_dir else stage / "logs"
    shards = shards_for(first_episode, cfg.dataset.num_episodes, cfg.episodes_per_shard)
    return _Run(first_episode, stage, shards, log_dir)


def merge_when_complete(cfg: TwinRecordConfig, run: _Run, claim: str, owner: str) -> dict | None:
    """Merge the shards into the root as so101-twin-record does, if every shard is there and `owner` is the first to
    claim this merge; the merged dataset's meta/info.json, or None when another task merges or shards are missing."""
    missing = [s.name for s in run.shards if not _finished(run.stage, s)]
    if missing:
        logger.info("%d of %d shards still to record: the task that finishes the last one merges", len(missing),
                    len(run.shards))  # fmt: skip
        return None
    winner = claim_once(run.stage / f"merge-{claim}", owner)
    if winner != owner:
        logger.info("every shard is recorded; %s merges them", winner)
        return None
    return _merge(cfg, run)


def run_task(cfg: TwinRecordConfig, task: int, tasks: int, claim: str) -> dict:
    """Task `task` of `tasks`: record its shards not yet finished, then merge if every shard is there."""
    from tqdm import tqdm

    done = _already_recorded(cfg)
    run = staged_run(cfg) if done is None else None
    if run is None and done is None:
        done = _already_recorded(cfg)  # a task may have merged, and removed the staging folder, in between
        if done is None:
            raise SettingsRefused(f"nothing is staged for {cfg.root}: submit the array with so101-submit")
    if run is None:
        return {"task": task, "recorded": [], "kept": [], "merged": False, "already_recorded": True}
    group = task_shards(run.shards, task, tasks)
    todo = [s for s in group if not _finished(run.stage, s)]
    kept = [s.name for s in group if s not in todo]
    logger.info("task %d of %d: recording %s; already recorded: %s", task, tasks, [s.name for s in todo], kept)
    frames = sum(len(s.episodes) for s in todo) * cfg.frames_per_episode
    with tqdm(total=frames, desc=f"task {task}: {len(todo)} shards", unit="frame") as progress:
        results = _run_shards(cfg, todo, run.stage, progress, run.log_dir) if todo else []
    info = merge_when_complete(cfg, run, claim, owner=f"task-{task}")
    successes = [ok for r in results for ok in r["successes"]]
    summary = {"task": task, "recorded": [r["shard"] for r in results], "kept": kept, "merged": info is not None,
               "expert_success" if cfg.driver.policy_path is None else "policy_success":
                   f"{sum(successes)}/{len(successes)}"}  # fmt: skip
    if info is not None:
        summary |= {"root": str(cfg.root), "episodes": info["total_episodes"], "frames": info["total_frames"]}
    return summary


@parser.wrap()
def array_cli(
    cfg: TwinRecordConfig, array_tasks: int | None = None, array_task: int | None = None, array_claim: str = ""
) -> dict:
    if array_task is None:
        result = plan(cfg, array_tasks)
        print(PLAN_PREFIX + json.dumps(result))
        return result
    summary = run_task(cfg, array_task, array_size(cfg, array_tasks), array_claim)
    print(json.dumps(summary))
    return summary


def split_array_flags(argv: list[str]) -> tuple[list[str], dict]:
    """so101-twin-record's flags, and this module's own (`--name=value` only, as so101-submit writes them)."""
    rest, ours = [], {}
    for arg in argv:
        name, _, value = arg[2:].partition("=")
        if arg.startswith("--") and name in ARRAY_FLAGS:
            ours[name] = value if name == "array_claim" else int(value)
        else:
            rest.append(arg)
    return rest, ours


def main() -> None:
    prepare_command_line()
    init_logging()
    sys.argv[1:], ours = split_array_flags(sys.argv[1:])
    array_cli(**ours)


if __name__ == "__main__":
    main()
