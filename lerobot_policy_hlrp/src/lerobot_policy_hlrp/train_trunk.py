"""The old name of `lerobot_policy_hlrp.pretrain.train_trunk`, kept one release: importing it gives that
module itself. `python -m` runs its command."""

import sys

from .pretrain import train_trunk as _module

if __name__ == "__main__":
    _module.main()
else:
    sys.modules[__name__] = _module
