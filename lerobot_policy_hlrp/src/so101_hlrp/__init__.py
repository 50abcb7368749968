"""HLRP stages 1 and 2 (LAQ latent actions, the SmolVLM2 shared trunk) and cluster submission.

Stage 3 is the `hlrp` policy in lerobot_policy_hlrp.
"""
