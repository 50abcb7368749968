"""The console scripts behind so101_core's extras, which say what to install when the extra is missing.

`so101-submit` needs the `cluster` extra (submitit, PyYAML, LeRobot) and `hlrp-make-random-vlm` the `vlm` extra
(LeRobot, torch, transformers); so101_core itself is numpy-only. Without its extra, such a command stops with one
line naming the missing module and the install command, instead of an ImportError traceback. The modules raise
`MissingExtra` (an ImportError) when imported without their extra, so `import so101_core.cluster` says the same.

Stdlib only.
"""

from __future__ import annotations

import sys

EXTRAS = {
    "cluster": "so101-submit",
    "vlm": "hlrp-make-random-vlm",
}
# The top-level modules of each extra's distributions: a missing one of these is the extra missing.
EXTRA_MODULES = {
    "cluster": {"submitit", "yaml", "lerobot"},
    "vlm": {"lerobot", "torch", "transformers"},
}


class MissingExtra(ModuleNotFoundError):
    """A module of so101_core imported without the extra that installs its dependencies."""


def missing_extra(extra: str, err: ModuleNotFoundError) -> ModuleNotFoundError:
    """The error to raise (`from None`) when importing one of `extra`'s modules fails with `err`: a `MissingExtra`
    when the missing module is one of the extra's own, else `err` itself (something else is broken)."""
    if (err.name or "").split(".")[0] not in EXTRA_MODULES[extra]:
        return err
    return MissingExtra(
        f"{EXTRAS[extra]} needs {err.name}, which so101_core installs only with its '{extra}' extra: "
        f'pip install --find-links dist "so101_core[{extra}]" (dist/ from scripts/build_wheels.sh), or '
        f'"so101_core[{extra}]" beside your other requirements',
        name=err.name,
    )


# The entry points of pyproject.toml's [project.scripts] -> the command each one runs ("module:function").
TARGETS = {
    "so101_core.extras:so101_submit": "so101_core.cluster:main",
    "so101_core.extras:hlrp_make_random_vlm": "so101_core.random_vlm:main",
}


def _run(entry: str) -> None:
    module, function = TARGETS[entry].split(":")
    try:
        getattr(__import__(module, fromlist=[function]), function)()
    except MissingExtra as err:
        sys.exit(f"error: {err}")


def so101_submit() -> None:
    """so101-submit (and its former name hlrp-submit): so101_core.cluster's main."""
    _run("so101_core.extras:so101_submit")


def hlrp_make_random_vlm() -> None:
    """hlrp-make-random-vlm: so101_core.random_vlm's main."""
    _run("so101_core.extras:hlrp_make_random_vlm")
