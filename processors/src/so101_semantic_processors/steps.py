"""What the suite's processor steps share: a saved pipeline's step config taken from the step's dataclass fields, and
the keys an error about a missing one lists."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any


def _plain(value: Any) -> Any:
    """A copy of a field's value as JSON holds it: lists and dicts copied all the way down, tuples as lists."""
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value


class ConfigFromFields:
    """Mixin for a dataclass processor step: `get_config` returns every field, in declaration order.

    A saved pipeline stores this dict and `from_pretrained` passes it back as keyword arguments, so the fields are
    exactly the config; a step whose saved config must differ from its fields writes its own `get_config`. List it
    before LeRobot's step class: `class MyStep(ConfigFromFields, ObservationProcessorStep)`.
    """

    def get_config(self) -> dict[str, Any]:
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}


def present_keys(observation: Mapping, prefix: str = "observation.") -> list[str]:
    """The sorted keys of `observation` that start with `prefix`: what an error about a missing key lists."""
    return sorted(key for key in observation if key.startswith(prefix))
