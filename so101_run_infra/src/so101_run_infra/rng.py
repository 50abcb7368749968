"""Every random generator a trainer draws from, captured as one state and restored on resume.

The global streams (python `random`, numpy's global generator, torch's CPU generator and, when CUDA is available,
every CUDA device's) plus any named generators the trainer owns (a `torch.Generator` driving a DataLoader's shuffle,
a `numpy.random.Generator` sampling demonstrations). The state is a plain dict, saved with the checkpoint by
`torch.save`; restoring it makes the resumed run draw the numbers the uninterrupted one would have.

torch is imported only when present: `so101_core` stays numpy-only.
"""

import random
from collections.abc import Mapping
from typing import Any

import numpy as np

Generators = Mapping[str, Any]  # name -> torch.Generator | numpy.random.Generator


def _torch():
    try:
        import torch
    except ImportError:  # a numpy-only install: there is no torch stream to capture
        return None
    return torch


def capture_rng(generators: Generators | None = None) -> dict[str, Any]:
    """The state of every global generator and of each of `generators`, by name."""
    state: dict[str, Any] = {"python": random.getstate(), "numpy": np.random.get_state()}
    torch = _torch()
    if torch is not None:
        state["torch"] = torch.get_rng_state()
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
    named = {}
    for name, generator in (generators or {}).items():
        if isinstance(generator, np.random.Generator):
            named[name] = generator.bit_generator.state
        elif hasattr(generator, "get_state"):
            named[name] = generator.get_state()
        else:
            raise TypeError(f"generator {name!r} is a {type(generator).__name__}: not a torch or numpy Generator")
    state["generators"] = named
    return state


def restore_rng(state: Mapping[str, Any], generators: Generators | None = None) -> None:
    """Put back what `capture_rng` captured. Streams missing from `state` (a checkpoint written before one was
    captured, or on a machine without CUDA) are left as they are; a named generator missing from it is an error."""
    if "python" in state:
        random.setstate(state["python"])
    if "numpy" in state:
        np.random.set_state(state["numpy"])
    torch = _torch()
    if torch is not None:
        if "torch" in state:
            torch.set_rng_state(state["torch"].cpu())  # a checkpoint loaded with map_location=cuda moved it
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])
    saved = state.get("generators", {})
    for name, generator in (generators or {}).items():
        if name not in saved:
            raise KeyError(f"the saved RNG state has no generator {name!r} (it has {sorted(saved)})")
        if isinstance(generator, np.random.Generator):
            generator.bit_generator.state = saved[name]
        else:
            generator.set_state(saved[name].cpu() if generator.device.type == "cpu" else saved[name])
