"""The old name of `lerobot_policy_hlrp.pretrain.processes`, kept one release: importing it gives that
module itself."""

import sys

from .pretrain import processes as _module

sys.modules[__name__] = _module
