"""SegVLA's command-line tools: segvla-precompute and segvla-from-smolvla."""
