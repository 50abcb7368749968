"""The old name of `lerobot_policy_hlrp.pretrain.frame_pairs`, kept one release: importing it gives that
module itself."""

import sys

from .pretrain import frame_pairs as _module

sys.modules[__name__] = _module
