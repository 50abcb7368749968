"""Console scripts behind an extra, which say what to install when the extra is missing.

A distribution that puts a command behind an extra declares it once as an `Extra` (the distribution, the extra's
name, the command, the top-level modules the extra installs) and passes it here: this package names none of the
packages above it. A command's module that imports its extra's packages at the top raises `MissingExtra` (an
ImportError) through `missing_extra` when one is absent; the console-script function made by `behind_extra` turns
that into one line naming the missing module and the install command instead of a traceback. With `lazy=True` (a
command that imports its extra only once it runs) any import of the extra's modules that fails during the run counts.

Stdlib only.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Extra:
    """An optional-dependency group of a distribution, and the command that needs it."""

    distribution: str
    name: str
    command: str
    modules: frozenset[str]  # the top-level modules it installs: a missing one of these is the extra missing


class MissingExtra(ModuleNotFoundError):
    """A module imported without the extra that installs its dependencies."""


def missing_extra(extra: Extra, err: ModuleNotFoundError) -> ModuleNotFoundError:
    """The error to raise (`from None`) when importing one of `extra`'s modules fails with `err`: a `MissingExtra`
    when the missing module is one of the extra's own, else `err` itself (something else is broken)."""
    top = (err.name or "").split(".")[0]
    if top not in extra.modules:
        return err
    wanted = f"{extra.distribution}[{extra.name}]"
    return MissingExtra(
        f"{extra.command} needs {top}, which {extra.distribution} installs only with its '{extra.name}' extra: "
        f'pip install --find-links dist "{wanted}" (dist/ from scripts/build_wheels.sh), or '
        f'"{wanted}" beside your other requirements',
        name=err.name,
    )


def behind_extra(target: str, extra: Extra, lazy: bool = False) -> Callable[[], None]:
    """The console-script function for the command `target` ("module:function"), whose module needs `extra`: it
    runs the command, or exits with the one-line `MissingExtra` message. `lazy`: a module of the extra missing
    anywhere in the run counts too. `.target` names the command."""

    def entry() -> None:
        module, function = target.split(":")
        try:
            getattr(__import__(module, fromlist=[function]), function)()
        except MissingExtra as err:
            sys.exit(f"error: {err}")
        except ModuleNotFoundError as err:
            named = missing_extra(extra, err) if lazy else err
            if named is err:
                raise
            sys.exit(f"error: {named}")

    entry.target = target
    return entry
