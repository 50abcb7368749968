"""A trainer's run folder: claiming a fresh one, checking that a resumed run continues the one it claims to, and
knowing a finished one again.

A new run refuses a non-empty output folder (it would mix two runs' checkpoints and logs); a resumed one needs the
checkpoint it continues, and a config that agrees with the saved one on every field that shapes the result. The
refusal names each differing field with both values, as `policy.lr: saved 0.0003, now 0.001`.

A run that did all its steps writes RUN_FINISHED last (`mark_finished`): its settings and a one-line summary. The
same command run again over it, with the same settings, finds it (`finished_run`) and does nothing: every trainer is
safe to run again with the arguments it was given.

A new run (no `--resume=true`) never continues the run it finds, even one of its own settings: that is LeRobot's
convention (lerobot-train refuses an existing output_dir without `--resume=true`), so `--resume=true` always says
that continuing was meant, and a mistyped --output_dir cannot silently extend another run. `refuse_used_folder`
says what the folder holds and names the flag to pass.
"""

import json
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from .atomic import write_json
from .cli import NothingToResume, OutputRefused, SettingsRefused
from .hub import is_main_process

_MISSING = object()
RUN_FINISHED = "run_finished.json"


def config_differences(saved: Any, now: Any, prefix: str = "") -> list[str]:
    """One line per differing leaf of two JSON-like configs, dotted names, as `a.b: saved X, now Y` (lists of the
    same length are compared item by item, `steps[3].size`; a field only one of them has reads `(absent)`)."""
    if isinstance(saved, Mapping) and isinstance(now, Mapping):
        lines = []
        for key in sorted(set(saved) | set(now), key=str):
            name = f"{prefix}.{key}" if prefix else str(key)
            lines += config_differences(saved.get(key, _MISSING), now.get(key, _MISSING), name)
        return lines
    if isinstance(saved, list | tuple) and isinstance(now, list | tuple) and len(saved) == len(now):
        return [line for i, (a, b) in enumerate(zip(saved, now, strict=True)) for line in
                config_differences(a, b, f"{prefix}[{i}]")]  # fmt: skip
    if saved == now:
        return []

    def show(value: Any) -> str:
        return "(absent)" if value is _MISSING else repr(value)

    return [f"{prefix or '(config)'}: saved {show(saved)}, now {show(now)}"]


def as_json(data: Any) -> Any:
    """`data` as it reads back from a JSON file (tuples as lists, paths and other objects as strings): what a saved
    config is compared with."""
    return json.loads(json.dumps(data, default=str))


def without_fields(data: Mapping, names: Iterable[str]) -> dict:
    """A copy of a nested config dict without the dotted fields `names` (`model.repo_id`); absent ones are skipped."""
    data = as_json(data)
    for name in names:
        *parents, leaf = name.split(".")
        section = data
        for parent in parents:
            section = section.get(parent) if isinstance(section, dict) else None
        if isinstance(section, dict):
            section.pop(leaf, None)
    return data


def with_defaults(saved: Mapping, defaults: Mapping) -> dict:
    """A saved config with every field added since it was written at its default: a run of an older release
    compares equal to today's same settings."""
    merged = dict(saved)
    for key, value in defaults.items():
        if key not in merged:
            merged[key] = value
        elif isinstance(value, Mapping) and isinstance(merged[key], Mapping):
            merged[key] = with_defaults(merged[key], value)
    return merged


def check_resume_config(saved: Mapping, now: Mapping, source: str | Path, what: str = "config") -> None:
    """Refuse (a ValueError) naming every field where `now` differs from the `saved` config of the run in
    `source`."""
    differences = config_differences(saved, now)
    if differences:
        raise SettingsRefused(
            f"--resume=true with a {what} that differs from the run in {source}: " + "; ".join(differences)
        )


def claim_run_dir(output_dir: str | Path, resume: bool, checkpoint: str | Path) -> Path:
    """Check that `output_dir` may be used: resuming needs `checkpoint` (the one to continue from); a new run needs
    the folder absent or empty. Creates the folder; returns it. A resumed run is no longer finished: its
    RUN_FINISHED goes (it is written again when the run ends)."""
    output_dir = Path(output_dir)
    if resume:
        if not Path(checkpoint).exists():
            raise NothingToResume(f"--resume=true but {checkpoint} does not exist: nothing to resume")
        (output_dir / RUN_FINISHED).unlink(missing_ok=True)
    elif output_dir.exists() and any(output_dir.iterdir()):
        raise OutputRefused(f"{output_dir} is not empty: pass --resume=true to continue it, or another --output_dir")
    output_dir.mkdir(parents=True, exist_ok=True)
    return output_dir


