"""What every suite command does before `lerobot.configs.parser.wrap` parses its command line.

The commands parse with LeRobot's own parser (a config dataclass, `--config_path`, dotted flags, `--help` from the
field comments). Two things it does not do:

- **Old spellings for one release.** A renamed flag keeps working: `renamed_flags` rewrites it to the new spelling
  and prints one line naming the new one, so scripts written against the last release run unchanged.
- **Old lists for one release.** argparse took a list as space-separated values (`--sizes twin real`) or a repeated
  flag (`--row a --row b`); LeRobot's parser takes one value, `--sizes='[twin,real]'`. `bracketed_lists` joins the
  old forms into the new one and prints the new spelling.
- **Help that no comment can crash.** argparse %-formats every help string (for `%(default)s`), so a field comment
  with a `%` in it ("20% faster") made `--help` die with a traceback. The help formatter LeRobot's parser uses is
  swapped for one that escapes the comment before argparse formats it.

Usage, in a command's `main`:

    prepare_command_line({"--append": "--resume"})
    record_cli()  # the @parser.wrap() function

Stdlib only at import time (so101_core stays numpy-only); LeRobot is imported by `prepare_command_line`, which only
the commands call, and every command's distribution depends on LeRobot.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence


def renamed_flags(argv: Sequence[str], renamed: Mapping[str, str]) -> list[str]:
    """`argv` with each old flag spelling replaced by its new one (`--old`, `--old=value`, `--old.sub=value`).

    Each old spelling used prints one deprecation line on stderr naming the new spelling. A value follows as given:
    `--old value` becomes `--new value`. An old store-true flag, which argparse took bare, maps to a value
    (`{"--restart": "--restart=true"}`): then only the bare flag is rewritten, `--restart=false` is left alone.
    """
    out = []
    warned = set()
    for i, arg in enumerate(argv):
        name, sep, value = arg.partition("=")
        bare = i + 1 == len(argv) or argv[i + 1].startswith("-")  # `--restart false` is the new spelling
        new = None
        for old, replacement in renamed.items():
            if name == replacement or name.startswith(replacement + "."):  # the new spelling (--policy.path=x)
                break
            if "=" in replacement:  # a bare flag that now takes a value: only `--old` itself is the old spelling
                new = replacement if arg == old and bare else None
            elif name == old:
                new = replacement + sep + value
            elif name.startswith(old + "."):  # a dotted sub-flag of a renamed group: --smolvla.x -> --policy.x
                new = replacement + name[len(old) :] + sep + value
            if new is not None:
                if old not in warned:
                    warned.add(old)
                    print(
                        f"warning: {old} is deprecated and will be removed in the next release; use {replacement}",
                        file=sys.stderr,
                    )
                break
        out.append(arg if new is None else new)
    return out


def dashed_spellings(*fields: str) -> dict[str, str]:
    """`{"--frame-stack": "--frame_stack", ...}` for `renamed_flags`: the argparse spellings of the given fields.

    A name without `_` is spelled the same both ways and is left out (its flag is not an old spelling)."""
    return {"--" + name.replace("_", "-"): "--" + name for name in fields if "_" in name}


def bracketed_lists(argv: Sequence[str], flags: Sequence[str]) -> list[str]:
    """`argv` with every list flag of `flags` given the argparse way joined into one `--flag=[a,b]`.

    The argparse forms: space-separated values (`--sizes twin real`), a bare value (`--sizes=twin`), a repeated flag
    (`--row a --row b`, whose values add up). `--sizes='[twin,real]'` and `--sizes '[twin,real]'` are the new
    spelling and pass unchanged. The joined flag takes the place of the flag's first use; a value with a comma or a
    quote is quoted. Each flag rewritten prints one deprecation line on stderr with its new spelling.
    """
    values: dict[str, list[str]] = {}  # old-form flag -> its values, in order
    out: list[str | None] = []  # None: the slot its joined flag fills
    slots: dict[str, int] = {}
    i = 0
    while i < len(argv):
        name, sep, value = argv[i].partition("=")
        following = argv[i + 1] if i + 1 < len(argv) else ""
        if name not in flags or (value if sep else following).startswith("["):  # not a list flag, or the new form
            out.append(argv[i])
            i += 1
            continue
        given = [value] if sep else []
        while not sep and i + 1 < len(argv) and not argv[i + 1].startswith("--"):
            i += 1
            given.append(argv[i])
        if name not in slots:
            slots[name] = len(out)
            out.append(None)
        values.setdefault(name, []).extend(given)
        i += 1
    for name, slot in slots.items():
        out[slot] = f"{name}=[{','.join(map(_list_item, values[name]))}]"
        print(
            f"warning: a list as separate values is deprecated and will be removed in the next release; "
            f"use '{out[slot]}'",
            file=sys.stderr,
        )
    return [arg for arg in out if arg is not None]


def _list_item(value: str) -> str:
    """`value` as an item of a '[a,b]' list, which draccus reads as YAML: quoted where YAML would split or retype it."""
    return json.dumps(value) if any(c in value for c in ",[]{}#'\"") or ": " in value else value


def _use_percent_safe_help() -> None:
    """Make LeRobot's `--help` (print_scoped_help) escape `%` in field comments before argparse formats them."""
    from draccus.help_formatter import SimpleHelpFormatter
    from lerobot.configs import parser

    if issubclass(parser.SimpleHelpFormatter, _PercentSafe):
        return

    class PercentSafeHelpFormatter(_PercentSafe, SimpleHelpFormatter):
        pass

    parser.SimpleHelpFormatter = PercentSafeHelpFormatter


class _PercentSafe:
    """Mixin for an argparse help formatter: a literal `%` in a help string is shown, not interpreted."""

    def _get_help_string(self, action):  # argparse's hook that appends " (default: %(default)s)"
        text = action.help or ""
        formatted = super()._get_help_string(action)  # the text, plus the default placeholder if one was added
        return text.replace("%", "%%") + formatted[len(text) :]


def prepare_command_line(
    renamed: Mapping[str, str] | None = None, lists: Sequence[str] = (), *, plugins: bool = False
) -> None:
    """Ready this process for a `@parser.wrap()` command: old flag spellings rewritten in sys.argv, `%`-safe help.

    `lists` names the command's list flags (new spellings) whose argparse forms `bracketed_lists` joins.
    `plugins=True` also registers LeRobot's third-party plugins (the `lerobot_policy_*` and env packages), for a
    command whose config names a policy or env type (`--policy.type=segdepth`, `--policy.path=CKPT`).
    """
    _use_percent_safe_help()
    if renamed:
        sys.argv[1:] = renamed_flags(sys.argv[1:], renamed)
    if lists:
        sys.argv[1:] = bracketed_lists(sys.argv[1:], lists)
    if plugins:
        from lerobot.utils.import_utils import register_third_party_plugins

        register_third_party_plugins()
