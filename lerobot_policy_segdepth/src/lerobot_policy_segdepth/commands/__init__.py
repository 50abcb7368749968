"""SegDepth's command-line tools: segdepth-precompute, segdepth-convert-drqv2 and segdepth-sim2real-check."""
