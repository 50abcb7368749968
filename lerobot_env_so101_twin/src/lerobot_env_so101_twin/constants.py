"""Deprecated alias, kept one release: the names, units and class ids live in `so101_core`; import them from there."""

from so101_core import *  # noqa: F403
from so101_core import __all__  # noqa: F401
