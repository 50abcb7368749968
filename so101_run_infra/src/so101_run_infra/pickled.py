"""Files torch.save pickled, loaded so that they cannot run code unless the user says they trust them.

A pickle names Python callables that the loader calls while it reads the file, so a full `torch.load` of a file
from someone else's run (or one edited on a shared disk) can run anything: `os.system`, or a `__reduce__` that
writes files. `weights_only=True` lets through tensors, dicts, lists, tuples and plain numbers, and refuses
any other global before calling it. `load_trusted_pickle` is the one place in the suite that unpickles in full,
reached only through an explicit `--trust_pickle=true`.

torch is imported only by the functions: `so101_core` stays numpy-only.
"""

import pickle
import re
from pathlib import Path
from typing import Any

TRUST_FLAG = "--trust_pickle=true"


class UntrustedPickleError(ValueError):
    """A file that needs more than tensors and plain containers to load, refused without an explicit trust."""


def _wanted_global(error: pickle.UnpicklingError) -> str:
    """What the file asked torch's weights-only unpickler for: `the global <name>` when torch names one (it does for
    every class or function the file imports), else torch's own line."""
    text = str(error)
    # torch words it two ways: "Unsupported global: GLOBAL builtins.getattr" for a global its allow-list does not
    # know, "unsupported GLOBAL posix.system whose module posix is blocked" for one from a module it never allows.
    found = re.search(r"GLOBAL ([A-Za-z_][\w.]*)", text)
    if found:
        return f"the global {found.group(1)}"
    # Otherwise torch's own reason, without its paragraph on weights_only's default: one line the user can read.
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    reason = next((line for line in lines if "WeightsUnpickler error" in line), None)
    reason = reason or next((line for line in lines if not line.startswith("Weights only load failed")), None)
    return f"something torch's weights-only loader refused ({reason or 'no reason given'})"


def load_weights_only(path: str | Path, trust_flag: str = TRUST_FLAG) -> Any:
    """`torch.load(path, weights_only=True)` on the CPU; a file that imports anything else is refused with an
    UntrustedPickleError naming what it wants to import and `trust_flag`, the opt-in that loads it in full."""
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise UntrustedPickleError(
            f"{path} was not loaded: it wants to import {_wanted_global(e)}, and unpickling it could run any code "
            f"the file carries. Only tensors, dicts, lists and numbers load without trust. If you trust the file "
            f"(you made it, or know who did), pass {trust_flag} to load it in full."
        ) from None


def load_trusted_pickle(path: str | Path) -> Any:
    """A full unpickle of `path`, which runs whatever code the file names. Call it only after the user has explicitly
    said the file is trusted (`--trust_pickle=true`)."""
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except (ModuleNotFoundError, AttributeError) as e:  # the pickled classes live in code not installed here
        raise ModuleNotFoundError(
            f"{path} pickles objects whose code is not importable here ({e}): install the code that wrote it"
        ) from e
