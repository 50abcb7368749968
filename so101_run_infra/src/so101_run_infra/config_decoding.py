"""Values set where draccus parses a config: a rewrite of the raw dict draccus is about to decode a command's config
from, and the rename of a saved field.

draccus decodes a command's config from one dict: its --config_path file with the command line's flags merged in.
`decode_rewritten(cls, rewrite)` has it decode `cls` from `rewrite(that dict)` instead, which is how a command's
config fills a nested config's defaults: draccus builds a nested config from its class defaults as soon as one of
its fields is given, so a command whose nested config has other defaults than the class puts them under what the
file and the flags give. `renamed_field` gives a field saved under an old name (and an old value) to the new one,
for files that carry the old name.

draccus is imported by the function that needs it (every command's distribution has it through LeRobot).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any


def decode_rewritten(cls: type, rewrite: Callable[[dict], dict]) -> None:
    """Have draccus decode `cls` from `rewrite(raw)`, where `raw` is the dict it would decode `cls` from: the
    --config_path file and the flags, merged, when `cls` is the config a command parses (`draccus.parse(cls)`,
    LeRobot's `@parser.wrap()`). Only for such a top-level command config: draccus turns a field whose type has its
    own decoder into one flag (no `--field.sub` flags), and refuses such a class as one choice of a registry (a
    policy config). Call it once, where `cls` is defined."""
    import draccus
    from draccus.parsers.decoding import decode_dataclass

    def decode(raw: Any, path: tuple = ()) -> Any:
        return decode_dataclass(cls, rewrite(dict(raw)) if isinstance(raw, Mapping) else raw, path)

    draccus.decode.register(cls, decode)


def renamed_field(raw: Mapping, old: str, new: str, values: Mapping[str, str] | None = None) -> dict:
    """`raw` with the field saved as `old` given as `new`, its value mapped through `values` (old value -> new value,
    for values renamed too). A `new` already in `raw` wins."""
    out = dict(raw)
    if old in out:
        value = out.pop(old)
        out.setdefault(new, (values or {}).get(value, value) if isinstance(value, str) else value)
    return out
