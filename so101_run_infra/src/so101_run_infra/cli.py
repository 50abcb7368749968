"""What every suite command does before `lerobot.configs.parser.wrap` parses its command line.

The commands parse with LeRobot's own parser (a config dataclass, `--config_path`, dotted flags, `--help` from the
field comments). Two things it does not do:

- **Help that no comment can crash.** argparse %-formats every help string (for `%(default)s`), so a field comment
  with a `%` in it ("20% faster") made `--help` die with a traceback. The help formatter LeRobot's parser uses is
  swapped for one that escapes the comment before argparse formats it.
- **The plugins a config names.** A command whose config names a policy or env type (`--policy.type=segdepth`,
  `--policy.path=CKPT`) registers LeRobot's third-party plugins first (`plugins=True`).

Usage, in a command's `main`:

    prepare_command_line()  # or prepare_command_line(plugins=True)
    train_cli()  # the @parser.wrap() function

Stdlib only at import time (so101_core stays numpy-only); LeRobot is imported by `prepare_command_line`, which only
the commands call, and every command's distribution depends on LeRobot.
"""

from __future__ import annotations


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
    if plugins:
        from lerobot.utils.import_utils import register_third_party_plugins

        register_third_party_plugins()
