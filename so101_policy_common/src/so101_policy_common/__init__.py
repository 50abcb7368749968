"""What two or more of the suite's policies share: the dataset precompute engine (`precompute`) behind
`segvla-precompute`, `segdepth-precompute` and `imf-cache-embeddings`; the processor steps' saved config taken from
their fields and the safety steps every policy's pipelines hold (`steps`), built from a policy's config
(`pipeline`); LeRobot's optimizer and scheduler presets from a config's `optimizer_*`/`scheduler_*` fields
(`policy_config`); the check for pretrained models a checkpoint names but cannot hold (`pretrained`).

Each policy's own processor steps live in its plugin (`lerobot_policy_segvla`, `lerobot_policy_segdepth`)."""
