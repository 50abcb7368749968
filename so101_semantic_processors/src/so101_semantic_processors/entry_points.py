"""so101_semantic_processors' console scripts whose module needs its `vlm` extra: without it they say what to install
(so101_core.extras)."""

from so101_core.extras import behind_extra

# so101-make-random-vlm, and its old name hlrp-make-random-vlm
make_random_vlm = behind_extra("so101_semantic_processors.random_vlm:main")
