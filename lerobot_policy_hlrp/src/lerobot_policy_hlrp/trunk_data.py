"""The old name of `lerobot_policy_hlrp.pretrain.trunk_data`, kept one release: importing it gives that
module itself."""

import sys

from .pretrain import trunk_data as _module

sys.modules[__name__] = _module
