"""A trainer's resume state on disk with nothing that can run code when read: tensors in safetensors, the rest JSON.

A resume state is a nested structure of dicts, lists, tuples, tensors, numpy arrays and JSON scalars: optimizer and
scheduler state dicts, `rng.capture_rng()`, counters, a step, a config. `save_state` writes it as a folder

    <folder>/state.json               the structure, each tensor or array replaced by a reference into ...
    <folder>/tensors.safetensors      ... every tensor and numpy array, dtype and shape kept
    <folder>/<key>/optimizer_state.safetensors, optimizer_param_groups.json
                                      each optimizer state dict, in lerobot-train's layout (LeRobot's
                                      save_optimizer_state; <key> is where it sits in the structure: `optimizer`,
                                      `agent/actor_opt`)

swapped in whole (so101_run_infra.atomic), and `load_state` gives the same structure back. Tuples stay tuples, numpy
arrays and scalars keep their dtype and JSON floats every bit (Python writes the shortest repr that reads back
exactly), so an RNG state restores exactly and a resumed run draws what the uninterrupted one would have.
(LeRobot's own RNG files keep numpy's cached Gaussian as float32 and drop python's, and hold no named generators.)

Releases up to 0.2.0 pickled these states with torch.save (training_state.pt, rng_<rank>.pt, train_state.pt).
`refuse_pickled` stops a resume at such a file, naming it and the way out: train again, or, for a file the user
trusts, convert it once with

    python -m so101_run_infra.resume_state --state_path=<run>/checkpoints/last/training_state.pt --trust_pickle=true

which writes the folder beside it (`training_state/`) and leaves the old file alone.

torch, safetensors and LeRobot are imported only by the functions (every trainer's distribution has them), so
`so101_core` stays numpy-only.
"""

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import atomic_folder
from .pickled import TRUST_FLAG, UntrustedPickleError, load_trusted_pickle

STATE_JSON = "state.json"
TENSORS = "tensors.safetensors"
# The JSON markers of what plain JSON cannot hold; a dict that has one of them as a key is written as __dict__.
TENSOR, ARRAY, TUPLE, DICT, OPTIMIZER = "__tensor__", "__ndarray__", "__tuple__", "__dict__", "__optimizer__"
MARKERS = {TENSOR, ARRAY, TUPLE, DICT, OPTIMIZER}


class PickledStateError(RuntimeError):
    """A checkpoint holds a resume state pickled by 0.2.0 or before, which the suite does not unpickle."""


# ----- writing ----------------------------------------------------------------------------------------------------
def _is_optimizer_state(value: Any) -> bool:
    """An `optimizer.state_dict()` that LeRobot's layout holds: its per-parameter state all tensors (Adam, AdamW)."""
    import torch

    if not (isinstance(value, Mapping) and set(value) == {"state", "param_groups"}):
        return False
    return all(isinstance(v, torch.Tensor) for s in value["state"].values() for v in s.values())


class _Encoder:
    def __init__(self, folder: Path):
        self.folder = folder
        self.tensors: dict = {}

    def tensor_key(self, path: list[str]) -> str:
        key = "/".join(path) or "root"
        n, unique = 1, key
        while unique in self.tensors:  # dict keys 0 and "0" would share a path
            unique, n = f"{key}#{n}", n + 1
        return unique

    def encode(self, value: Any, path: list[str]) -> Any:
        import torch

        if isinstance(value, np.ndarray | np.generic):  # before float: np.float64 is one, and would lose its type
            key = self.tensor_key(path)
            self.tensors[key] = torch.from_numpy(np.array(value))  # a copy, contiguous, 0-d for a scalar
            return {ARRAY: key, "scalar": isinstance(value, np.generic)}
        if value is None or isinstance(value, bool | int | float | str):
            return value
        if isinstance(value, torch.Tensor):
            key = self.tensor_key(path)
            self.tensors[key] = value.detach().to("cpu", copy=True).contiguous()  # a copy: no two entries share memory
            return {TENSOR: key}
        if isinstance(value, tuple):
            return {TUPLE: [self.encode(v, [*path, str(i)]) for i, v in enumerate(value)]}
        if isinstance(value, list):
            return [self.encode(v, [*path, str(i)]) for i, v in enumerate(value)]
        if _is_optimizer_state(value):
            from lerobot.optim.optimizers import save_optimizer_state

            where = "/".join(path) or "optimizer"
            (self.folder / where).mkdir(parents=True, exist_ok=True)
            save_optimizer_state(None, self.folder / where, optim_state_dict=value)
            return {OPTIMIZER: where}
        if isinstance(value, Mapping):
            if all(isinstance(k, str) for k in value) and not MARKERS & set(value):
                return {k: self.encode(v, [*path, k]) for k, v in value.items()}
            return {DICT: [[self.encode(k, [*path, "key"]), self.encode(v, [*path, str(k)])] for k, v in value.items()]}
        where = "/".join(path) or "the state"
        raise TypeError(f"{where} is a {type(value).__name__}: a resume state holds tensors, arrays and JSON values")


