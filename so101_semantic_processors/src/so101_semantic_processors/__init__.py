"""What two or more of the suite's policies share: the dataset precompute engine (`precompute`) behind
`segvla-precompute` (segvla), `segdepth-precompute` and `imf-cache-embeddings`; the processor steps'
saved config taken from their fields (`steps`, segvla and segdepth); LeRobot's optimizer and scheduler presets from a
config's `optimizer_*`/`scheduler_*` fields (`policy_config`, hlrp and imf).

Each policy's own processor steps live in its plugin (`lerobot_policy_segvla`, `lerobot_policy_segdepth`) and keep
their registry names, so pipelines saved when they lived here still load."""
