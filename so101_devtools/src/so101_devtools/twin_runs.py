"""The twin experiments' shared stages (examples/segvla_twin.py and robust_twin.py): the recording and the twin-size
backbone made where missing, lerobot-train of one arm and seed resumed where it stopped with its wall time kept, and
the archive, a folder of each finished run's small result files that lets an experiment span machines.

`cfg` is the experiment's config; each function names the fields it reads."""

import json
import shutil
import sys
import time
from pathlib import Path

from lerobot_env_so101_twin.fingerprint import recording_fingerprint
from so101_devtools.stages import run_logged
from so101_run_infra.atomic import write_json

VENV_BIN = Path(sys.executable).parent


def archived(cfg, filename: str) -> Path | None:
    """`filename` in `cfg.archive_dir`, if there is such a folder and it holds the file."""
    path = cfg.archive_dir / filename if cfg.archive_dir is not None else None
    return path if path is not None and path.is_file() else None


def archive(cfg, source: Path, filename: str) -> None:
    """A copy of the JSON file `source` as `filename` in `cfg.archive_dir` (if any), unless one is there already."""
    if cfg.archive_dir is not None and not archived(cfg, filename):
        cfg.archive_dir.mkdir(parents=True, exist_ok=True)
        write_json(cfg.archive_dir / filename, json.loads(source.read_text()))


def check_same_recording(cfg, fingerprint: dict, seed: int) -> None:
    """The arms of one seed must train on the same recording: the twin's floating point differs between CPU kinds,
    so a session on another machine records other demonstrations from the same seeds. Seeds may differ (each seed is
    then also a fresh recording); arms within a seed may not. `cfg` needs archive_dir and arms."""
    if cfg.archive_dir is None:
        return
    for arm in cfg.arms:
        saved = archived(cfg, f"{arm}_s{seed}_recording.json")
        if saved and json.loads(saved.read_text()) != fingerprint:
            raise RuntimeError(
                f"seed {seed}'s {arm} run in {cfg.archive_dir} trained on another recording "
                f"({json.loads(saved.read_text())}) than this machine's ({fingerprint}): the arms of a seed must share "
                f"one. Move that seed's files out of {cfg.archive_dir} to train all its arms here, or run another seed."
            )


def record_stage(cfg) -> Path:
    """The demonstrations of so101-twin-record's `cfg.record_config`, recorded unless there; their root. `cfg` needs
    record_config and output_dir."""
    import draccus

    from lerobot_env_so101_twin.commands.record import TwinRecordConfig

    with open(cfg.record_config) as f:
        record = draccus.load(TwinRecordConfig, f)
    root = Path(record.dataset.root)
    if not (root / "meta" / "info.json").is_file():
        run_logged(
            [str(VENV_BIN / "so101-twin-record"), f"--config_path={cfg.record_config}"],
            cfg.output_dir / "logs" / "record.log",
            "record",
        )
    return root


def inputs_stage(cfg, needed: bool) -> Path | None:
    """The recording and the twin-size backbone, made where missing when a run is still to train (`needed`); the
    recording's root, or None. `cfg` needs record_config, output_dir and vlm_dir."""
    if not needed:
        return None
    recording_root = record_stage(cfg)
    if not (cfg.vlm_dir / "config.json").is_file():
        run_logged(
            [str(VENV_BIN / "so101-make-random-vlm"), "--size=twin", f"--output_dir={cfg.vlm_dir}"],
            cfg.output_dir / "logs" / "vlm.log",
            "backbone",
        )
    return recording_root


def train_run(
    cfg,
    arm: str,
    seed: int,
    recording_root: Path,
    steps: int,
    recipe: list[str],
    save_freq: int | None = None,
    **timing,
) -> Path:
    """lerobot-train of `recipe` (its flags) for one arm and seed, `steps` steps; returns the final checkpoint. A
    started run resumes from its last saved checkpoint. The recording's fingerprint is checked against the seed's other
    arms and archived; the training time, summed over resumed parts, goes to <run>/train_wall_s.json with `timing`'s
    entries. Checkpoints are saved every `save_freq` steps (default a quarter of `steps`). `cfg` needs output_dir,
    archive_dir, arms, torch_threads and omp_wait_policy."""
    run = cfg.output_dir / f"{arm}_s{seed}"
    fingerprint = recording_fingerprint(recording_root)
    check_same_recording(cfg, fingerprint, seed)
    if cfg.archive_dir is not None:  # what this run trains on, kept beside its results
        cfg.archive_dir.mkdir(parents=True, exist_ok=True)
        write_json(cfg.archive_dir / f"{arm}_s{seed}_recording.json", fingerprint)
    final = run / "checkpoints" / f"{steps:06d}" / "pretrained_model"
    if (final / "model.safetensors").is_file():
        return final
    path = run / "train_wall_s.json"
    # beside the run, not in it: lerobot-train refuses to start a fresh run in an existing folder
    marker = cfg.output_dir / f"{arm}_s{seed}_open_part.json"
    last = run / "checkpoints" / "last" / "pretrained_model"
    if (last / "train_config.json").is_file():
        args = [f"--config_path={last / 'train_config.json'}", "--resume=true"]
        close_killed_part(path, marker, last)
    else:
        if run.exists():  # started but never saved: nothing to keep (the folder is the experiment's own)
            shutil.rmtree(run)
        args = [
            *recipe,
            f"--save_freq={save_freq or max(1, steps // 4)}",  # checkpoints a resumed run restarts from
            f"--seed={seed}",
            f"--output_dir={run}",
        ]
    env = {"OMP_NUM_THREADS": str(cfg.torch_threads), "OMP_WAIT_POLICY": cfg.omp_wait_policy}
    log = cfg.output_dir / "logs" / f"train_{arm}_s{seed}.log"
    previous = json.loads(path.read_text())["seconds"] if path.is_file() else 0.0
    marker.parent.mkdir(parents=True, exist_ok=True)
    write_json(marker, {"started": time.time()})
    seconds = run_logged(
        [str(VENV_BIN / "lerobot-train"), *args], log, f"train {arm} seed {seed}", steps, r"step:(\S+) ", env
    )
    write_json(path, {"seconds": previous + seconds, **timing})  # summed over resumed parts
    marker.unlink()
    return final


def close_killed_part(path: Path, marker: Path, last: Path) -> None:
    """A part killed mid-run (its start marked, never its end) counts up to its last saved checkpoint: the training
    after it is redone by the resumed part, so the sum is the time that made the final checkpoint."""
    if not marker.is_file():
        return
    started = json.loads(marker.read_text())["started"]
    timing = json.loads(path.read_text()) if path.is_file() else {"seconds": 0.0}
    saved = (last / "model.safetensors").stat().st_mtime
    timing["seconds"] = timing["seconds"] + max(0.0, saved - started)
    write_json(path, timing)
    marker.unlink()
