"""The error of a missing key in an observation, a batch or a saved record, worded one way everywhere: what is
missing, who needs it, how to get it, and the keys that are there (so a renamed camera shows at once)."""

from collections.abc import Mapping
from typing import Any


def present_keys(mapping: Mapping, prefix: str = "observation.") -> list[str]:
    """The sorted keys of `mapping` that start with `prefix`: what an error about a missing key lists."""
    return sorted(key for key in mapping if key.startswith(prefix))


def require_key(mapping: Mapping, key: str, who: str, hint: str = "", *, where: str = "batch", prefix: str = "") -> Any:
    """`mapping[key]`, or a KeyError "<who> needs '<key>' (<hint>); the <where> has [<keys starting with prefix>]"."""
    if key in mapping:
        return mapping[key]
    why = f" ({hint})" if hint else ""
    raise KeyError(f"{who} needs '{key}'{why}; the {where} has {present_keys(mapping, prefix)}")
