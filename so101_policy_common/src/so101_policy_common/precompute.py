"""Add computed per-frame columns to a copy of a LeRobotDataset: resumable, atomic, read back.

The one machinery behind the suite's offline precompute commands (`segvla-precompute`: SegVLA's
pooled Mask2Former scores; `segdepth-precompute`: SegDepth's policy-ready observation). A front end gives the
source dataset, a function that maps a batch of frames (as a DataLoader over the dataset yields them) to named
arrays, LeRobot feature specs for those arrays and the settings that determine them; `precompute_features`:

- over a copy it finished with the same settings, says so and does nothing; refuses a copy made with other
  settings, or a folder it did not write, before any work: nothing is overwritten, the source is only read;
- writes each computed batch to `.<output>.partial/shards/shard_NNNNNN.safetensors` (each written atomically)
  beside `manifest.json` (source and settings). A run started again with the same settings skips
  the frames already done (the batch size may differ); one with other settings is refused unless `restart`
  discards the partial work;
- gathers the shards by dataset position into memory-mapped arrays in the stage folder (so a column need not fit
  in memory) and checks that every frame was computed;
- has LeRobot's `dataset_tools.modify_features` write the new dataset (the added columns; optionally without some
  source columns) to `.<output>.tmp`, reads rows back and compares them with what was computed, stores the manifest
  as the new dataset's `meta/precompute.json`, renames the folder into place and deletes the stage.

A column can also hold each frame's history (`history={name: k}`): row t stores the values of frames t-k+1..t of
its episode, oldest first, the episode's first frame repeated before its start: what LeRobot's delta window
`[-(k-1), ..., 0]` reads, in one row. A policy that trains without a delta window on such a column has LeRobot read
one row per sample instead of k (LeRobot 0.6.1 pays ~1.5 ms of Python per row read, mostly `datasets` copying the
feature schema, whatever the row holds).
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from lerobot.configs import PreTrainedConfig, parser
from safetensors.torch import load_file
from tqdm import tqdm

from so101_run_infra.atomic import replace_folder, save_safetensors, staging_folder, write_json
from so101_run_infra.cli import OutputRefused, SettingsRefused
from so101_run_infra.dataset_ref import DatasetRef
from so101_run_infra.runs import config_differences

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
DATASET_MANIFEST = "meta/precompute.json"  # the manifest, kept in the new dataset: what made its columns


@dataclass
class SourceDatasetConfig(DatasetRef):
    """The dataset a precompute command reads (`--dataset.repo_id`, `--dataset.root`)."""

    repo_id: str  # required; root: the dataset's folder (None: $HF_LEROBOT_HOME/repo_id)


def stage_dir(output_root: Path) -> Path:
    """Where partial work for `output_root` lives: `.<name>.partial/` beside it."""
    return output_root.with_name(f".{output_root.name}.partial")


def check_output_root(output_root: str | Path) -> Path:
    """Refuses a folder this machinery did not write; a copy it finished is compared with the run's settings later
    (`precompute_features`), when they are known."""
    output_root = Path(output_root)
    if output_root.exists() and not (output_root / DATASET_MANIFEST).is_file():
        raise OutputRefused(
            f"{output_root} exists and is not a copy this command finished (it has no {DATASET_MANIFEST}): pass "
            "another --output_dir, or remove that folder"
        )
    return output_root


def _finished(output_root: Path, manifest: dict, output_repo_id: str, frames: int) -> dict:
    """The summary of a copy already made with these settings; refuses one made with other settings."""
    previous = json.loads((output_root / DATASET_MANIFEST).read_text())
    if previous != manifest:
        detail = "; ".join(config_differences(previous, manifest))
        raise OutputRefused(
            f"{output_root} is a copy made with other settings ({detail}): pass another --output_dir to keep both, "
            "or remove that folder to make it again"
        )
    print(f"{output_root}: already made with these settings ({frames} frames); nothing to do")
    return {
        "output_root": str(output_root),
        "output_repo_id": output_repo_id,
        "frames": frames,
        "frames_computed_this_run": 0,
        "already_made": True,
        "removed_features": manifest["removed_features"],
    }


def output_location(
    dataset, output_dir: str | Path | None, output_repo_id: str | None, suffix: str
) -> tuple[Path, str]:
    """A front end's new dataset: `output_dir` (default: the source root's name + `suffix`, beside it) and
    `output_repo_id` (default: the source repo id + `suffix`). Refuses an existing folder before any work."""
    source_root = Path(dataset.root)
    output_root = Path(output_dir) if output_dir else source_root.with_name(source_root.name + suffix)
    return check_output_root(output_root), output_repo_id or f"{dataset.repo_id}{suffix}"


@dataclass
class PolicyPrecomputeConfig:
    """The settings of a front end that stores what a policy's config determines (`imf-cache-embeddings`,
    `segdepth-precompute`). A subclass sets `command` and `policy_class` and gives `policy` its config class and
    default; `--policy.path=CKPT` takes the policy's settings from a trained checkpoint instead (any `--policy.*`
    flags on top, as lerobot-train loads one)."""

    command: ClassVar[str]  # the console command, named in errors and stored as the copy's `made_by`
    policy_class: ClassVar[type[PreTrainedConfig]]

    dataset: SourceDatasetConfig
    policy: PreTrainedConfig
    # the new dataset's folder; default: beside the source, its folder name + the command's suffix
    output_dir: str | None = None
    output_repo_id: str | None = None  # default: the source's repo id + the command's suffix
    keep_videos: bool = False  # keep the camera columns (LeRobot then decodes them for every training sample)
    batch_size: int = 32  # frames per pass of the computation
    num_workers: int = 0  # DataLoader workers decoding the source frames
    restart: bool = False  # discard partial work made with other settings

    def __post_init__(self):
        policy_path = parser.get_path_arg("policy")
        if policy_path:
            overrides = parser.get_yaml_overrides("policy") + (parser.get_cli_overrides("policy") or [])
            self.policy = PreTrainedConfig.from_pretrained(policy_path, cli_overrides=overrides)
            self.policy.pretrained_path = Path(policy_path)
        if not isinstance(self.policy, self.policy_class):
            name = PreTrainedConfig.get_choice_name(self.policy_class)
            raise ValueError(f"{self.command} needs a '{name}' policy config, got {type(self.policy).__name__}")

    @classmethod
    def __get_path_fields__(cls) -> list[str]:
        return ["policy"]


def print_summary(summary: dict, policy_type: str, flags: str) -> None:
    """A front end's closing words: the run's summary, then the lerobot-train command for the copy (`flags`: the
    policy flags it must be given). Nothing over a copy already made: its one line said it all."""
    if summary.get("already_made"):
        return
    print(json.dumps(summary, indent=2))
    print(
        f"train on it: lerobot-train --policy.type={policy_type} --dataset.repo_id={summary['output_repo_id']} "
        f"--dataset.root={summary['output_root']} {flags} ..."
    )


def _done_positions(shard_dir: Path) -> set[int]:
    done: set[int] = set()
    for shard in sorted(shard_dir.glob("shard_*.safetensors")):
        done.update(load_file(shard)["positions"].tolist())
    return done


def _as_array(name: str, value, spec: dict, rows: int) -> torch.Tensor:
    tensor = torch.as_tensor(value).detach().cpu().contiguous()
    expected = (rows, *spec["shape"])
    if tuple(tensor.shape) != expected:
        raise ValueError(f"the compute function returned '{name}' shaped {tuple(tensor.shape)}, expected {expected}")
    if tensor.numpy().dtype != np.dtype(spec["dtype"]):
        raise TypeError(f"the compute function returned '{name}' as {tensor.dtype}, the feature is {spec['dtype']}")
    return tensor


class _EpisodeWindows(torch.utils.data.Dataset):
    """Runs of consecutive frames of one episode, with only `keys` read, each run one item.

    LeRobot's reader opens a video decoder for every item it returns (and decodes every video column); one item
    per frame spends most of its time there (~100 frames/s for two 160x120 streams on 2 cores). Asking it for a
    window of timestamps (`delta_timestamps`, the frame-stack path of training) decodes a run with one decoder per
    key, through the same `decode_video_frames` call, so the values are the ones a frame-by-frame read gives.
    """

    def __init__(self, dataset, keys: list[str], runs: list[tuple[int, int]]):
        from lerobot.datasets.lerobot_dataset import LeRobotDataset

        self.keys, self.runs = keys, runs
        size = max(length for _, length in runs)
        fps = dataset.meta.fps
        self.windowed = LeRobotDataset(
            dataset.repo_id,
            root=dataset.root,
            delta_timestamps={key: [i / fps for i in range(size)] for key in keys},
            tolerance_s=dataset.tolerance_s,
            video_backend=getattr(dataset, "_video_backend", None),
        )

    def __len__(self) -> int:
        return len(self.runs)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        first, length = self.runs[i]
        item = self.windowed[first]
        for key in self.keys:
            if item[f"{key}_is_pad"][:length].any():
                raise RuntimeError(f"frames {first}..{first + length - 1} of '{key}' run past their episode's end")
        return {
            **{key: item[key][:length] for key in self.keys},
            "index": item["index"] + torch.arange(length),
            "positions": torch.arange(first, first + length),
        }


def _episode_runs(dataset, todo: list[int], size: int) -> list[tuple[int, int]]:
    """`todo` (sorted dataset positions) cut into runs of at most `size` consecutive frames of one episode."""
    episodes = torch.stack(list(dataset.hf_dataset["episode_index"])).view(-1).tolist()
    runs: list[tuple[int, int]] = []
    for position in todo:
        if runs:
            first, length = runs[-1]
            last = first + length - 1
            if position == last + 1 and length < size and episodes[position] == episodes[first]:
                runs[-1] = (first, length + 1)
                continue
        runs.append((position, 1))
    return runs


def _write_copy(
    dataset,
    stage: Path,
    per_frame: dict[str, dict],
    history: dict[str, int],
    features: dict[str, dict],
    remove_features: list[str],
    output_root: Path,
    output_repo_id: str,
    manifest: dict,
) -> None:
    """The new dataset from the stage's shards: written by LeRobot beside `output_root`, a few rows read back and
    compared with what was computed, the manifest added, then renamed into place."""
    from lerobot.datasets.dataset_tools import modify_features

    columns = _StoredColumns(stage, per_frame, history, len(dataset))
    add = {
        name: (lambda row, _ep, frame, name=name: columns.value(name, int(row["index"]), int(frame)), features[name])
        for name in per_frame
    }
    tmp = staging_folder(output_root, create=False)  # modify_features makes the folder itself
    new = modify_features(
        dataset, add_features=add, remove_features=remove_features or None, output_dir=tmp, repo_id=output_repo_id
    )
    rows = sorted({0, min(1, len(new) - 1), len(new) // 2, len(new) - 1})  # row 1: a history's partial padding
    for position in rows:
        row = new.hf_dataset[position]
        for name in per_frame:
            expected = columns.value(name, int(row["index"]), int(row["frame_index"]))
            if not np.array_equal(np.asarray(row[name]), expected):
                raise RuntimeError(f"'{name}' read back from {tmp} (row {position}) differs from what was computed")
    write_json(tmp / DATASET_MANIFEST, manifest, sort_keys=True)
    del new, add
    columns.close()  # the memmaps, before their folder goes
    replace_folder(tmp, output_root)


def precompute_features(
    dataset,
    compute: Callable[[dict[str, Any]], Mapping[str, torch.Tensor | np.ndarray]],
    features: dict[str, dict],
    output_root: str | Path,
    output_repo_id: str,
    settings: dict[str, Any],
    *,
    remove_features: list[str] | None = None,
    batch_size: int = 8,
    num_workers: int = 0,
    restart: bool = False,
    desc: str = "precompute",
    read_keys: list[str] | None = None,
    history: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """Write a copy of `dataset` (a LeRobotDataset without delta timestamps) with the columns `compute` gives.

    `compute(batch)` gets a batch of consecutive frames and returns {feature name: (B, *shape)} in
    each feature's dtype; `features` are LeRobot feature specs ({"dtype", "shape", "names", "info"}) keyed by the
    same names. `settings` (JSON-serialisable) is everything else that determines the values: partial work made
    with other settings is refused unless `restart`. With `read_keys`, a batch holds only those keys (and
    `index`), up to `batch_size` consecutive frames of one episode, each video decoded once per batch: several
    times faster than LeRobot's frame-by-frame reads (see `_EpisodeWindows`). `history` {name: k} stores frames
    t-k+1..t of the episode in row t (see the module docstring); that feature's spec shape is then (k, *per-frame
    shape) and `compute` still returns one frame per row. Returns a summary of the run.
    """
    output_root = check_output_root(output_root)
    remove_features = list(remove_features or [])
    history = dict(history or {})
    manifest = _manifest(dataset, remove_features, history, settings)
    if output_root.exists():
        return _finished(output_root, manifest, output_repo_id, len(dataset))
    per_frame = _per_frame_specs(dataset, features, remove_features, history)
    stage = stage_dir(output_root)
    _open_stage(stage, manifest, restart)
    start = time.perf_counter()
    computed = _compute_shards(dataset, compute, features, per_frame, stage / "shards", batch_size, num_workers,
                               desc, read_keys)  # fmt: skip
    elapsed = time.perf_counter() - start

    _write_copy(dataset, stage, per_frame, history, features, remove_features, output_root, output_repo_id, manifest)
    shutil.rmtree(stage)

    return {
        "output_root": str(output_root),
        "output_repo_id": output_repo_id,
        "frames": len(dataset),
        "frames_computed_this_run": computed,
        "compute_seconds": round(elapsed, 3),
        "frames_per_second": round(computed / elapsed, 3) if computed and elapsed > 0 else None,
        "removed_features": remove_features,
    }


def _per_frame_specs(dataset, features: dict, remove_features: list[str], history: dict[str, int]) -> dict:
    """Each new feature's spec for one frame (a history feature's without its leading k); checks the request."""
    clash = [name for name in features if name in dataset.meta.features]
    if clash:
        raise ValueError(f"dataset {dataset.repo_id} already has {clash}; pick other keys or drop those columns")
    for name, k in history.items():
        shape = list(features.get(name, {}).get("shape", []))
        if k < 1 or len(shape) < 2 or shape[0] != k:
            raise ValueError(f"history {{{name!r}: {k}}} needs a feature '{name}' of shape ({k}, ...), got {shape}")
    unknown = [name for name in remove_features if name not in dataset.meta.features]
    if unknown:
        raise ValueError(f"cannot remove {unknown}: dataset {dataset.repo_id} has no such features")
    return {
        name: {**spec, "shape": list(spec["shape"])[1:]} if name in history else spec for name, spec in features.items()
    }


def _manifest(dataset, remove_features: list[str], history: dict[str, int], settings: dict) -> dict:
    """What made the copy: its source and the settings, as the manifest file reads back."""
    manifest = {
        "source_repo_id": dataset.repo_id,
        "source_root": str(Path(dataset.root).resolve()),
        "source_frames": len(dataset),
        "removed_features": remove_features,
        **({"history": history} if history else {}),
        **settings,
    }
    return json.loads(json.dumps(manifest))  # tuples -> lists, as the file reads back


def _open_stage(stage: Path, manifest: dict, restart: bool) -> None:
    """The stage folder with its manifest: a new one, or the partial work of a run with the same settings."""
    if restart and stage.exists():
        shutil.rmtree(stage)
    if (stage / MANIFEST).exists():
        previous = json.loads((stage / MANIFEST).read_text())
        if previous != manifest:
            changed = sorted(k for k in {*manifest, *previous} if previous.get(k) != manifest.get(k))
            detail = "; ".join(config_differences(previous, manifest))
            raise SettingsRefused(
                f"{stage} holds partial work made with other settings ({changed}): {detail}; pass --restart=true to "
                "discard it, or another --output_dir"
            )
        logger.info("resuming from %s", stage)
    (stage / "shards").mkdir(parents=True, exist_ok=True)
    write_json(stage / MANIFEST, manifest, sort_keys=True)


def _compute_shards(
    dataset, compute, features, per_frame, shard_dir: Path, batch_size, num_workers, desc, read_keys
) -> int:
    """Compute the frames no shard holds yet, a shard per batch; the number of frames computed."""
    done = _done_positions(shard_dir)
    todo = [i for i in range(len(dataset)) if i not in done]
    loader = torch.utils.data.DataLoader(
        torch.utils.data.Subset(dataset, todo), batch_size=batch_size, shuffle=False, num_workers=num_workers
    )
    next_shard = len(list(shard_dir.glob("shard_*.safetensors")))
    computed = 0
    if read_keys is not None and getattr(dataset, "episodes", None) is None and todo:
        # runs of an episode's consecutive frames, only `read_keys` decoded (see _EpisodeWindows)
        windows = _EpisodeWindows(dataset, read_keys, _episode_runs(dataset, todo, batch_size))
        loader = torch.utils.data.DataLoader(windows, batch_size=None, shuffle=False, num_workers=num_workers)
    with tqdm(total=len(dataset), initial=len(done), desc=desc, unit="frame") as progress:
        for b, batch in enumerate(loader):
            if "positions" in batch:
                positions = batch.pop("positions").tolist()
            else:
                positions = todo[b * batch_size : b * batch_size + len(batch["index"])]
            values = compute(batch)
            if set(values) != set(features):
                raise KeyError(f"the compute function returned {sorted(values)}, expected {sorted(features)}")
            tensors = {name: _as_array(name, values[name], per_frame[name], len(positions)) for name in features}
            tensors["positions"] = torch.tensor(positions, dtype=torch.int64)
            tensors["index"] = batch["index"].to(torch.int64)
            save_safetensors(tensors, shard_dir / f"shard_{next_shard:06d}.safetensors")
            next_shard += 1
            computed += len(positions)
            progress.update(len(positions))
    return computed


class _StoredColumns:
    """The shards gathered by dataset position into memory-mapped columns (a column need not fit in memory),
    keyed on each row's global `index`."""

    def __init__(self, stage: Path, per_frame: dict, history: dict[str, int], frames: int):
        column_dir = stage / "columns"
        column_dir.mkdir(exist_ok=True)
        self.history = history
        self.columns = {
            name: np.lib.format.open_memmap(
                column_dir / f"{i}.npy", mode="w+", dtype=np.dtype(spec["dtype"]), shape=(frames, *spec["shape"])
            )
            for i, (name, spec) in enumerate(per_frame.items())
        }
        filled = np.zeros(frames, dtype=bool)
        self.row_of_index: dict[int, int] = {}
        shard_dir = stage / "shards"
        for shard in sorted(shard_dir.glob("shard_*.safetensors")):
            data = load_file(shard)
            pos = data["positions"].numpy()
            for name, column in self.columns.items():
                column[pos] = data[name].numpy()
            filled[pos] = True
            self.row_of_index.update(zip(data["index"].tolist(), pos.tolist(), strict=True))
        if not filled.all():
            missing = np.flatnonzero(~filled)
            raise RuntimeError(f"{len(missing)} frames have no shard in {shard_dir} (first {missing[:5].tolist()})")

    def value(self, name: str, index: int, frame: int) -> np.ndarray:
        """Row `index`'s value of `name`: its frame's, or frames index-k+1..index clamped to the episode's first."""
        column, rows = self.columns[name], self.row_of_index
        if name not in self.history:
            return np.asarray(column[rows[index]])
        return np.stack([column[rows[index - min(d, frame)]] for d in range(self.history[name] - 1, -1, -1)])

    def close(self) -> None:
        self.columns.clear()


def open_result(summary: dict[str, Any]):
    """The dataset a `precompute_features` summary describes."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    return LeRobotDataset(summary["output_repo_id"], root=summary["output_root"])
