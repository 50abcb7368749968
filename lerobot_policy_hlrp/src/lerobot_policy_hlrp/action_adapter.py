"""The old name of `lerobot_policy_hlrp.pretrain.action_adapter`, kept one release: importing it gives that
module itself."""

import sys

from .pretrain import action_adapter as _module

sys.modules[__name__] = _module