def save_state(folder: str | Path, state: Any) -> Path:
    """Write `state` (see the module's docstring for what it may hold) as the folder `folder`, atomically."""
    from safetensors.torch import save_file

    folder = Path(folder)
    with atomic_folder(folder) as staging:
        encoder = _Encoder(staging)
        skeleton = encoder.encode(state, [])
        save_file(encoder.tensors, str(staging / TENSORS))
        (staging / STATE_JSON).write_text(json.dumps(skeleton, indent=1))
    return folder


# ----- reading ----------------------------------------------------------------------------------------------------
def _load_optimizer_state(folder: Path) -> dict:
    """LeRobot's reader, with the parameter ids back as ints (JSON and safetensors keys are strings)."""
    from lerobot.optim.optimizers import load_optimizer_state_dict

    state = load_optimizer_state_dict(folder)
    return {
        "state": {int(k) if k.isdigit() else k: v for k, v in state["state"].items()},
        "param_groups": state["param_groups"],
    }


def _decode(value: Any, tensors: Mapping, folder: Path) -> Any:
    if isinstance(value, list):
        return [_decode(v, tensors, folder) for v in value]
    if not isinstance(value, dict):
        return value
    if TENSOR in value or ARRAY in value:
        key = value.get(TENSOR, value.get(ARRAY))
        if key not in tensors:
            raise KeyError(f"{folder / STATE_JSON} refers to tensor {key!r}, which {folder / TENSORS} lacks")
        if TENSOR in value:
            return tensors[key]
        array = tensors[key].numpy()
        return array[()] if value.get("scalar") else array
    if TUPLE in value:
        return tuple(_decode(v, tensors, folder) for v in value[TUPLE])
    if DICT in value:
        return {_decode(k, tensors, folder): _decode(v, tensors, folder) for k, v in value[DICT]}
    if OPTIMIZER in value:
        return _load_optimizer_state(folder / value[OPTIMIZER])
    return {k: _decode(v, tensors, folder) for k, v in value.items()}


def load_state(folder: str | Path) -> Any:
    """The structure `save_state` wrote into `folder`, tensors on the CPU. Reads JSON and safetensors only."""
    from safetensors.torch import load_file

    folder = Path(folder)
    if not (folder / STATE_JSON).is_file():
        raise FileNotFoundError(
            f"{folder} is not a resume state: it has no {STATE_JSON} (expected a folder written by "
            "so101_run_infra.resume_state.save_state)"
        )
    skeleton = json.loads((folder / STATE_JSON).read_text())
    return _decode(skeleton, load_file(str(folder / TENSORS)), folder)


# ----- states pickled by 0.2.0 and before ------------------------------------------------------------------------
def refuse_pickled(folder: str | Path, *patterns: str) -> None:
    """Raise PickledStateError for a file in `folder` matching one of `patterns` (`training_state.pt`, `rng_*.pt`)
    that has not been converted (no folder of its name without `.pt` beside it), naming it and what to do."""
    folder = Path(folder)
    for pattern in patterns:
        for path in sorted(folder.glob(pattern)):
            if not path.with_suffix("").is_dir():
                raise PickledStateError(
                    f"{path} is a resume state pickled with torch.save (by 0.2.0 or before); the suite reads "
                    f"{path.with_suffix('').name}/ (safetensors + JSON) and does not unpickle it, since unpickling "
                    "runs whatever code the file names. Train again into a new --output_dir, or, if you trust the "
                    f"file, convert it once: python -m so101_run_infra.resume_state --state_path={path} {TRUST_FLAG}"
                )


def convert_pickled_state(path: str | Path, trust_pickle: bool = False) -> Path:
    """Write the pickled resume state `path` (`x.pt`) as the folder `x/` beside it, leaving the file as it was.
    Unpickles it in full, so it is refused unless `trust_pickle`."""
    path = Path(path)
    if not trust_pickle:
        raise UntrustedPickleError(
            f"converting {path} unpickles it, which runs whatever code the file names: pass {TRUST_FLAG} if you "
            "trust it (it came from your own run)"
        )
    return save_state(path.with_suffix(""), load_trusted_pickle(path))


@dataclass
class ConvertPickledStateConfig:
    # a resume state pickled by 0.2.0 or before: <run>/checkpoints/last/training_state.pt, rng_<rank>.pt, or a
    # segmenter's <run>/last/train_state.pt; required
    state_path: Path | None = None
    # unpickling runs whatever code the file names: true only for a file you trust
    trust_pickle: bool = False

    def __post_init__(self):
        if self.state_path is None:
            raise ValueError("--state_path is required")


def _convert_cli(cfg: ConvertPickledStateConfig) -> None:
    if not cfg.state_path.is_file():
        raise FileNotFoundError(f"--state_path {cfg.state_path} does not exist")
    folder = convert_pickled_state(cfg.state_path, cfg.trust_pickle)
    print(f"wrote {folder}; {cfg.state_path} is left as it was (delete it once the run has resumed)")


def main() -> None:
    from lerobot.configs import parser

    from .cli import prepare_command_line

    prepare_command_line()
    parser.wrap()(_convert_cli)()


if __name__ == "__main__":
    main()
