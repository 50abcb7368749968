"""so101-twin-record's `--driver.policy_path`: a policy drives the twin while the expert's commands are recorded.

Behaviour cloning learns the expert's actions on the expert's own states. A policy that drifts off them (a target
that arrives late, a slow loop, another arm) meets states no demonstration labelled. DAgger (Ross et al., 2011)
records the policy at the controls with the expert's command as every frame's label, so the states the policy
itself visits are labelled; appended to the demonstrations (`--resume=true`), `lerobot-train` learns from both.
The expert must be the closed-loop one (`--teleop.expert=reactive`): a plan replayed by time has no answer for a
state off its plan. With `--policy.action_lead=L` at training, frame t's label is the expert's command at frame
t + L, i.e. for the state the policy's own targets in flight have led to when its target arrives.

The policy runs as `lerobot-rollout`'s synchronous inference runs it (the dataset frame,
`prepare_observation_for_inference`, the checkpoint's saved processors, `make_robot_action`), at the arm's loop
rate as `lerobot-eval` runs it: under a `control_fps` below the physics rate it acts on every k-th frame and its
target is held between, while the expert's label is recorded at every frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class DriverConfig:
    # a policy checkpoint (a pretrained_model folder) that drives the twin while the expert's commands are
    # recorded as the actions (DAgger); None: the expert drives, as lerobot-record's teleoperator does
    policy_path: str | None = None
    # where the policy runs ("cpu" beside the recording workers; "cuda" on a GPU)
    device: str = "cpu"

    def check(self) -> None:
        """Refuse a path that holds no checkpoint, before any episode (a config may name one a run will make)."""
        if self.policy_path is not None and not (Path(self.policy_path) / "config.json").is_file():
            raise FileNotFoundError(
                f"--driver.policy_path={self.policy_path}: no config.json there; give a checkpoint's "
                "pretrained_model folder (e.g. <output_dir>/checkpoints/last/pretrained_model)"
            )


class PolicyDriver:
    """One policy at the twin's controls: `reset()` at each episode start, then `action()` once a frame."""

    def __init__(self, cfg: DriverConfig, dataset_features: dict, task: str, robot_type: str):
        import torch
        from lerobot.configs import PreTrainedConfig
        from lerobot.policies import get_policy_class, make_pre_post_processors
        from lerobot.utils.import_utils import register_third_party_plugins

        register_third_party_plugins()  # the suite's policies, as lerobot-rollout finds them
        path = str(cfg.policy_path)
        config = PreTrainedConfig.from_pretrained(path)
        config.device = cfg.device
        config.pretrained_path = Path(path)
        self.policy = get_policy_class(config.type).from_pretrained(path, config=config)
        self.policy.eval()
        self.pre, self.post = make_pre_post_processors(
            policy_cfg=config, pretrained_path=path, preprocessor_overrides={"device_processor": {"device": cfg.device}}
        )
        self.device = torch.device(cfg.device)
        self.features, self.task, self.robot_type = dataset_features, task, robot_type
        self.reset()

    def reset(self) -> None:
        self.policy.reset()
        self.pre.reset()
        self.post.reset()
        self._held: dict[str, float] | None = None
        self._frames = 0

    def action(self, observation_frame: dict[str, np.ndarray], periods_per_action: int) -> dict[str, float]:
        """The target for this frame: the policy's answer to it on every `periods_per_action`-th frame, else held."""
        import torch
        from lerobot.policies import make_robot_action, prepare_observation_for_inference

        if self._frames % periods_per_action == 0:
            with torch.inference_mode():
                batch = prepare_observation_for_inference(
                    dict(observation_frame), self.device, self.task, self.robot_type
                )
                action = self.post(self.policy.select_action(self.pre(batch)))
            self._held = make_robot_action(action, self.features)
        self._frames += 1
        assert self._held is not None
        return dict(self._held)
