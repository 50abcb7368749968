"""The suite's commands that belong to no one policy, one module each: `so101-joint-limits` (set_joint_limits),
`so101-training-copy` (training_copy), `so101-action-error` (action_error), `so101-make-random-vlm` (random_vlm, the
`vlm` extra), `so101-submit` (submit, the `cluster` extra)."""
