"""lerobot_policy_hlrp's console scripts whose module needs its `cluster` extra: without it they say what to install
(so101_core.extras)."""

from so101_core.extras import behind_extra

so101_submit = behind_extra("lerobot_policy_hlrp.pretrain.cluster:main")  # so101-submit, and hlrp-submit
