"""The contract tests' tiny policy sizes: --policy.* overrides that make a policy train in seconds on a CPU.

tests/test_policy_contract.py builds its cases on them, benchmarks/gpu_check.py --tiny=true shrinks its recipes with
them, and other tests train with them. Plain data that imports nothing."""

# segdepth's encoder and heads
TINY_SEGDEPTH = {"image_size": 32, "feature_dim": 8, "hidden_dim": 16, "encoder_channels": 8}
# imf's SigLIP2 input, per-view features and iMF head (its SigLIP folder is given apart: tiny_models.tiny_siglip_dir)
TINY_IMF = {
    "encoder_image_size": 32,
    "per_view_dim": 8,
    "condition_dim": 16,
    "n_layer": 1,
    "n_emb": 32,
    "n_head": 2,
    "horizon": 4,
    "n_action_steps": 2,
}
