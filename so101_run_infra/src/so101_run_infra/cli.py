"""What every suite command does before `lerobot.configs.parser.wrap` parses its command line.

The commands parse with LeRobot's own parser (a config dataclass, `--config_path`, dotted flags, `--help` from the
field comments). Two things it does not do:

- **Help that no comment can crash.** argparse %-formats every help string (for `%(default)s`), so a field comment
  with a `%` in it ("20% faster") made `--help` die with a traceback. The help formatter LeRobot's parser uses is
  swapped for one that escapes the comment before argparse formats it.
- **The plugins a config names.** A command whose config names a policy or env type (`--policy.type=segdepth`,
  `--policy.path=CKPT`) registers LeRobot's third-party plugins first (`plugins=True`).
- **Refusals without a traceback.** A command that refuses its input or its output folder before any work raises a
  `Refusal` (an OSError or ValueError too, for callers that catch those): the command prints its message alone and
  exits 1. A traceback there reads as a crash, when the message already says what to change.

Usage, in a command's `main`:

    prepare_command_line()  # or prepare_command_line(plugins=True)
    train_cli()  # the @parser.wrap() function

Stdlib only at import time (so101_core stays numpy-only); LeRobot is imported by `prepare_command_line`, which only
the commands call, and every command's distribution depends on LeRobot.
"""

from __future__ import annotations

from pathlib import Path


class Refusal(Exception):
    """Mixin for an exception that refuses a command's input before any work; see the module docstring."""


class OutputRefused(Refusal, FileExistsError):
    """An output folder the command did not make, or made with other settings."""


class SettingsRefused(Refusal, ValueError):
    """Settings or inputs the command cannot work with."""


class NothingToResume(Refusal, FileNotFoundError):
    """A resume asked for where there is no checkpoint to continue."""


def _refusals_without_traceback() -> None:
    import sys

    if getattr(sys.excepthook, "shows_refusals", False):
        return
    previous = sys.excepthook

    def hook(kind, value, traceback):
        if isinstance(value, Refusal):
            print(f"{Path(sys.argv[0]).name}: {value}", file=sys.stderr)
        else:
            previous(kind, value, traceback)

    hook.shows_refusals = True
    sys.excepthook = hook


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


def prepare_command_line(*, plugins: bool = False) -> None:
    """Ready this process for a `@parser.wrap()` command: `%`-safe help, and with `plugins=True` LeRobot's
    third-party plugins registered (the
    `lerobot_policy_*` and env packages), for a command whose config names a policy or env type
    (`--policy.type=segdepth`, `--policy.path=CKPT`).
    """
    _use_percent_safe_help()
    _refusals_without_traceback()
    if plugins:
        from lerobot.utils.import_utils import register_third_party_plugins

        register_third_party_plugins()