def claim_training_dir(
    output_dir: str | Path,
    resume: bool,
    checkpoint: str | Path,
    made_by: str,
    *,
    shape_saved: Mapping | None,
    shape_now: Mapping,
    saved: Mapping | None,
    now: Mapping,
    settings: Mapping,
    what: str = "config",
) -> Path:
    """Before a training run, the folder checked and claimed: a resumed run (from an existing `checkpoint`) must have
    the `shape_saved` of the run it continues (what a resume may not change: the model, say; `what` names it in the
    refusal); a new run refuses a folder in use, naming what it holds (refuse_used_folder, with `saved`, `now` and
    `settings`; resumable when the shapes agree). Then claim_run_dir."""
    if resume and Path(checkpoint).exists():
        check_resume_config(shape_saved, shape_now, output_dir, what)
    elif not resume:
        resumable = shape_saved is not None and not config_differences(shape_saved, shape_now)
        refuse_used_folder(
            output_dir, checkpoint, made_by, saved=saved, now=now, settings=settings, resumable=resumable
        )
    return claim_run_dir(output_dir, resume, checkpoint)


# ----- finished runs --------------------------------------------------------------------------------------------
def mark_finished(output_dir: str | Path, settings: Mapping, summary: str, **result: Any) -> Path:
    """Record, last thing in a run, that `output_dir` holds a run finished with `settings`: what `finished_run`
    finds. `summary` ("320 frames") is shown when the run is asked for again; `result` is returned then."""
    record = {"settings": as_json(settings), "summary": summary, "result": as_json(result)}
    return write_json(Path(output_dir) / RUN_FINISHED, record)


def finished_record(output_dir: str | Path) -> dict | None:
    """The RUN_FINISHED record of the run finished in `output_dir`, or None."""
    path = Path(output_dir) / RUN_FINISHED
    return json.loads(path.read_text()) if path.is_file() else None


def finished_run(output_dir: str | Path, settings: Mapping | Callable[[], Mapping]) -> dict | None:
    """The record of a run finished in `output_dir` with exactly `settings`, after saying so in one line (on the
    main process of a multi-process launch); None when none did (no run finished there, or one with other settings,
    which the resume checks then continue or refuse). `settings` may be a function, called only when a finished run
    is there to compare with: a command's first checks (a pickled resume state refused) then come before it."""
    record = finished_record(output_dir)
    if record is None:
        return None
    if callable(settings):
        settings = settings()
    if config_differences(record["settings"], as_json(settings)):
        return None
    if is_main_process():
        print(f"{output_dir}: already trained with these settings ({record['summary']}); nothing to do")
    return record


def refuse_used_folder(
    output_dir: str | Path,
    checkpoint: str | Path,
    made_by: str,
    *,
    saved: Mapping | None,
    now: Mapping,
    settings: Mapping,
    resumable: bool,
) -> None:
    """Before a new run (no --resume=true): refuse a non-empty `output_dir`, saying what it holds and the flag to
    pass. `saved` is the settings the run `made_by` left there recorded (None: no such run), compared with this
    run's `now`; a finished run's RUN_FINISHED settings are compared with `settings` instead. `resumable` says
    whether --resume=true would continue that run with these settings; `checkpoint` is the one it would continue
    from."""
    output_dir = Path(output_dir)
    if not output_dir.exists() or not any(output_dir.iterdir()):
        return
    finished = finished_record(output_dir)
    if finished is not None:
        saved, now = finished["settings"], as_json(settings)
    if saved is None:
        raise OutputRefused(f"{output_dir} is not empty and holds no {made_by} run: choose another --output_dir")
    differences = "; ".join(config_differences(saved, now))
    holds = f"a run made with other settings ({differences})" if differences else "an unfinished run of these settings"
    if not Path(checkpoint).exists():
        way = "it stopped before its first checkpoint: remove that folder to start over, or choose another --output_dir"
    elif resumable:
        way = "pass --resume=true to continue it, or choose another --output_dir to start a new run"
    else:
        way = "choose another --output_dir, or remove that folder to start over"
    raise OutputRefused(f"{output_dir} holds {holds}: {way}")


# ----- one-shot outputs -------------------------------------------------------------------------------------------
def made_here(output_dir: str | Path, record_file: str, record: Mapping, made_by: str, what: str) -> bool:
    """Whether `output_dir` already holds what a one-shot command (a converter, a model maker) would write now:
    True when its `record_file` equals `record` (the command, run again, has nothing to do); False when the folder
    is missing or empty. Anything else there is refused: `what` (e.g. "a conversion") made with other settings,
    naming each differing one, or a folder `made_by` did not write."""
    output_dir = Path(output_dir)
    if not output_dir.exists() or not any(output_dir.iterdir()):
        return False
    saved = output_dir / record_file
    if not saved.is_file():
        raise OutputRefused(
            f"--output_dir {output_dir} is not empty and holds nothing {made_by} wrote ({record_file} is missing): "
            "choose another --output_dir"
        )
    differences = config_differences(json.loads(saved.read_text()), as_json(record))
    if differences:
        raise OutputRefused(
            f"--output_dir {output_dir} holds {what} made with other settings ({'; '.join(differences)}): choose "
            "another --output_dir, or remove that folder to make it again"
        )
    return True
