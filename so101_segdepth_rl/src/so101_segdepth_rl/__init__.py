"""DrQ-v2 in the SO-101 twin for the `segdepth` policy; what it writes is an ordinary segdepth checkpoint.

This is a distribution of its own because it needs the simulator: `lerobot_policy_segdepth` must install on a
real arm without MuJoCo.
"""
